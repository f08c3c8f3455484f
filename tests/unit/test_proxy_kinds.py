"""The registry names every kind a configuration can choose, and an unknown one is refused with
the known ones listed."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from interlock.config.schema import ExtensionConfig
from interlock.edges.proxy_controllers import CONTROLLERS, new_controller
from interlock.edges.proxy_kinds import KINDS


def test_every_kind_a_configuration_can_choose_is_registered() -> None:
    assert set(KINDS) == set(get_args(ExtensionConfig.model_fields["kind"].annotation))
    assert all(name == kind.name for name, kind in KINDS.items())
    assert set(CONTROLLERS) == set(KINDS), "the agent's registry names the kinds the extension's does"


def test_each_kind_gets_its_own_controller_and_an_unknown_kind_says_what_is_known(tmp_path: Path) -> None:
    names = {new_controller(name, tmp_path, tmp_path).kind for name in KINDS}
    assert names == {"nginx", "HAProxy"}
    with pytest.raises(ValueError, match="no proxy kind 'envoy'; known: haproxy, nginx"):
        new_controller("envoy", tmp_path, tmp_path)


def test_a_config_table_names_its_kind_once() -> None:
    ext = ExtensionConfig.model_validate({"Kind": "haproxy", "Config": {"kind": "haproxy", "MaxConnections": 9}})
    assert ext.haproxy.max_connections == 9
    with pytest.raises(ValueError, match=r"Config\.Kind is 'nginx' but the extension's Kind is 'haproxy'"):
        ExtensionConfig.model_validate({"Kind": "haproxy", "Config": {"Kind": "nginx"}})
