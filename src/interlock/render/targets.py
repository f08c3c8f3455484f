"""The targets document: the servers of every HTTP upstream, apart from nginx.conf.

With dynamic upstreams (`DynamicUpstreams = true`) nginx.conf names the upstreams and their balancing rule,
and the servers are in this document, which the proxy swaps at run time (lua/targets.lua), so a
change that only moves tasks does not reload nginx. Grammar, one record per line:

    interlock targets 1 ID
    upstream NAME BALANCE COOKIE            (BALANCE round_robin|ip_hash|cookie; COOKIE or -)
    server ADDRESS PORT MAX_FAILS FAIL_TIMEOUT_MS

ID is a digest of the lines after the header. The proxy agent sends a running nginx only a
delta: the header with ` delta` after the ID, the `upstream` blocks that changed or are new,
and `remove NAME` for each upstream that is gone (`targets_delta`). Every value comes from the routing model, whose
fields passed the label grammars; each is checked again here against the narrow shape the Lua
parser reads, so a value that does not fit stops the render. Pure; render layer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from interlock.errors import UnsafeValue
from interlock.model.routing import Balance, Routing, Server, Upstream

HEADER = "interlock targets 1"
# nginx's own defaults for a server without max_fails / fail_timeout.
DEFAULT_MAX_FAILS = 1
DEFAULT_FAIL_TIMEOUT_MS = 10_000
_FIELD = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_TIME = re.compile(r"^([0-9]+)(ms|s|m|h)?$")
_MS_PER_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


@dataclass(frozen=True, slots=True)
class Targets:
    text: str
    targets_id: str


def targets_field(value: str) -> str:
    """`value` if it is made only of characters the targets grammar (and a Lua string) allows."""
    if not _FIELD.fullmatch(value):
        raise UnsafeValue(f"refusing to write {value!r} into the targets document")
    return value


def fail_timeout_ms(value: str | None) -> int:
    """nginx time (`10s`, `500ms`, `2m`, a bare number is seconds) in milliseconds."""
    if value is None:
        return DEFAULT_FAIL_TIMEOUT_MS
    match = _TIME.fullmatch(value)
    if not match:
        raise UnsafeValue(f"refusing fail_timeout {value!r}")
    return int(match.group(1)) * _MS_PER_UNIT[match.group(2)]


def _server_line(server: Server) -> str:
    max_fails = DEFAULT_MAX_FAILS if server.max_fails is None else int(server.max_fails)
    return (
        f"server {targets_field(server.address)} {int(server.port)} {max_fails} {fail_timeout_ms(server.fail_timeout)}"
    )


def _upstream_lines(upstream: Upstream, ip_hash_everywhere: bool) -> list[str]:
    balance = upstream.balance
    if balance is Balance.ROUND_ROBIN and ip_hash_everywhere:
        balance = Balance.IP_HASH
    cookie = targets_field(upstream.cookie) if balance is Balance.COOKIE else "-"
    lines = [f"upstream {targets_field(upstream.name)} {balance.value} {cookie}"]
    lines.extend(_server_line(server) for server in upstream.servers)
    return lines


def render_targets(routing: Routing, *, ip_hash: bool = False) -> Targets:
    """The targets document of the HTTP upstreams of `routing` (`ip_hash`: the IPHash setting)."""
    body = "".join(line + "\n" for upstream in routing.upstreams for line in _upstream_lines(upstream, ip_hash))
    targets_id = hashlib.sha256(body.encode()).hexdigest()[:16]
    return Targets(f"{HEADER} {targets_id}\n{body}", targets_id)


def _blocks(text: str) -> tuple[str, dict[str, str]]:
    """The id and the `upstream` blocks (name -> lines) of a targets document."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith(HEADER + " "):
        raise ValueError("not a targets document: the first line must be " + repr(HEADER + " ID"))
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[1:]:
        if line.startswith("upstream "):
            current = blocks.setdefault(line.split(" ", 2)[1], [])
        elif current is None:
            raise ValueError(f"a server line before any upstream: {line!r}")
        current.append(line)
    return lines[0].split()[-1], {name: "\n".join(block) for name, block in blocks.items()}


def targets_delta(old: str, new: str) -> str:
    """What a nginx running the targets `old` needs to use `new`: the changed and new upstream
    blocks and the removed names, under `new`'s id. `old` may be empty (nothing known)."""
    _, before = _blocks(old) if old else ("", {})
    new_id, after = _blocks(new)
    lines = [f"{HEADER} {new_id} delta"]
    lines.extend(block for name, block in after.items() if before.get(name) != block)
    lines.extend(f"remove {name}" for name in before if name not in after)
    return "\n".join(lines) + "\n"


def shared_dict_kilobytes(targets: Targets) -> int:
    """Room for three copies of the document (the configuration's, the one being replaced and
    the previous configuration's while its workers finish) and slack, in a power of two of
    megabytes so the size, and with it nginx.conf, rarely changes."""
    needed = 3 * len(targets.text.encode()) + 1024 * 1024
    size = 1024 * 1024
    while size < needed:
        size *= 2
    return size // 1024
