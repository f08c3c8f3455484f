"""Whatever Docker reports beside random labels, the rendered configuration passes real
`nginx -t` (the snapshots of tests/unit/test_docker_values_properties.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from interlock.edges.nginx_check import check_routing
from tests.unit.test_docker_values_properties import hostile_snapshots, render_snapshot
from tests.unit.test_render_properties import EXTENSION

pytestmark = pytest.mark.nginx


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=hostile_snapshots())
def test_hostile_docker_values_always_pass_nginx_t(document: dict[str, Any], nginx: str, tmp_path: Path) -> None:
    routing, text = render_snapshot(document)
    result = check_routing(routing, EXTENSION, workdir=tmp_path, nginx=nginx)
    assert result.ok, result.output + "\n" + text
