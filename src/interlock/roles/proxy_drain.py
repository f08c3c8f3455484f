"""The proxy's drain: when its health check (`/_interlock/health`) starts answering 503 while it
still serves, and how long the agent waits after the stop signal before it stops the proxy.

`ProxyDrainPeriod` is counted from the earliest sign of the stop: Docker taking the task out of
its service's DNS, about 2 s ahead of the signal (`edges/task_departure.py`), or else the signal
itself. Counted from the first, the drain is mostly over when the signal comes, and a proxy that
Swarm replaces is back sooner. A sign that was not followed by the signal (the task listed
again, or no signal within `EARLY_DRAIN_LIMIT`) is taken back: the health check passes again.

    Departure.LEAVING -> drain now -> stop signal -> what is left of the period -> QUIT
    Departure.BACK, or no signal in time -> health check passes again

Must not import: the Docker SDK, pydantic, jinja2 (the proxy role's diet, tests/test_architecture).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from interlock.edges.clock import Clock
from interlock.edges.proxy_control import ProxyControl
from interlock.edges.task_departure import Departure
from interlock.errors import ReloadFailed

log = logging.getLogger("interlock.agent")

EARLY_DRAIN_LIMIT = 10.0
"""Seconds a drain begun on the DNS sign lasts without the stop signal before it is taken back
(Docker sends the signal 2 s after the sign)."""


class ProxyDrain:
    def __init__(self, proxy: ProxyControl, period: float, clock: Clock, *, limit: float = EARLY_DRAIN_LIMIT) -> None:
        self.proxy = proxy
        self.period = period
        self.clock = clock
        self.limit = limit
        self.since: float | None = None
        """When the health check began to fail (the clock's monotonic seconds); None: it passes."""
        self.stopping = False
        self._beginning: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None

    async def on_departure(self, change: Departure) -> None:
        """What the DNS sign says: the task is leaving (drain now) or was not (take it back)."""
        if self.period <= 0 or self.stopping:
            return
        if change is Departure.LEAVING and self.since is None and self._beginning is None:
            why = "Swarm took this task out of its service's DNS; the stop signal follows"
            # A task of its own: the stop signal may come while the proxy takes it (HAProxy
            # finishes a reload first), and the stop then waits for it rather than drain twice.
            self._beginning = asyncio.create_task(self._begin(why))
            await asyncio.shield(self._beginning)
            self._beginning = None
            if not self.stopping:
                self._expiry = asyncio.create_task(self._expire())
        elif change is Departure.BACK:
            await self._take_back("this task is in its service's DNS again")

    async def before_stop(self) -> None:
        """After the stop signal: drain for what is left of the period (all of it, when no sign
        came first)."""
        self.stopping = True
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        if self.period <= 0:
            return
        if self._beginning is not None:
            await asyncio.shield(self._beginning)
        if self.since is None:
            await self._begin("stop signal")
        assert self.since is not None
        done = self.clock.monotonic() - self.since
        rest = max(0.0, self.period - done)
        log.info(
            "draining: %.1fs more after the stop signal (began %.1fs before it; ProxyDrainPeriod %gs)",
            rest,
            done,
            self.period,
        )
        await self.clock.sleep(rest)

    async def _begin(self, why: str) -> None:
        try:
            await self.proxy.set_draining(True)
        except ReloadFailed as exc:
            log.warning("draining: %s; stopping after the drain period all the same", exc)
        # Counted from when the health check fails, not from when it was asked to: a load
        # balancer that never saw a 503 would still send requests to a proxy that stopped.
        self.since = self.clock.monotonic()
        log.info("draining (%s): /_interlock/health answers 503 while %s serves", why, self.proxy.kind)

    async def _take_back(self, why: str) -> None:
        if self.since is None or self.stopping:
            return
        self.since = None
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
        try:
            await self.proxy.set_draining(False)
        except ReloadFailed as exc:
            log.error("draining: could not take the drain back (%s): the health check fails until the stop", exc)
            return
        log.warning("draining taken back: %s; /_interlock/health answers 200 again", why)

    async def _expire(self) -> None:
        await self.clock.sleep(self.limit)
        await self._take_back(f"no stop signal {self.limit:g}s after it left its service's DNS")
