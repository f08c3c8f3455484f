"""Moving tasks through the server slots of a running HAProxy (its runtime API), in an order that
never sends a request to a task that no longer holds the slot.

Why an order: HAProxy (2.6, Debian's) keeps a server's idle backend connections by server, not
by address. A request in flight on a slot while `set server ... addr` gives the slot another
task goes back to the slot's idle pool when it ends, still connected to the old task, and the
slot reuses it for every later request: the new task gets nothing, the old one everything, for as
long as that connection lives (seen in the end-to-end suite as both slots of a host answering
with the failing canary's 503 for a minute). The address change itself purges the connections
that are idle at that moment. So a slot takes a new task only once no request uses it: out of
rotation first (`state maint`), then, when `show servers conn` counts none in use, the new
address and `state ready`.

So that no staying task ever has to move: the agent keeps every task in the slot it has,
whatever order the renderer listed the tasks in, and puts new tasks in empty slots first, then in
the slots of tasks that left. Staying tasks stay in rotation throughout; the slots of tasks that
left go out first, empty slots take their new tasks next, and the slots of tasks that left take
theirs last, once idle.

Imports the slot format and the agent's errors only; no configuration, no templates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from interlock.errors import ReloadFailed
from interlock.render.haproxy_slots import EMPTY_SLOT, TARGETS_HEADER, slot_count

Runtime = Callable[[str], Awaitable[str]]
"""One command line to HAProxy's runtime API; its whole answer."""

REFUSALS = ("No such", "Invalid", "Require", "Unknown", "Permission", "Can't", "Cannot")
"""How the runtime API's answers to `set server` begin when it did not do it."""
LINE_BYTES = 8192
"""The most the agent sends to the runtime API on one line: HAProxy reads a command line into
one buffer (`tune.bufsize`, 16 kB by default) and closes the connection on a longer one."""
IDLE_WAIT = 3.0
"""How long a slot may carry a request before it takes its new task; past it the move is a
ReloadFailed, and the agent reloads (a new process starts with no pooled connection)."""


@dataclass(frozen=True)
class SlotMoves:
    """What turns the servers of one targets document into those of the next, no staying task
    moved (servers named `backend/sN`, addresses `host:port`)."""

    placed: str
    """The new targets document as the slots hold it (`EMPTY_SLOT` where a slot between filled
    ones stays empty): the agent's document from then on."""
    gone: tuple[str, ...] = ()
    """Slots whose task left the backend: out of rotation first."""
    fill: tuple[tuple[str, str], ...] = ()
    """Empty slots that take a task."""
    refill: tuple[tuple[str, str], ...] = ()
    """Slots of tasks that left that take a new task (once no request uses them)."""


def _backend_lines(document: str) -> list[str]:
    """The lines of a targets document, one a backend: its name, then the filled slots' addresses."""
    lines = document.splitlines()
    if not lines or not lines[0].startswith(TARGETS_HEADER + " "):
        raise ValueError("not an HAProxy targets document")
    return [line for line in lines[1:] if line.strip()]


def plan(old: str, new: str) -> SlotMoves:
    """The moves from targets `old` (the agent's) to targets `new` (the renderer's, same backends
    as the configuration's id is the same), every staying task kept in the slot it has in `old`;
    new tasks take the slots that were empty first, then those of tasks that left. ValueError
    when they are not documents of the same backends."""
    before, after = _backend_lines(old), _backend_lines(new)
    if len(before) != len(after):
        raise ValueError("the backends differ")
    lines = [new.splitlines()[0]]
    gone: list[str] = []
    fill: list[tuple[str, str]] = []
    refill: list[tuple[str, str]] = []
    # Both list the same backends in the same order; only the lines that differ are read (with
    # 10,000 backends, reading every line cost more than the move itself).
    for was_line, now_line in zip(before, after, strict=True):
        if was_line == now_line:
            lines.append(now_line)
            continue
        backend, *previous = was_line.split()
        name, *addresses = now_line.split()
        if name != backend:
            raise ValueError("the backends differ")
        staying, had = set(addresses), set(previous)
        slots = max(slot_count(len(addresses)), len(previous))
        placed = [address if address in staying else EMPTY_SLOT for address in previous]
        placed += [EMPTY_SLOT] * (slots - len(placed))
        left = [i for i, was in enumerate(previous) if was != EMPTY_SLOT and was not in staying]
        gone += [f"{backend}/s{i}" for i in left]
        # New tasks take the slots that were empty first (no request can be on them), then the
        # slots of tasks that left (which go out of rotation until their requests are done).
        empty = [i for i in range(slots) if i >= len(previous) or previous[i] == EMPTY_SLOT]
        newcomers = [address for address in addresses if address not in had]
        for index, address in zip(empty + left, newcomers, strict=False):
            placed[index] = address
            (fill if index in empty else refill).append((f"{backend}/s{index}", address))
        while placed and placed[-1] == EMPTY_SLOT:
            placed.pop()
        lines.append(" ".join([name, *placed]))
    return SlotMoves("\n".join(lines) + "\n", tuple(gone), tuple(fill), tuple(refill))


def command_lines(commands: list[str], limit: int = LINE_BYTES) -> list[str]:
    """`commands` joined with `;` into as few lines as keep each under `limit` bytes."""
    lines: list[str] = []
    current: list[str] = []
    size = 0
    for command in commands:
        if current and size + len(command) + 1 > limit:
            lines.append(";".join(current))
            current, size = [], 0
        current.append(command)
        size += len(command) + 1
    if current:
        lines.append(";".join(current))
    return lines


def busy_servers(show_servers_conn: str) -> set[str]:
    """The servers (`backend/sN`) that `show servers conn` counts a connection in use on."""
    busy = set()
    for line in show_servers_conn.splitlines():
        fields = line.split()
        # bkname/svname bkid/svid addr port - purge_delay used_cur ...
        if len(fields) > 6 and not line.startswith("#") and fields[6].isdigit() and int(fields[6]) > 0:
            busy.add(fields[0])
    return busy


async def apply(moves: SlotMoves, runtime: Runtime, *, idle_wait: float = IDLE_WAIT) -> None:
    """Send `moves` to HAProxy in their order; ReloadFailed when it refuses one, or when a slot
    still carries a request `idle_wait` seconds after it went out of rotation."""
    await _send(runtime, [f"set server {server} state maint" for server in moves.gone])
    await _take(runtime, moves.fill, idle_wait)
    await _take(runtime, moves.refill, idle_wait)


async def _take(runtime: Runtime, slots: tuple[tuple[str, str], ...], idle_wait: float) -> None:
    """Give each slot its address and put it in rotation, once none of them carries a request."""
    if not slots:
        return
    await _until_idle(runtime, [server for server, _ in slots], idle_wait)
    commands = []
    for server, address in slots:
        host, _, port = address.rpartition(":")
        commands += [f"set server {server} addr {host.strip('[]')} port {port}", f"set server {server} state ready"]
    await _send(runtime, commands)


async def _until_idle(runtime: Runtime, servers: list[str], idle_wait: float) -> None:
    backends = sorted({server.rpartition("/")[0] for server in servers})
    asks = command_lines([f"show servers conn {backend}" for backend in backends])
    deadline = time.monotonic() + idle_wait
    while True:
        answers = [await runtime(line) for line in asks]
        busy = busy_servers("\n".join(answers)).intersection(servers)
        if not busy:
            return
        if time.monotonic() >= deadline:
            some = ", ".join(sorted(busy)[:3])
            raise ReloadFailed(f"{len(busy)} server slots still carried a request after {idle_wait:g}s ({some})")
        await asyncio.sleep(0.02)


async def _send(runtime: Runtime, commands: list[str]) -> None:
    for line in command_lines(commands):
        answer = await runtime(line)
        refused = [said for said in answer.splitlines() if said.startswith(REFUSALS)]
        if refused:
            raise ReloadFailed(f"haproxy refused a task move: {'; '.join(refused)[:500]}")
