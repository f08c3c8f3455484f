"""Hostile label values are refused with a problem each, and leave no trace in the output.

For every label and every payload: the service is left out with an error naming that label,
and the rendered configuration is byte-identical to the one without that service.
"""

from __future__ import annotations

import pytest

from interlock.config import default_config
from interlock.edges.proxy_kinds import render_proxy
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.labels import LABELS
from interlock.problems import Severity
from interlock.testing.swarm_json import swarm_json
from tests.unit.hostile import PAYLOADS

GOOD: dict[str, object] = {
    "name": "good",
    "networks": ["demo"],
    "labels": {"com.docker.lb.hosts": "good.local", "com.docker.lb.port": "8080"},
}
EXTENSIONS = {kind: default_config(Kind=kind).extensions["default"] for kind in ("nginx", "haproxy")}
CASES = [(spec.key, payload) for spec in LABELS for payload in PAYLOADS]


def _render(services: list[dict[str, object]], kind: str) -> tuple[str, list[tuple[str, str, Severity]]]:
    result = build(snapshot_from_api(swarm_json({"services": services})))
    problems = [(p.service, p.label, p.severity) for p in result.problems]
    rendered = render_proxy(result.routings[""], EXTENSIONS[kind])
    return rendered.text + rendered.targets, problems


BASELINES = {kind: _render([GOOD], kind)[0] for kind in EXTENSIONS}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 300


@pytest.mark.parametrize(
    ("label", "payload"),
    CASES,
    ids=[f"{k.rsplit('.', 1)[1]}-{i % len(PAYLOADS)}" for i, (k, _) in enumerate(CASES)],
)
@pytest.mark.parametrize("kind", sorted(EXTENSIONS))
def test_hostile_value_is_refused_and_leaves_no_trace(label: str, payload: str, kind: str) -> None:
    evil_labels = {
        "com.docker.lb.hosts": "evil.local",
        "com.docker.lb.port": "8080",
        label: payload,
    }
    # The evil service is older, so it would win any conflict if it were accepted; it comes
    # last in the description so the good service's task addresses stay as in the baseline.
    evil: dict[str, object] = {"name": "evil", "networks": ["demo"], "labels": evil_labels, "created": -1}
    text, problems = _render([GOOD, evil], kind)
    assert ("evil", label, Severity.ERROR) in problems
    assert text == BASELINES[kind]
