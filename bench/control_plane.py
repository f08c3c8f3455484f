"""Control plane: CPU time and memory of core + extension per change with 1,000 services.
(Reload time and memory against the number of hosts, for both proxy kinds: bench/reload_scale.py.)

Per change: the core's work (API JSON -> snapshot, build, publish) and the extension's (render,
nginx -t in a private directory), in this process with the real role classes, for one service
scaled by one task out of 1,000; CPU time from `time.process_time` plus the `nginx -t` child's.
The baseline, measured in the same run, is `json.loads` of the same API JSON (reading the input).

Usage: python bench/control_plane.py [--services 1000] [--changes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import dump
from interlock.config import default_config
from interlock.edges.docker_source import EventStream
from interlock.edges.peer_http import PeerClient
from interlock.roles.core import Core
from interlock.roles.extension import Extension
from interlock.testing.swarm_json import swarm_json
from reload_scale import services


class StaticSource:
    def __init__(self) -> None:
        self.raw: dict[str, list[dict[str, object]]] = {}

    def list_swarm(self) -> dict[str, list[dict[str, object]]]:
        return self.raw

    def list_secrets(self) -> list[dict[str, Any]]:
        return []

    def stream_events(self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[..., None]) -> EventStream:
        raise NotImplementedError("the benchmark drives the core's rounds itself")


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def per_change(count: int, changes: int, *, dynamic: bool) -> dict[str, object]:
    """CPU per change with `count` routed services, for the two kinds of change: a service
    gaining a task (with dynamic upstreams only the targets move: no `nginx -t`, no reload) and
    a host added or removed (a new nginx.conf, validated with `nginx -t`)."""
    source = StaticSource()
    core = Core(
        default_config(Config={"DynamicUpstreams": dynamic}),
        source,
        None,
        service_name="bench",
        extension_tokens={"default": "x" * 20},
        operator_token="o" * 20,
        core_url="http://unused",
    )
    extension = Extension(name="default", core=PeerClient("http://unused", "t" * 20), proxy_token="p" * 20)
    kinds = {
        "task": [services(count, bump=i) for i in range(changes + 1)],
        "host": [services(count + i % 2) for i in range(changes + 1)],
    }
    results: dict[str, object] = {"services": count, "changes": changes}
    for kind, series in kinds.items():
        documents = [json.dumps(swarm_json({"services": specs})) for specs in series]
        core_cpu, ext_cpu, wall, baseline = [], [], [], []
        for index, text in enumerate(documents):
            started = time.process_time()
            json.loads(text)
            baseline.append(time.process_time() - started)
            source.raw = json.loads(text)
            t0, c0 = time.perf_counter(), time.process_time()
            await core.watcher.resync()
            c1 = time.process_time()
            state = core.board.slots["default"].state
            assert state is not None
            n0 = child_cpu()
            await extension.apply(state)
            c2, n1 = time.process_time(), child_cpu()
            if index:  # the first pass is the cold start, not a change
                core_cpu.append(c1 - c0)
                ext_cpu.append((c2 - c1) + (n1 - n0))
                wall.append(time.perf_counter() - t0)
        results[kind] = {
            "core_cpu_ms_median": statistics.median(core_cpu) * 1000,
            "extension_cpu_ms_median": statistics.median(ext_cpu) * 1000,
            "wall_ms_median": statistics.median(wall) * 1000,
            "baseline_json_load_cpu_ms_median": statistics.median(baseline) * 1000,
        }
    results["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["config_bytes"] = len(extension.current.text) if extension.current else 0
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    change = {
        mode: asyncio.run(per_change(args.services, args.changes, dynamic=mode == "dynamic"))
        for mode in ("static", "dynamic")
    }
    dump({"per_change": change, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
