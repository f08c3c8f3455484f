"""Golden cases: one readable file per case under cases/, walked by test_golden.py.

A case file is TOML input, then a line `---------- problems`, the expected problems (one per
line), then `---------- routing model` and the routing model `build` made (JSON), then
`---------- nginx.conf` and the expected configuration, then (with dynamic upstreams)
`---------- targets` and the expected targets document. So a failing case shows whether build
or render changed. The Lua library printed into every dynamic nginx.conf is shown as one marker
line (it is constant text); so is the common preamble (main, events and the http settings of the
default configuration), printed in full in PREAMBLE_CASE only, so a change to it shows once. The input holds
`services`/`nodes`/`networks` in the compact form of `interlock.testing.swarm_json`, or
`snapshot_file` naming a real captured snapshot under tests/data; optional `config` (Interlock
TOML text) and `cluster`.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from interlock.config import CoreConfig, ExtensionConfig, default_config, load_config
from interlock.model.build import BuildResult, build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing
from interlock.render.nginx import lua_library, render_nginx
from interlock.testing.swarm_json import swarm_json

CASES = Path(__file__).parent / "cases"
DATA = Path(__file__).parent.parent / "data"
PROBLEMS_MARK = "---------- problems\n"
CONFIG_MARK = "---------- nginx.conf\n"
TARGETS_MARK = "---------- targets\n"
ROUTING_MARK = "---------- routing model\n"
LUA_MARKER = "-- (interlock/render/lua/targets.lua, printed here in full)"
TRAFFIC_LUA_MARKER = "-- (interlock/render/lua/traffic.lua, printed here in full)"
PREAMBLE_CASE = "basic-host.txt"
PREAMBLE_MARKER = f"# (the common preamble: main, events and http settings, in full in {PREAMBLE_CASE})\n"


@dataclass(frozen=True)
class Case:
    path: Path
    source: str
    config: CoreConfig
    cluster: str
    result: BuildResult

    @property
    def routing(self) -> Routing:
        return self.result.routings[self.cluster]

    @property
    def extension(self) -> ExtensionConfig:
        return next(e for e in self.config.extensions.values() if e.service_cluster == self.cluster)

    def actual(self) -> str:
        problems = "".join(p.describe() + "\n" for p in self.result.problems)
        routing = json.dumps(msgspec.to_builtins(self.routing), indent=1) + "\n"
        rendered = render_nginx(self.routing, self.extension)
        config = _without_lua(rendered.text)
        if self.path.name != PREAMBLE_CASE:
            config = config.replace(common_preamble(), PREAMBLE_MARKER)
        targets = f"{TARGETS_MARK}{rendered.targets}" if rendered.targets else ""
        return f"{self.source}{PROBLEMS_MARK}{problems}{ROUTING_MARK}{routing}{CONFIG_MARK}{config}{targets}"


def _without_lua(text: str) -> str:
    return text.replace(lua_library("targets.lua"), LUA_MARKER).replace(lua_library("traffic.lua"), TRAFFIC_LUA_MARKER)


def common_preamble() -> str:
    """What every static nginx.conf of the default configuration holds before its own servers:
    from `load_module` to the status server."""
    text = _without_lua(render_nginx(Routing(cluster=""), default_config().extensions["default"]).text)
    start = text.index("load_module ")
    return text[start : text.index("    # Interlock's own status")]


def load_case(path: Path) -> Case:
    text = path.read_text()
    source = text.split(PROBLEMS_MARK, 1)[0]
    spec = tomllib.loads(source)
    config = load_config(spec["config"], source=str(path)) if "config" in spec else default_config()
    snapshot_file = spec.get("snapshot_file")
    document = json.loads((DATA / snapshot_file).read_text()) if snapshot_file else swarm_json(spec)
    clusters = tuple(e.service_cluster for e in config.extensions.values())
    cluster = spec.get("cluster", clusters[0])
    result = build(
        snapshot_from_api(document),
        clusters,
        **config.build_options,
    )
    return Case(path, source, config, cluster, result)


def all_cases() -> list[Path]:
    return sorted(CASES.glob("*.txt"))
