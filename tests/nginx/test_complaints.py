"""A proxy's refusal becomes one line a user can act on, through the kinds' registry: the reason
as the proxy gave it, without its process numbers or the scratch file's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.edges.haproxy_check import check_haproxy_text
from interlock.edges.nginx_check import check_text
from interlock.edges.proxy_kinds import KINDS

pytestmark = pytest.mark.nginx


def test_nginx_says_which_directive_it_refused(tmp_path: Path, nginx: str) -> None:
    result = check_text("events {}\nhttp {\n  bogus_directive on;\n}\n", workdir=tmp_path, nginx=nginx)
    assert not result.ok
    reason = KINDS["nginx"].complaint(result.output)
    assert reason == 'unknown directive "bogus_directive"', result.output


def test_haproxy_says_which_keyword_it_refused(tmp_path: Path, haproxy: str) -> None:
    text = "global\ndefaults\n  mode http\nfrontend web\n  bind 127.0.0.1:1\n  bogus_keyword on\n"
    result = check_haproxy_text(text, workdir=tmp_path, haproxy=haproxy)
    assert not result.ok
    reason = KINDS["haproxy"].complaint(result.output)
    assert reason == "unknown keyword 'bogus_keyword' in 'frontend' section", result.output
    assert str(tmp_path) not in reason
