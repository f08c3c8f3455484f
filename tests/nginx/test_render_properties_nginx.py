"""Random labels always render a configuration real nginx accepts (`nginx -t`, hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

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
