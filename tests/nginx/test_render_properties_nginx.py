"""Random labels always render a configuration real nginx and real HAProxy accept (`nginx -t`,
`haproxy -c`; hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from interlock.config import default_config
from interlock.edges.haproxy_check import check_haproxy_routing
from interlock.edges.nginx_check import check_routing
from tests.unit.test_render_properties import EXTENSION, render_random, service_lists

pytestmark = pytest.mark.nginx


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(services=service_lists)
def test_random_labels_always_pass_nginx_t(
    services: list[tuple[dict[str, str], int, bool]], nginx: str, tmp_path: Path
) -> None:
    routing, _ = render_random(services)
    result = check_routing(routing, EXTENSION, workdir=tmp_path, nginx=nginx)
    assert result.ok, result.output + "\n" + (tmp_path / "nginx.conf").read_text()


HAPROXY = default_config(Kind="haproxy").extensions["default"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(services=service_lists)
def test_random_labels_always_pass_haproxy_c(
    services: list[tuple[dict[str, str], int, bool]], haproxy: str, tmp_path: Path
) -> None:
    routing, _ = render_random(services)
    result = check_haproxy_routing(routing, HAPROXY, workdir=tmp_path, haproxy=haproxy)
    assert result.ok, result.output + "\n" + (tmp_path / "haproxy.cfg").read_text()
