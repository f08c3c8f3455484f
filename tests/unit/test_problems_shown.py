"""What users wrote is shown escaped and cut: a label key with a terminal escape sequence cannot
repaint the operator's terminal, and a 1 MB label value is not copied into logs, states and status."""

from __future__ import annotations

import pytest

from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.problems import SHOWN_REASON_CHARS, SHOWN_VALUE_CHARS
from interlock.testing.swarm_json import swarm_json


def test_problems_escape_control_characters_and_cut_long_values() -> None:
    labels = {
        "com.docker.lb.ho\x1b[2Jsts": "x.example",
        "com.docker.lb.hosts": "a" * 1_000_000,
        "com.docker.lb.port": "80\u2028",
    }
    document = swarm_json({"services": [{"name": "loud", "networks": ["apps"], "labels": labels}]})
    problems = build(snapshot_from_api(document)).problems
    assert problems
    for problem in problems:
        for field in (problem.service, problem.label, problem.value):
            assert field.isprintable(), field
            assert len(field) <= SHOWN_VALUE_CHARS + 20
        assert problem.reason.isprintable() and len(problem.reason) <= SHOWN_REASON_CHARS + 20
        assert problem.describe().isprintable()
    keys = {p.label for p in problems}
    assert "com.docker.lb.ho\\x1b[2Jsts" in keys, keys
    cut = next(p.value for p in problems if p.label == "com.docker.lb.hosts")
    assert cut.endswith(f"...(+{1_000_000 - SHOWN_VALUE_CHARS} chars)")


@pytest.mark.parametrize(
    ("labels", "label", "says"),
    [
        ({"com.docker.lb.hosts": ",".join(f"h{i}.example" for i in range(101))}, "hosts", "101 entries"),
        (
            {
                "com.docker.lb.hosts": ",".join(f"h{i}.example" for i in range(60)),
                "com.docker.lb.websocket_endpoints": ",".join(f"/ws{i}" for i in range(20)),
            },
            "websocket_endpoints",
            "1260 locations",
        ),
        ({"com.docker.lb.hosts": "a.example", "com.docker.lb.context_root": "/" + "a" * 5000}, "context_root", "5001"),
    ],
)
def test_one_service_cannot_amplify_the_configuration(labels: dict[str, str], label: str, says: str) -> None:
    """A few KB of labels once made a 272 MB configuration; each cap is a problem of that service."""
    small = {
        "name": "small",
        "networks": ["apps"],
        "labels": {"com.docker.lb.hosts": "ok.example", "com.docker.lb.port": "80"},
    }
    big = {"name": "big", "networks": ["apps"], "labels": labels | {"com.docker.lb.port": "80"}}
    result = build(snapshot_from_api(swarm_json({"services": [small, big]})))
    assert [h.name for h in result.routings[""].hosts] == ["ok.example"]
    (problem,) = [p for p in result.problems if p.service == "big"]
    assert problem.label == f"com.docker.lb.{label}" and says in problem.reason, problem
