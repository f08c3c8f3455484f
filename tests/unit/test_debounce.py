"""The debounce coalesces bursts: quiet period and maximum delay, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from interlock.edges.debounce import Debouncer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


async def test_single_poke_waits_the_quiet_period() -> None:
    clock = FakeClock()
    debouncer = Debouncer(quiet=0.05, max_delay=0.5, clock=clock, sleep=clock.sleep)
    debouncer.poke()
    await debouncer.wait()
    assert clock.now == pytest.approx(0.05)
    assert not debouncer.pending


async def test_a_burst_is_one_wake_up_bounded_by_the_maximum_delay() -> None:
    clock = FakeClock()
    debouncer = Debouncer(quiet=0.05, max_delay=0.5, clock=clock, sleep=clock.sleep)
    wakes = 0

    async def consumer() -> None:
        nonlocal wakes
        await debouncer.wait()
        wakes += 1

    task = asyncio.create_task(consumer())
    for _ in range(100):  # a poke every 10 ms: never quiet for 50 ms
        debouncer.poke()
        clock.now += 0.01
        await asyncio.sleep(0)
        if task.done():
            break
    await task
    assert wakes == 1
    assert clock.now == pytest.approx(0.5, abs=0.02)


async def test_wait_blocks_until_poked() -> None:
    clock = FakeClock()
    debouncer = Debouncer(quiet=0.05, max_delay=0.5, clock=clock, sleep=clock.sleep)
    waiter = asyncio.create_task(debouncer.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    debouncer.poke()
    await waiter


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet=1.0, max_delay=0.5)
