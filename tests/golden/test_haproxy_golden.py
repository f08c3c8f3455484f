"""Every golden case, rendered for an HAProxy extension (the same routing model, the case's
ports, Interlock's HAProxy defaults), prints exactly its expected haproxy.cfg under haproxy/,
and HAProxy accepts it (`haproxy -c`, with a stand-in certificate).

Regenerate deliberately with `pytest tests/golden --update-golden`, then read the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.config.schema import ExtensionConfig, HAProxyConfig
from interlock.edges.haproxy_check import check_haproxy_routing
from interlock.render.haproxy import render_haproxy
from tests.golden.cases import all_cases, load_case

CASE_PATHS = all_cases()
EXPECTED = Path(__file__).parent / "haproxy"


def as_haproxy(ext: ExtensionConfig) -> ExtensionConfig:
    """The case's extension as the HAProxy kind: HAProxy's defaults, and the keys both kinds share."""
    shared = {
        "AccessLogFormat": ext.nginx.access_log_format,
        "HideInfoHeaders": ext.nginx.hide_info_headers,
        "HTTP2": ext.nginx.http2,
        "AcmeChallenges": ext.nginx.acme_challenges,
        "TrustedProxies": ext.nginx.trusted_proxies,
    }
    return ext.model_copy(update={"kind": "haproxy", "config": HAProxyConfig(**shared), "template": ""})


@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_haproxy_golden_output(path: Path, update_golden: bool) -> None:
    case = load_case(path)
    actual = render_haproxy(case.routing, as_haproxy(case.extension)).text
    expected = EXPECTED / f"{path.stem}.cfg"
    if update_golden:
        EXPECTED.mkdir(exist_ok=True)
        expected.write_text(actual)
    assert actual == expected.read_text(), f"haproxy/{expected.name} differs; rerun with --update-golden"


@pytest.mark.nginx
@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_haproxy_accepts_golden(path: Path, haproxy: str, tmp_path: Path) -> None:
    case = load_case(path)
    result = check_haproxy_routing(case.routing, as_haproxy(case.extension), workdir=tmp_path, haproxy=haproxy)
    assert result.ok, f"haproxy -c rejected {path.name}:\n{result.output}\n{(tmp_path / 'haproxy.cfg').read_text()}"
