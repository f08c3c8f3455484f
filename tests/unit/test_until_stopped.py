"""A role stops at once on SIGTERM (it is its container's process 1, which ignores signals it
has no handler for), and leaves no task of its own pending."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from interlock.roles.runtime import until_stopped


async def test_sigterm_stops_the_parts_and_every_task_they_started() -> None:
    started: list[asyncio.Task[None]] = []

    async def part() -> None:
        started.append(asyncio.create_task(asyncio.sleep(3600)))  # e.g. a server's own task
        await asyncio.sleep(3600)

    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(until_stopped(part()), 10)
    assert started and all(task.done() for task in started)


async def test_a_part_that_fails_is_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("the part broke")

    with pytest.raises(RuntimeError, match="the part broke"):
        await asyncio.wait_for(until_stopped(broken(), asyncio.sleep(3600)), 10)
