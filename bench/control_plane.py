"""Control plane: CPU time and memory of core + extension per change with 1,000 services, and
nginx reload time and memory against the number of hosts (100, 1,000, 5,000).

Per change: the core's work (API JSON -> snapshot, build, publish) and the extension's (render,
nginx -t in a private directory), in this process with the real role classes, for one service
scaled by one task out of 1,000; CPU time from `time.process_time` plus the `nginx -t` child's.
The baseline, measured in the same run, is `json.loads` of the same API JSON (reading the input).
Reload: a real nginx on loopback serving the rendered configuration; HUP, then poll the status
port until the new configuration id answers; RSS of master + workers after the reload.

Usage: python bench/control_plane.py [--services 1000] [--changes 20] [--hosts 100,1000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import children, dump, rss_mb
from interlock.config import default_config
from interlock.edges.docker_source import EventStream
from interlock.edges.nginx_control import accepting_workers
from interlock.edges.peer_http import PeerClient
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.render.bundle import RenderedConfig
from interlock.render.nginx import render_nginx
from interlock.render.targets import targets_delta
from interlock.roles.core import Core
from interlock.roles.extension import Extension
from interlock.roles.runtime import quiet_gc
from interlock.testing.swarm_json import swarm_json
from reload_scale import confirm, post_targets


def services(count: int, bump: int | None = None) -> list[dict[str, object]]:
    return [
        {
            "name": f"app{i}",
            "networks": [f"net{i % 10}"],
            "replicas": 3 + (1 if i == bump else 0),
            "labels": {"com.docker.lb.hosts": f"app{i}.example.com", "com.docker.lb.port": "8080"},
        }
        for i in range(count)
    ]


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


def reload_for(hosts: int, tmp: Path, *, dynamic: bool) -> dict[str, object]:
    """nginx with `hosts` hosts: start, reloads for a change of hosts, and (dynamic upstreams)
    a change of targets applied without a reload, each until the status port answers it; for a
    reload also until the previous workers stopped accepting connections."""
    ext = default_config(TargetPort=18090, TargetSSLPort=18490).extensions["default"]
    ext = ext.model_copy(
        update={
            "config": ext.nginx.model_copy(
                update={
                    "pid_path": str(tmp / "reload.pid"),
                    "access_log_path": "/dev/null",
                    "error_log_path": str(tmp / "error.log"),
                    "dynamic_upstreams": dynamic,
                }
            )
        }
    )

    def rendered(specs: list[dict[str, object]]) -> RenderedConfig:
        return render_nginx(build(snapshot_from_api(swarm_json({"services": specs}))).routings[""], ext)

    with quiet_gc():
        first = rendered(services(hosts))
        one_more_host = rendered(services(hosts + 1))
        moved = rendered(services(hosts, bump=0))
    if dynamic and moved.config_id != first.config_id:
        raise RuntimeError("one more task should change only the targets")
    token = "bench-token-0123456789"
    (tmp / "control-token").write_text(token + "\n")
    path = tmp / "nginx.conf"
    path.write_text(first.text)
    (tmp / "targets").write_text(first.targets)
    started = time.perf_counter()
    master = subprocess.Popen(["nginx", "-p", f"{tmp}/", "-c", str(path), "-g", "daemon off;"])
    confirm(first.config_id)
    start_s = time.perf_counter() - started
    reloads, settled = [], []
    for config in [one_more_host, first] * 2:
        path.write_text(config.text)
        (tmp / "targets").write_text(config.targets)
        old_workers = accepting_workers(master.pid)
        t0 = time.perf_counter()
        master.send_signal(signal.SIGHUP)
        confirm(config.config_id)
        if dynamic:
            confirm(config.targets_id, "/interlock/targets")
        reloads.append(time.perf_counter() - t0)
        # Until the old workers stop accepting, some connections still get the old configuration.
        while old_workers & accepting_workers(master.pid):
            time.sleep(0.002)
        settled.append(time.perf_counter() - t0)
        time.sleep(0.3)
    memory = rss_mb([master.pid, *children(master.pid)])
    swaps = []
    live = first
    for config in [moved, first] * 2 if dynamic else ():
        delta = targets_delta(live.targets, config.targets)
        t0 = time.perf_counter()
        if post_targets(delta, token) != config.targets_id:
            raise RuntimeError("nginx did not take the targets")
        swaps.append(time.perf_counter() - t0)
        live = config
    master.send_signal(signal.SIGQUIT)
    master.wait(timeout=60)
    return {
        "hosts": hosts,
        "dynamic": dynamic,
        "config_mb": round(len(first.text) / 1e6, 2),
        "targets_mb": round(len(first.targets) / 1e6, 2),
        "start_s": round(start_s, 3),
        "reload_s_median": round(statistics.median(reloads), 3),
        "reload_s_max": round(max(reloads), 3),
        "reload_settled_s_median": round(statistics.median(settled), 3),
        "targets_swap_s_median": round(statistics.median(swaps), 4) if swaps else None,
        "rss_mb_after_reload": round(memory, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--hosts", default="100,1000,5000")
    args = parser.parse_args()
    change = {
        mode: asyncio.run(per_change(args.services, args.changes, dynamic=mode == "dynamic"))
        for mode in ("static", "dynamic")
    }
    with tempfile.TemporaryDirectory() as tmp:
        reloads = [
            reload_for(int(n), Path(tmp), dynamic=dynamic) for n in args.hosts.split(",") for dynamic in (False, True)
        ]
    dump({"per_change": change, "reload": reloads, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
