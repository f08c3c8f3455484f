"""Fixtures of the tests against real proxies: demo backends on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.nginx.either_kind import start_backend


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    """One demo backend on loopback (answers as "first"); routes point at it."""
    port, proc = start_backend("first")
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def second_backend() -> Iterator[int]:
    port, proc = start_backend("second")
    yield port
    proc.terminate()
    proc.wait(10)
