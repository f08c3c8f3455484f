"""Shared pytest options and fixtures."""

from __future__ import annotations

import os

import pytest

from interlock.edges.nginx_check import nginx_binary


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files from current output")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def _required(binary: str | None, name: str) -> str:
    """`binary`; the test command installs it, so a missing one fails there, and skips elsewhere."""
    if binary is None:
        if os.environ.get("INTERLOCK_REQUIRE_NGINX"):
            pytest.fail(f"{name} is required (INTERLOCK_REQUIRE_NGINX is set) but not installed")
        pytest.skip(f"{name} is not installed; run scripts/setup")
    return binary


@pytest.fixture(scope="session")
def haproxy() -> str:
    from interlock.edges.haproxy_check import haproxy_binary

    return _required(haproxy_binary(), "haproxy")


@pytest.fixture(scope="session")
def nginx() -> str:
    return _required(nginx_binary(), "nginx")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that start real nginx are marked `nginx` and live outside tests/unit, so
    `pytest tests/unit` stays fast and needs nothing installed."""
    misplaced = [
        item.nodeid
        for item in items
        if "nginx" in getattr(item, "fixturenames", ())
        and (item.get_closest_marker("nginx") is None or item.nodeid.startswith("tests/unit/"))
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests that use real nginx must be marked `nginx` and live under tests/nginx (or golden, e2e): "
            + ", ".join(misplaced)
        )
