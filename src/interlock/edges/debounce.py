"""Coalesce bursts of "something changed" into few rebuilds: a quiet period and a maximum delay.

`poke()` records a change. `wait()` returns once `quiet` seconds passed without a poke, or
`max_delay` seconds after the first poke of the burst, whichever comes first. The clock and the
sleep are injectable, so tests run on a fake clock without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Debouncer:
    def __init__(
        self,
        *,
        quiet: float,
        max_delay: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if quiet < 0 or max_delay < quiet:
            raise ValueError("need 0 <= quiet <= max_delay")
        self.quiet = quiet
        self.max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._first: float | None = None
        self._last: float | None = None
        self._poked = asyncio.Event()

    @property
    def poked(self) -> asyncio.Event:
        """Set from the first poke of a burst until `wait()` returns."""
        return self._poked

    @property
    def pending(self) -> bool:
        return self._first is not None

    def poke(self) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        self._last = now
        self._poked.set()

    async def wait(self) -> None:
        """Return once the current burst of pokes has settled (waits for a first poke)."""
        await self._poked.wait()
        while True:
            assert self._first is not None and self._last is not None
            now = self._clock()
            deadline = min(self._last + self.quiet, self._first + self.max_delay)
            if now >= deadline:
                break
            await self._sleep(deadline - now)
        self._first = self._last = None
        self._poked.clear()
