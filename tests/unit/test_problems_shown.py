"""What users wrote is shown escaped and cut: a label key with a terminal escape sequence cannot
repaint the operator's terminal, and a 1 MB label value is not copied into logs, states and status."""

from __future__ import annotations

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
