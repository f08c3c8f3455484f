"""HAProxy's own counters as traffic samples: what each backend (an upstream) and each server
slot (a task, by its address) counted since the previous `show stat`, named by a `Namer`.

Pure; wire layer (the proxy agent's traffic meter reads `show stat` and calls this). Must not
import a Docker client, the file system or a clock.
"""

from __future__ import annotations

from interlock.wire.traffic import UNKNOWN_BACKEND, Namer, Sample

_HRSP = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx")
_COUNTED = (*_HRSP, "bout", "econ", "eresp", "wretr", "wredis")
_NOT_ROUTES = ("interlock_", "passthrough_", "stats")
_PUBLIC_FRONTENDS = ("interlock_http", "interlock_tls")


class HAProxyCounters:
    """Turns HAProxy's own counters (`show stat` on its runtime API) into samples: what each
    backend (an upstream) and each server slot (a task, by its address) counted since the
    previous reading. A counter that went down means a new HAProxy worker (a reload): its
    value is then all new. Answers HAProxy gave without a task (no server, 503) are the
    backend's count less its servers'.

    Two things make that difference lie if taken one reading at a time, and both are kept
    across readings here. HAProxy counts a server's response when its head arrives but the
    backend's only when the stream ends, so a reading between the two sees the servers ahead:
    `ahead` holds that until the backend catches up, rather than calling the catch-up an
    answer without a task. And a slot out of rotation (maint) is not in the reading at all
    (`no-maint`), though its totals stay: its last values are kept while its backend is, so
    that when the slot comes back with another task only what is new is counted again."""

    def __init__(self) -> None:
        self.previous: dict[tuple[str, str], tuple[int, ...]] = {}
        self.ahead: dict[str, tuple[int, ...]] = {}
        self.active_connections = 0

    def samples(self, stat_csv: str, namer: Namer) -> list[Sample]:
        lines = stat_csv.strip().splitlines()
        if not lines or not lines[0].startswith("#"):
            return []
        header = lines[0].lstrip("# ").split(",")
        index = {name: i for i, name in enumerate(header) if name}
        current: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {}
        active = 0
        for line in lines[1:]:
            row = line.split(",")
            if len(row) < len(header) - 1:
                continue
            backend, slot, kind = row[index["pxname"]], row[index["svname"]], row[index["type"]]
            if kind == "0":
                # Clients' connections: the public listeners' (not the status port's, nor the
                # TLS terminator's, which holds a second leg of a connection already counted).
                if backend in _PUBLIC_FRONTENDS:
                    active += _int(row[index["scur"]])
                continue
            if backend.startswith(_NOT_ROUTES) and backend != UNKNOWN_BACKEND:
                continue
            if kind not in ("1", "2"):
                continue
            values = tuple(_int(row[index[name]]) for name in _COUNTED)
            address = row[index["addr"]] if kind == "2" and "addr" in index else ""
            current[(backend, "" if kind == "1" else slot)] = (values, address)
        self.active_connections = active
        restarted = {
            b
            for (b, slot), (values, _) in current.items()
            if not slot and _went_down(values, self.previous.get((b, "")))
        }
        # A backend's slots not in this reading keep their last values, unless it restarted.
        kept = {k: v for k, v in self.previous.items() if (k[0], "") in current and k[0] not in restarted}
        deltas: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {}
        for (backend, slot), (values, address) in current.items():
            before = None if backend in restarted else self.previous.get((backend, slot))
            deltas.setdefault(backend, {})[slot] = (_since(values, before), address)
            kept[(backend, slot)] = values
        self.previous = kept
        self.ahead = {b: a for b, a in self.ahead.items() if (b, "") in current and b not in restarted}
        samples: list[Sample] = []
        for backend, rows in deltas.items():
            samples += self._backend_samples(backend, rows, namer)
        return samples

    def _backend_samples(
        self, backend: str, rows: dict[str, tuple[tuple[int, ...], str]], namer: Namer
    ) -> list[Sample]:
        host, path = namer.backend(backend)
        total = rows.pop("", None)
        by_service: dict[str, list[int]] = {}
        for delta, address in rows.values():
            summed = by_service.setdefault(namer.service(backend, address), [0] * len(_COUNTED))
            for i, value in enumerate(delta):
                summed[i] += value
        if total is not None:
            # What the backend counted beyond its servers, less what it still owed them from
            # earlier readings: answered without a task.
            servers = [sum(d[i] for d, _ in rows.values()) for i in range(len(_COUNTED))]
            owed = self.ahead.get(backend, (0,) * len(_COUNTED))
            beyond = [t - s - o for t, s, o in zip(total[0], servers, owed, strict=True)]
            self.ahead[backend] = tuple(max(0, -b) for b in beyond)
            rest = by_service.setdefault("", [0] * len(_COUNTED))
            for i, value in enumerate(beyond):
                rest[i] += max(0, value)
        samples: list[Sample] = []
        for service, counted in by_service.items():
            responses, (sent, econ, eresp, wretr, wredis) = counted[:5], counted[5:]
            for klass, count in enumerate(responses):
                if count:
                    samples.append(Sample(host, path, service, klass, count))
            if sent or econ or eresp or wretr or wredis:
                samples.append(Sample(host, path, service, 0, 0, sent, econ + eresp, wretr + wredis))
        return samples


def _went_down(values: tuple[int, ...], before: tuple[int, ...] | None) -> bool:
    """Whether a counter of the row is below its last value: a new HAProxy worker (a reload)."""
    return before is not None and any(v < b for v, b in zip(values, before, strict=True))


def _since(values: tuple[int, ...], before: tuple[int, ...] | None) -> tuple[int, ...]:
    """What a row counted since `before`; all of it if it is new or went down (a new worker)."""
    if before is None or _went_down(values, before):
        return values
    return tuple(v - b for v, b in zip(values, before, strict=True))


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
