"""Notices, about 2 s ahead of its stop signal, that Swarm is stopping this task.

Docker stops a Swarm task in two steps: it takes the task out of its service's DNS
(`tasks.<service>`) and load balancing, waits 2 s for the other nodes to learn that, and only
then sends the stop signal. The proxy agent asks the embedded DNS for its own service's tasks a
few times a second: once its own address has been listed and then is not, twice in a row, the
task is leaving, and the proxy's drain can run during those 2 s instead of after them. Listed
again, it was a false alarm. A lookup that fails for any reason but "no such name" says nothing.

    /proc/net/fib_trie -> this container's addresses
    tasks.<service> (every 0.2 s) -> DepartureSignal -> LEAVING | BACK -> the agent's drain

Standard library only: no Docker SDK (the proxy has no socket), nothing of the agent.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("interlock.departure")

LOOKUP_EVERY = 0.2
"""Seconds between two lookups of tasks.<service>: a tenth of Docker's wait before the signal."""

ABSENT_LOOKUPS = 2
"""Lookups in a row without this task's address that make it leaving (one may race a change)."""

# getaddrinfo's answers for a name the DNS server says does not exist (or has no A record).
NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}

Lookup = Callable[[str], Awaitable[frozenset[str] | None]]


class Departure(enum.Enum):
    LEAVING = "leaving"
    """Swarm took this task out of its service's DNS: it stops in about 2 s."""
    BACK = "back"
    """Listed again after LEAVING: not a stop after all."""


class DepartureSignal:
    """What the lookups of tasks.<service> say about this task. Nothing before its address was
    listed once (Swarm lists a task with a health check only once it is healthy)."""

    def __init__(self, own: frozenset[str]) -> None:
        self.own = own
        self.listed = False
        self.leaving = False
        self.absent = 0

    def observe(self, answer: frozenset[str] | None) -> Departure | None:
        """`answer`: the addresses the DNS gave (empty: no such name), None when it did not
        answer. The change this makes, if any."""
        if answer is None:
            return None
        if answer & self.own:
            self.listed, self.absent = True, 0
            if self.leaving:
                self.leaving = False
                return Departure.BACK
            return None
        if not self.listed or self.leaving:
            return None
        self.absent += 1
        if self.absent < ABSENT_LOOKUPS:
            return None
        self.leaving = True
        return Departure.LEAVING


def local_addresses(fib_trie: str) -> frozenset[str]:
    """This network namespace's own IPv4 addresses, from the text of /proc/net/fib_trie (an
    address line followed by `/32 host LOCAL`), loopback left out."""
    found, previous = set(), ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text == "/32 host LOCAL" and previous:
            found.add(previous)
        elif text.startswith(("|--", "+--")):
            previous = text.split()[1]
    return frozenset(a for a in found if not a.startswith("127."))


def own_addresses(path: Path = Path("/proc/net/fib_trie")) -> frozenset[str]:
    try:
        return local_addresses(path.read_text())
    except OSError:
        return frozenset()


async def lookup(name: str) -> frozenset[str] | None:
    """The IPv4 addresses `name` resolves to; empty when the DNS says there is no such name,
    None when it did not answer."""
    loop = asyncio.get_running_loop()
    try:
        answers = await loop.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return frozenset() if exc.errno in NO_SUCH_NAME else None
    except OSError:
        return None
    return frozenset(str(a[4][0]) for a in answers)


async def watch_departure(
    service: str,
    on_change: Callable[[Departure], Awaitable[None]],
    *,
    own: frozenset[str] | None = None,
    resolve: Lookup = lookup,
    every: float = LOOKUP_EVERY,
) -> None:
    """Call `on_change` each time this task leaves (or comes back to) tasks.`service`; runs
    until cancelled. Returns at once where this container's addresses cannot be read."""
    addresses = own_addresses() if own is None else own
    if not addresses:
        log.warning("departure: cannot read this container's addresses; draining starts at the stop signal")
        return
    signal = DepartureSignal(addresses)
    while True:
        change = signal.observe(await resolve(f"tasks.{service}"))
        if change is not None:
            await on_change(change)
        await asyncio.sleep(every)
