"""Reload time and memory against the number of hosts, for both proxy kinds.

Each host is one service with 3 tasks (no TLS), rendered by Interlock, served by a real proxy on
loopback. For each kind and size: the validation the extension runs before every change
(`nginx -t` / `haproxy -c`), the start, reloads for a host added and removed (until the status
port answers the new configuration's id; "settled" until the previous workers stopped taking
connections), a task move (one service gains a task) and the memory of master + workers
(PSS: a page the master shares with its workers counts once; the sum of their RSS beside it).

- nginx, run-time routing (the default, `RuntimeRouting = true`): nginx.conf does not change
  with the hosts; a host added and a task move are each the targets delta posted to the running
  nginx, until it answers (the reloads timed are of the same nginx.conf: what a change of a
  listener or a certificate costs).
- nginx, static upstreams (`RuntimeRouting = false`): a task move is a reload.
- nginx, `DynamicUpstreams = true` (and `RuntimeRouting = false`): the task move is the targets
  delta posted to the running nginx, until it answers.
- HAProxy (`Kind = "haproxy"`), through the proxy agent's own controller: SIGUSR2 to the
  master-worker process, and the task move through the runtime API, no reload.

The baseline, in the same run, is the same configuration's validation: reading and checking the
text costs what it costs whichever proxy serves it.

Usage: python bench/reload_scale.py [--hosts 100,1000,5000,10000] [--reloads 4] [--kinds haproxy,static,dynamic]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import children, dump, pss_mb, rss_mb
from interlock.config import default_config
from interlock.config.schema import ExtensionConfig
from interlock.constants import STATUS_PORT
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import accepting_workers
from interlock.edges.offline_check import stand_in_pem
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE
from interlock.render.targets import targets_delta
from interlock.roles.runtime import quiet_gc
from interlock.testing.swarm_json import swarm_json

HTTP, HTTPS = 18090, 18490


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


def status(path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{STATUS_PORT}{path}", timeout=5) as response:
        return str(response.read().decode().strip())


def confirm(config_id: str, path: str = "/interlock/config", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if status(path) == config_id:
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{path} never answered {config_id}")


def post_targets(targets: str, token: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{STATUS_PORT}/interlock/targets",
        data=targets.encode(),
        headers={"Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode().strip())


def timed(*command: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - t0


def three(
    render: Callable[[Routing], RenderedConfig], hosts: int
) -> tuple[RenderedConfig, RenderedConfig, RenderedConfig]:
    """The configuration for `hosts` hosts, for one host more, and for one task more."""

    def rendered(specs: list[dict[str, object]]) -> RenderedConfig:
        return render(build(snapshot_from_api(swarm_json({"services": specs}))).routings[""])

    with quiet_gc():
        return rendered(services(hosts)), rendered(services(hosts + 1)), rendered(services(hosts, bump=hosts - 1))


def footprint(master: int) -> tuple[float, float]:
    """The memory of a master and its workers: PSS (shared pages counted once) and RSS summed."""
    pids = [master, *children(master)]
    return pss_mb(pids), rss_mb(pids)


def result(
    kind: str,
    hosts: int,
    first: RenderedConfig,
    *,
    check_s: float,
    start_s: float,
    reloads: list[float],
    settled: list[float],
    moves: list[float],
    memory: tuple[float, float],
    host_adds: list[float] | None = None,
) -> dict[str, object]:
    """One row: the configuration's size and the medians of what was timed (seconds)."""
    return {
        "kind": kind,
        "hosts": hosts,
        "config_mb": round(len(first.text) / 1e6, 2),
        "targets_mb": round(len(first.targets) / 1e6, 2),
        "check_s": round(check_s, 3),
        "start_s": round(start_s, 3),
        "reload_s_median": round(statistics.median(reloads), 3),
        "reload_s_max": round(max(reloads), 3),
        "reload_settled_s_median": round(statistics.median(settled), 3),
        "task_move_s_median": round(statistics.median(moves), 4) if moves else None,
        # A host added without a reload (run-time routing): the delta posted until nginx answers.
        "host_add_s_median": round(statistics.median(host_adds), 4) if host_adds else None,
        "pss_mb": round(memory[0], 1),
        "rss_mb": round(memory[1], 1),
    }


def nginx_scale(hosts: int, tmp: Path, *, dynamic: bool, reloads: int, runtime: bool = False) -> dict[str, object]:
    base = default_config(TargetPort=HTTP, TargetSSLPort=HTTPS).extensions["default"]
    ext: ExtensionConfig = base.model_copy(
        update={
            "config": base.nginx.model_copy(
                update={
                    "pid_path": str(tmp / "reload.pid"),
                    "access_log_path": "/dev/null",
                    "error_log_path": str(tmp / "error.log"),
                    "dynamic_upstreams": dynamic,
                    "runtime_routing": runtime,
                }
            )
        }
    )
    first, one_more_host, moved = three(lambda routing: render_nginx(routing, ext), hosts)
    if dynamic and moved.config_id != first.config_id:
        raise RuntimeError("one more task should change only the targets")
    if runtime and one_more_host.config_id != first.config_id:
        raise RuntimeError("one more host should change only the targets")
    token = "bench-token-0123456789"
    (tmp / "control-token").write_text(token + "\n")
    path = tmp / "nginx.conf"
    path.write_text(first.text)
    (tmp / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
    (tmp / "targets").write_text(first.targets)
    check_s = timed("nginx", "-t", "-q", "-p", f"{tmp}/", "-c", str(path))
    started = time.perf_counter()
    master = subprocess.Popen(["nginx", "-p", f"{tmp}/", "-c", str(path), "-g", "daemon off;"])
    try:
        confirm(first.config_id)
        start_s = time.perf_counter() - started
        times, settled = [], []
        for config in [one_more_host, first] * (reloads // 2):
            path.write_text(config.text)
            (tmp / "targets").write_text(config.targets)
            old_workers = accepting_workers(master.pid)
            t0 = time.perf_counter()
            master.send_signal(signal.SIGHUP)
            confirm(config.config_id)
            if dynamic or runtime:
                confirm(config.targets_id, "/interlock/targets")
            times.append(time.perf_counter() - t0)
            # Until the old workers stop accepting, some connections still get the old configuration.
            while old_workers & accepting_workers(master.pid):
                time.sleep(0.002)
            settled.append(time.perf_counter() - t0)
            time.sleep(0.3)
        memory = footprint(master.pid)

        def post_all(configs: list[RenderedConfig]) -> list[float]:
            took, live = [], first
            for config in configs:
                delta = targets_delta(live.targets, config.targets)
                t0 = time.perf_counter()
                if post_targets(delta, token) != config.targets_id:
                    raise RuntimeError("nginx did not take the targets")
                took.append(time.perf_counter() - t0)
                live = config
            return took

        moves = post_all([moved, first] * (reloads // 2)) if dynamic or runtime else []
        host_adds = post_all([one_more_host, first] * (reloads // 2)) if runtime else []
        memory = max(memory, footprint(master.pid))
        master.send_signal(signal.SIGQUIT)
        master.wait(timeout=120)
    finally:
        # A failure above must not leave nginx running (it holds our output pipe open).
        if master.poll() is None:
            master.kill()
    return result(
        "nginx, run-time routing" if runtime else "nginx, dynamic" if dynamic else "nginx, static",
        hosts,
        first,
        check_s=check_s,
        start_s=start_s,
        reloads=times,
        settled=settled,
        moves=moves,
        memory=memory,
        host_adds=host_adds,
    )


class _TimedHAProxy(HAProxyController):
    """The agent's controller, noting when each reload's signal went and which worker was live."""

    signalled = 0.0
    old_workers: frozenset[int] = frozenset()

    def _reload(self) -> None:
        assert self.process is not None
        self.old_workers = frozenset(children(self.process.pid))
        self.signalled = time.perf_counter()
        super()._reload()


async def haproxy_scale(hosts: int, tmp: Path, *, reloads: int) -> dict[str, object]:
    ext = default_config(
        Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config={"PidPath": str(tmp / "haproxy.pid")}
    ).extensions["default"]
    certificates = tmp / "certs"
    first, one_more_host, moved = three(
        lambda routing: render_haproxy(routing, ext, certificates_dir=str(certificates)), hosts
    )
    if moved.config_id != first.config_id:
        raise RuntimeError("one more task should change only the targets")
    # HAProxy's log (a line a stopped proxy on every reload) is kept out of this benchmark's output.
    control = _TimedHAProxy(
        tmp / "haproxy", secrets_dir=tmp, certificates_dir=certificates, confirm_timeout=120, log=tmp / "haproxy.log"
    )
    (tmp / "haproxy").mkdir(exist_ok=True)
    (tmp / "haproxy" / "check.cfg").write_text(first.text)
    check_s = timed("haproxy", "-c", "-q", "-f", str(tmp / "haproxy" / "check.cfg"))
    started = time.perf_counter()
    await control.install(first.text, first.config_id, first.targets, first.targets_id)
    start_s = time.perf_counter() - started
    assert control.process is not None
    times, settled = [], []
    try:
        for config in [one_more_host, first] * (reloads // 2):
            await control.install(config.text, config.config_id, config.targets, config.targets_id)
            times.append(time.perf_counter() - control.signalled)
            while control.old_workers & set(children(control.process.pid)):
                await asyncio.sleep(0.002)
            settled.append(time.perf_counter() - control.signalled)
            await asyncio.sleep(0.3)
        memory = footprint(control.process.pid)
        moves = []
        for config in [moved, first] * (reloads // 2):
            t0 = time.perf_counter()
            await control.update_targets(config.targets, config.targets_id)
            moves.append(time.perf_counter() - t0)
        if control.reloads != 1 + len(times):
            raise RuntimeError("a task move reloaded")
    finally:
        await control.stop(signal.SIGQUIT, timeout=120)
    return result(
        "HAProxy",
        hosts,
        first,
        check_s=check_s,
        start_s=start_s,
        reloads=times,
        settled=settled,
        moves=moves,
        memory=memory,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="100,1000,5000,10000")
    parser.add_argument("--reloads", type=int, default=4)
    parser.add_argument(
        "--kinds", default="haproxy,runtime,static,dynamic", help="of haproxy, runtime, static, dynamic"
    )
    args = parser.parse_args()
    rows = []
    for hosts in (int(n) for n in args.hosts.split(",")):
        for kind in args.kinds.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                if kind == "haproxy":
                    rows.append(asyncio.run(haproxy_scale(hosts, Path(tmp), reloads=args.reloads)))
                else:
                    rows.append(
                        nginx_scale(
                            hosts, Path(tmp), dynamic=kind == "dynamic", runtime=kind == "runtime", reloads=args.reloads
                        )
                    )
    dump({"rows": rows})


if __name__ == "__main__":
    main()
