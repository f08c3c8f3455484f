"""The extension with real `nginx -t`: a new configuration is served (and validated) only when
the nginx.conf text changes."""

from __future__ import annotations

import pytest

from interlock.config import ExtensionConfig
from interlock.edges.offline_check import CheckResult
from interlock.edges.peer_http import PeerClient
from interlock.model.routing import Routing
from interlock.roles.extension import Extension
from tests.unit.test_no_change_no_reload import DYNAMIC, state

pytestmark = pytest.mark.nginx


async def test_extension_serves_a_new_config_only_when_the_text_changes(nginx: str) -> None:
    extension = Extension(name="default", core=PeerClient("http://unused", "t" * 20), proxy_token="p" * 20)
    await extension.apply(state(1))
    first = extension.current
    assert first is not None and extension.validation_error == ""
    await extension.apply(state(2))  # a new state version, same routing: same text
    assert extension.current is first
    await extension.apply(state(3, replicas=2))
    assert extension.current is not None and extension.current.digest != first.digest


async def test_extension_validates_only_a_new_nginx_conf(nginx: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from interlock.edges import nginx_check
    from interlock.roles import extension as module

    checked: list[int] = []

    def counting_check(text: str, routing: Routing, ext: ExtensionConfig) -> CheckResult:
        checked.append(1)
        return nginx_check.check_rendered(text, routing, ext)

    monkeypatch.setattr(module, "check_proxy_rendered", counting_check)
    extension = Extension(name="default", core=PeerClient("http://unused", "t" * 20), proxy_token="p" * 20)
    await extension.apply(state(1, ext=DYNAMIC))
    await extension.apply(state(2, replicas=3, ext=DYNAMIC))  # one more task: targets only
    assert extension.current is not None and extension.current.version == 2
    assert len(checked) == 1, "a change of targets alone needs no nginx -t"
