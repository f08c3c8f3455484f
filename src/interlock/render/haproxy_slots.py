"""HAProxy's run-time side: the server slots of a backend, the targets document that fills them
and the runtime API's socket. The renderer prints slots; the proxy agent moves tasks through
them without a reload. Light on purpose (no settings, no templates): the proxy agent imports it
at start, and every import is time a replaced proxy is not serving. Pure; imports nothing of
Interlock.
"""

from __future__ import annotations

import re

ADMIN_SOCKET = "/var/run/haproxy-admin.sock"
"""HAProxy's runtime API, for the proxy agent only (root's, 0600)."""
SPARE_ADDRESS = "0.0.0.0:80"
"""The address of a slot no task fills (the server is `disabled`)."""
EMPTY_SLOT = "-"
"""In a targets document, a slot kept empty between filled ones: the renderer fills slots from the
first, but the proxy agent keeps each task in the slot it has (edges/haproxy_slot_moves)."""
TARGETS_HEADER = "interlock haproxy targets 1"
_MIN_SLOTS = 4
_SLOT_LINE = re.compile(r"^(?P<prefix>\s+server s(?P<index>\d+)) \S+(?P<options>.*?)(?: disabled)?$")


def with_targets(text: str, targets: str) -> str:
    """`text`, a rendered haproxy.cfg, with its server slots filled from `targets` (a targets
    document of the same configuration id): exactly what rendering the routing of `targets`
    prints. The agent keeps this as the live file after moving tasks at run time, so an HAProxy
    that restarts comes back with the servers it was serving, not those of the last reload (an
    agent's document may keep slots empty between filled ones: `EMPTY_SLOT`)."""
    filled: dict[str, list[str]] = {}
    for line in targets.splitlines()[1:]:
        if line.strip():
            name, *addresses = line.split()
            filled[name] = addresses
    out: list[str] = []
    backend: list[str] | None = None
    for line in text.split("\n"):
        if line.startswith("backend "):
            backend = filled.get(line.split()[1])
        elif backend is not None and (slot := _SLOT_LINE.match(line)):
            index = int(slot["index"])
            if index < len(backend) and backend[index] != EMPTY_SLOT:
                out.append(f"{slot['prefix']} {backend[index]}{slot['options']}")
            else:
                out.append(f"{slot['prefix']} {SPARE_ADDRESS}{slot['options']} disabled")
            continue
        out.append(line)
    return "\n".join(out)


def slot_count(servers: int) -> int:
    """Server slots of a backend with `servers` servers: the next power of two, at least 4.
    Tasks that come and go within it move through the runtime API; crossing a power of two
    changes the configuration's shape, so it is a reload. More slots than the power of two
    would never be filled (the count past it already changes the shape) and cost HAProxy
    about 4 kB each."""
    return max(_MIN_SLOTS, 1 << max(0, servers - 1).bit_length())
