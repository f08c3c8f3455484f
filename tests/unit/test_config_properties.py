"""Property: any operator config, however wrong, is either loaded or refused with a ConfigError
naming what is wrong; nothing else escapes (a crash-looping core is no answer to a typo); a
config that loads renders an empty cluster or is refused by the render with a message."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interlock.config import load_config
from interlock.config.schema import CoreConfig, ExtensionConfig, NginxConfig
from interlock.errors import BadInput, ConfigError
from interlock.model.routing import Routing
from interlock.render.nginx import render_nginx
from tests.unit.hostile import PAYLOADS


def _aliases(model: type) -> list[str]:
    return [field.alias for field in model.model_fields.values() if field.alias]  # type: ignore[attr-defined]


scalars = st.one_of(
    st.integers(-(2**33), 2**33),
    st.booleans(),
    st.sampled_from(PAYLOADS),
    st.text(max_size=20),
    st.sampled_from(["0s", "3s", "-1s", "1e9h", ":8080", "host", "ingress", "20080", "SIGQUIT"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


def _toml(table: dict[str, object]) -> str:
    # JSON's strings, numbers, booleans and arrays are TOML's too.
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.dictionaries(st.sampled_from([a for a in _aliases(CoreConfig) if a != "Extensions"]), values, max_size=3),
    extension=st.dictionaries(
        st.sampled_from([a for a in _aliases(ExtensionConfig) if a != "Config"]), values, max_size=4
    ),
    nginx=st.dictionaries(st.sampled_from(_aliases(NginxConfig)), values, max_size=4),
)
def test_any_config_loads_or_is_refused_with_a_message(
    top: dict[str, object], extension: dict[str, object], nginx: dict[str, object]
) -> None:
    text = _toml(top) + "[Extensions.default]\n" + _toml(extension) + "[Extensions.default.Config]\n" + _toml(nginx)
    try:
        config = load_config(text)
    except ConfigError as exc:
        assert "config.toml" in str(exc)
        return
    ext = next(iter(config.extensions.values()))
    try:
        render_nginx(Routing(cluster=ext.service_cluster), ext)
    except BadInput as exc:
        # A value only the render can refuse (a Template that does not print the config id):
        # said as such, the last good configuration keeps serving.
        assert str(exc)
