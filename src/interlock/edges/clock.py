"""Time, as the role loops use it: now, sleeping, and waiting for an event with a timeout.

Loops take a `Clock` instead of calling `time` and `asyncio` directly, so their settle, stall
and backoff logic runs in unit tests on `interlock.testing.fakes.FakeClock` without waiting.
Edge layer; imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (ages shown to operators)."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """True as soon as `event` is set, False once `timeout` seconds passed first."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return event.is_set()
