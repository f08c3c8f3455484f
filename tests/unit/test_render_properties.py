"""Property: for random label maps, the rendered nginx configuration is always valid and holds
only directives the template writes.

The allowed directives are those in the golden outputs (which cover every template branch),
parsed with crossplane; a value that smuggled syntax through would show up as a new directive,
a broken parse or a failing `nginx -t`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import crossplane
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock.config import default_config
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.labels import LABELS
from interlock.render.nginx import render_nginx
from interlock.testing.swarm_json import swarm_json
from tests.golden.cases import all_cases, load_case
from tests.unit.hostile import PAYLOADS

EXTENSION = default_config().extensions["default"]


def directives(text: str, workdir: Path) -> set[str]:
    path = workdir / "parse.conf"
    path.write_text(text)
    parsed = crossplane.parse(str(path), check_ctx=False, check_args=False, single=True, comments=False)
    assert parsed["status"] == "ok", parsed["errors"]
    found: set[str] = set()

    def walk(block: list[dict[str, Any]]) -> None:
        for entry in block:
            found.add(entry["directive"])
            # A map's entries are values (host names, `default`), not directives.
            if entry["directive"] != "map":
                walk(entry.get("block") or [])

    walk(parsed["config"][0]["parsed"])
    return found


@pytest.fixture(scope="module")
def allowed_directives(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    workdir = tmp_path_factory.mktemp("golden-directives")
    allowed: set[str] = set()
    for path in all_cases():
        case = load_case(path)
        allowed |= directives(render_nginx(case.routing, case.extension).text, workdir)
    # Raw option lines are the operator's by design; the golden case uses these.
    return allowed


LIKELY = [spec.example for spec in LABELS] + [
    "true",
    "false",
    "vip",
    "task",
    "default",
    "required",
    "none",
    "/",
    "/app",
    "/ws,/",
    "8080",
    "a.local,b.local",
    "a.local",
    "x.pem",
    "sid",
    "0",
    "100",
    "10s",
    "demo",
    "east",
    "",
    "http://a.local,http://b.local",
    "https://a.local,https://b.local/x;",
]
values = st.one_of(
    st.sampled_from(LIKELY),
    st.sampled_from(PAYLOADS),
    st.text(max_size=30),
    st.from_regex(r"[a-z0-9./,:;{}$#_ -]{1,30}", fullmatch=True),
)
label_maps = st.dictionaries(st.sampled_from([s.key for s in LABELS] + ["com.docker.lb.other"]), values, max_size=8)
service_lists = st.lists(st.tuples(label_maps, st.integers(0, 3), st.booleans()), min_size=1, max_size=4)


def render_random(services: list[tuple[dict[str, str], int, bool]]) -> tuple[Any, str]:
    described = []
    for i, (labels, replicas, base) in enumerate(services):
        full = ({"com.docker.lb.hosts": f"s{i}.local", "com.docker.lb.port": "8080"} if base else {}) | labels
        described.append(
            {
                "name": f"s{i}",
                "networks": ["demo", "other"] if i % 2 else ["demo"],
                "replicas": replicas,
                "labels": full,
                "host_ports": [8080] if i == 3 else [],
            }
        )
    routing = build(snapshot_from_api(swarm_json({"services": described}))).routings[""]
    return routing, render_nginx(routing, EXTENSION).text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(services=service_lists)
def test_random_labels_only_produce_template_directives(
    services: list[tuple[dict[str, str], int, bool]], allowed_directives: set[str], tmp_path: Path
) -> None:
    _, text = render_random(services)
    assert directives(text, tmp_path) <= allowed_directives
