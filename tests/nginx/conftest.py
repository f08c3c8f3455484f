"""Fixtures of the tests against real proxies: demo backends on loopback, and a proxy of each
kind changed as the agent changes it."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.nginx.either_kind import KINDS, LoopbackProxy, start_backend


def _running(name: str) -> Iterator[int]:
    """A demo backend answering as `name`, on a free loopback port, while the fixture lasts."""
    port, proc = start_backend(name)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    """One demo backend on loopback (answers as "first"); routes point at it."""
    yield from _running("first")


@pytest.fixture(scope="module")
def second_backend() -> Iterator[int]:
    yield from _running("second")


@pytest.fixture(params=KINDS)
async def proxy(
    request: pytest.FixtureRequest, nginx: str, haproxy: str, tmp_path: Path
) -> AsyncIterator[LoopbackProxy]:
    """A proxy of each kind (the test runs once per kind), stopped afterwards."""
    kind = request.param
    running = LoopbackProxy(kind, haproxy if kind == "haproxy" else nginx, tmp_path)
    yield running
    # A fast stop: a graceful one waits for the test's idle keep-alive connections (HAProxy up
    # to the timeout), and no test here is about how the proxy stops.
    await running.control.stop(signal.SIGTERM, timeout=15)
