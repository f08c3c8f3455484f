"""Shared benchmark helpers: percentiles, process memory, a bounded constant-rate HTTP load."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def _summed_kb(pids: list[int], proc_file: str, key: str) -> float:
    """The kB figure `key` of /proc/PID/`proc_file`, summed over `pids` (gone ones skipped), in MB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/{proc_file}").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a worker that finished exiting meanwhile
    return total / 1024


def rss_mb(pids: list[int]) -> float:
    return _summed_kb(pids, "status", "VmRSS:")


def pss_mb(pids: list[int]) -> float:
    """The proportional set size of `pids` together: a page a master shares with its workers
    counts once, not once a process as in a sum of RSS."""
    return _summed_kb(pids, "smaps_rollup", "Pss:")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (all threads)."""
    total = 0
    for each in (pid, *children(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def sh(*args: str, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr or proc.stdout}")
    return proc.stdout


@dataclass
class LoadResult:
    sent: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    stale_retries: int = 0
    """Requests sent again on a new connection because a reused one was closed before any answer."""
    stale_failures: int = 0
    """Requests that failed on a reused connection closed before any answer, by a client that never
    retries (Python's http.client, many scripts and SDKs); counted in `failed` too."""
    closed_by_notice: int = 0
    """Answers that said `Connection: close`: the client opened a new connection for the next."""
    second_target: int = 0
    """Answered, but only after nginx retried another task (x-upstream-addr lists two)."""
    latencies: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 or code < 200) + sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "statuses": dict(self.statuses),
            "socket_errors": dict(self.errors),
            "stale_keepalive_retries": self.stale_retries,
            "stale_keepalive_failures": self.stale_failures,
            "closed_with_notice": self.closed_by_notice,
            "answered_by_a_second_task": self.second_target,
            "latency_ms": summary([x * 1000 for x in self.latencies]),
        }


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, keep_alive: bool
) -> tuple[int, bool, bool]:
    """One GET; its status, whether a second task answered it, and whether the answer closed the
    connection (`Connection: close`)."""
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, retried, closing = 0, False, False
    for line in head.split(b"\r\n"):
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif lower.startswith(b"x-upstream-addr:"):
            retried = b"," in line
        elif lower.startswith(b"connection:"):
            closing = b"close" in lower
    await reader.readexactly(length)
    return status, retried, closing


async def constant_load(
    port: int,
    hosts: list[str],
    *,
    rate: float,
    seconds: float,
    connections: int = 16,
    stop: asyncio.Event | None = None,
    retry_stale: bool = True,
) -> LoadResult:
    """`rate` GET requests a second for `seconds` over `connections` workers; half reuse their
    connection (keep-alive) until an answer says `Connection: close`, half open a new one per
    request. A request that fails on a reused connection before any byte of a response came back
    is retried once on a new connection, as HTTP/1.1 clients do for idempotent requests (RFC 9112
    9.3.1), and counted; with `retry_stale=False` it is a failed request, as for a client that
    never retries."""
    result = LoadResult()
    interval = connections / rate
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        keep_alive = index % 2 == 0
        host = hosts[index % len(hosts)]
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        next_at = time.monotonic() + index * interval / connections
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            started = time.monotonic()
            result.sent += 1
            for attempt in range(2):
                reused = conn is not None
                try:
                    if conn is None:
                        conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
                    status, retried, closing = await asyncio.wait_for(_request(*conn, host, keep_alive), 10)
                    result.statuses[status] += 1
                    result.second_target += retried
                    result.latencies.append(time.monotonic() - started)
                    result.closed_by_notice += keep_alive and closing
                    if not keep_alive or closing:
                        conn[1].close()
                        conn = None
                    break
                except (
                    OSError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    TimeoutError,
                    ValueError,
                ) as exc:
                    if conn is not None:
                        conn[1].close()
                        conn = None
                    if reused and isinstance(exc, (ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError)):
                        if not retry_stale:
                            result.stale_failures += 1
                        elif attempt == 0:
                            result.stale_retries += 1
                            continue
                    result.errors[type(exc).__name__] += 1
                    break
        if conn is not None:
            conn[1].close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return result


def dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def wait_http(port: int, host: str = "x", timeout: float = 10) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host}), timeout=1
            )
            return
        except urllib.error.HTTPError:
            return  # an answer, whatever its status
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


def wait_routed(port: int, host: str, timeout: float = 120) -> None:
    """Until `host` answers 200 through the proxy on `port` (a new network may restart it)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{host} was not routed on port {port} within {timeout:.0f}s")


os.environ.setdefault("PYTHONUNBUFFERED", "1")


BENCH_IMAGE = "interlock-bench-backend:1"


def create_backend(
    name: str,
    host: str,
    *,
    replicas: int = 1,
    network: str = "e2e-a",
    image: str = BENCH_IMAGE,
    labels: dict[str, str] | None = None,
) -> None:
    """A routed bench backend service (detached), on a network the proxy is already on."""
    extra = [arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")]
    sh(
        "docker",
        "service",
        "create",
        "-d",
        "--quiet",
        "--name",
        name,
        "--network",
        network,
        "--replicas",
        str(replicas),
        "--stop-grace-period",
        "10s",
        "--label",
        f"com.docker.lb.hosts={host}",
        "--label",
        "com.docker.lb.port=8080",
        *extra,
        image,
    )


def force_update(name: str, order: str) -> None:
    """Roll every task of `name` (`docker service update --force`), one at a time, `order`
    being stop-first or start-first; returns when Swarm says the update is done."""
    sh(
        "docker",
        "service",
        "update",
        "--quiet",
        "--force",
        "--update-order",
        order,
        "--update-parallelism",
        "1",
        name,
        timeout=300,
    )


def wait_replicas(name: str, replicas: int, timeout: float = 60, interval: float = 0.2) -> None:
    """Until `docker service ls` shows the service at `replicas/replicas` (polled every
    `interval` s: each poll is a docker CLI process, which costs CPU under load)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = sh("docker", "service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}").strip()
        if shown == f"{replicas}/{replicas}":
            return
        time.sleep(interval)
    raise RuntimeError(f"{name} did not reach {replicas} replicas")


def proxy_counters(extension: str = "default", timeout: float = 60) -> dict[str, int]:
    """Reloads and target changes applied without a reload, summed over the cluster's proxies,
    read from `interlock status` once every proxy serves the newest configuration."""
    interlock = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "interlock")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(sh(interlock, "status", "--json"))
        cluster = next(c for c in status["clusters"] if c["extension"] == extension)
        proxies = cluster["proxies"]
        newest = (cluster["config_id"], cluster.get("targets_id"))
        if proxies and all((p["config_id"], p.get("targets_id")) == newest for p in proxies):
            return {
                "reloads": sum(p["reloads"] for p in proxies),
                "target_updates": sum(p.get("target_updates", 0) for p in proxies),
            }
        time.sleep(0.2)
    raise RuntimeError("the proxies did not settle on the newest configuration")


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}


def until(check: Callable[[], object], timeout: float = 30) -> float:
    """When (wall clock) `check()` first held, asked every 10 ms; RuntimeError after `timeout`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return time.time()
        time.sleep(0.01)
    raise RuntimeError("did not converge within the timeout")
