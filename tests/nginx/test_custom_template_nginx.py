"""An extension's `Template` through real nginx: an extended template passes `nginx -t`, and
the extension keeps its last good configuration when a template turns bad."""

from __future__ import annotations

import pytest

from interlock.config.schema import ExtensionConfig
from interlock.edges.nginx_check import check_routing
from interlock.edges.peer_http import PeerClient
from interlock.roles.extension import Extension
from interlock.wire.messages import ClusterState
from tests.unit.test_custom_template import HOOKS, ext_with, routing

pytestmark = pytest.mark.nginx


def test_an_extended_template_passes_nginx_t(nginx: str) -> None:
    result = check_routing(routing(), ext_with(HOOKS, RuntimeRouting=False), nginx=nginx)
    assert result.ok, result.output
    catch_all = HOOKS.replace("plain server for {{ host.name|q }}", "the catch-all server")
    catch_all = catch_all.replace("tls server for {{ host.name|q }}", "the TLS catch-all server")
    result = check_routing(routing(), ext_with(catch_all), nginx=nginx)
    assert result.ok, result.output


async def test_the_extension_keeps_its_last_good_configuration_on_a_bad_template(nginx: str) -> None:
    extension = Extension(name="default", core=PeerClient("http://unused", "t" * 20), proxy_token="p" * 20)

    def state(version: int, ext: ExtensionConfig) -> ClusterState:
        return ClusterState(version, "", "default", routing(), ext.model_dump(by_alias=True, mode="json"), epoch="e")

    await extension.apply(state(1, ext_with(HOOKS, RuntimeRouting=False)))
    good = extension.current
    assert good is not None and "X-Interlock-Template" in good.text
    await extension.apply(
        state(2, ext_with('{% extends "nginx.conf.j2" %}{% block http %}{{ view.__class__ }}{% endblock %}'))
    )
    assert extension.current is good
    assert "SecurityError" in extension.validation_error
