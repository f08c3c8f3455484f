"""Fixtures of the tests against real proxies: demo backends on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nginx.either_kind import start_backend


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
