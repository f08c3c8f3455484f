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


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx binary; the test command installs it, so a missing one fails there."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("INTERLOCK_REQUIRE_NGINX"):
            pytest.fail("nginx is required (INTERLOCK_REQUIRE_NGINX is set) but not installed")
        pytest.skip("nginx is not installed; run scripts/setup")
    return binary
