"""Process-level helpers the roles and the CLI share: pausing the collector, waiting, running
until Swarm stops the task, the proxy configuration message made from a render (the core stores
it, the extension serves it), and the count of reports another role did not take.

`quiet_gc` pauses the cyclic garbage collector around a rebuild: the pure pipeline allocates
hundreds of thousands of small objects but makes no reference cycles, so reference counting
frees them anyway, while each collector pass would walk the whole live snapshot. Measured in
bench/render_10k.py: about half of the build+render time with 10,000 services.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter

from interlock.edges.peer_http import RETRY_FIRST, RETRY_MAX, Peer
from interlock.errors import PeerUnavailable
from interlock.model.routing import Routing
from interlock.problems import printable
from interlock.render.bundle import RenderedConfig
from interlock.wire.messages import ProxyConfig
from interlock.wire.traffic import traffic_names

REPORT_FAILURES = Counter(
    "interlock_role_report_failures_total",
    "Reports, counts and configurations another role did not take, by what was sent and why",
    ["message", "cause"],
)


async def post_counted(
    peer: Peer, path: str, body: bytes, *, message: str, to: str, log: logging.Logger, timeout: float = 10
) -> bool:
    """POST `body` (a `message`) to `peer` (the role called `to`); a failure is logged at warning
    level with its cause and counted in REPORT_FAILURES, never dropped silently."""
    try:
        status, answer = await peer.post(path, body, timeout=timeout)
    except PeerUnavailable as exc:
        REPORT_FAILURES.labels(message, "unreachable").inc()
        log.warning("the %s did not take the %s (%d bytes): %s", to, message, len(body), exc)
        return False
    if status != 200:
        REPORT_FAILURES.labels(message, str(status)).inc()
        shown = printable(answer.decode("utf-8", "replace"), 300)
        log.warning("the %s refused the %s (%d bytes) with %d: %s", to, message, len(body), status, shown)
        return False
    return True


def proxy_config(version: int, routing: Routing, rendered: RenderedConfig) -> ProxyConfig:
    """What a proxy gets: `rendered` (of state `version`), and how its agent names the requests
    it counts."""
    return ProxyConfig(
        version,
        rendered.digest,
        rendered.config_id,
        rendered.text,
        rendered.targets,
        rendered.targets_id,
        traffic_names(routing),
    )


@contextmanager
def quiet_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def woken(event: asyncio.Event, timeout: float) -> None:
    """Return when `event` is set or after `timeout` seconds, whichever is first; clear it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    event.clear()


async def changed_within(condition: asyncio.Condition, unchanged: Callable[[], bool], wait: float) -> bool:
    """A long-poll: True as soon as `unchanged()` is false (checked whenever `condition` is
    notified), False if `wait` seconds pass first."""
    deadline = time.monotonic() + wait
    async with condition:
        while unchanged():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(condition.wait(), remaining)
            except TimeoutError:
                return False
    return True


async def until_stopped(*parts: Awaitable[object]) -> None:
    """Run `parts` until one ends or SIGTERM/SIGINT comes, then cancel the rest. A role is its
    container's process 1, which ignores a signal it has no handler for: without this, Swarm
    would wait out the stop grace period (10 s) and kill it, and its replacement (a core
    mounting a new certificate secret) would wait that long too."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    before = asyncio.all_tasks()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(part) for part in (*parts, stop.wait())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        # The parts, and every task they started (servers, watchers): none is left pending
        # when the loop closes.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        others = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def answered_get(
    peer: Peer,
    path: str,
    params: dict[str, str],
    *,
    log: logging.Logger,
    waiting: Callable[[], str],
    timeout: float = 35,
) -> tuple[int, bytes]:
    """GET `path` from `peer` until it answers (a long-poll's next answer): while it is
    unavailable, say `waiting()` and why, and try again after RETRY_FIRST seconds, doubling up
    to RETRY_MAX."""
    backoff = RETRY_FIRST
    while True:
        try:
            return await peer.get(path, params=params, timeout=timeout)
        except PeerUnavailable as exc:
            log.warning("%s, retrying in %.1fs: %s", waiting(), backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX)
