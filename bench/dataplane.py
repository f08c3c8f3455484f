"""Data plane: requests per second and latency to one backend, straight and through proxies.

All on loopback, in one run: the backend (nginx answering 200 with a small body), Interlock's
generated configuration (rendered for a host routed to that backend) as by default (servers in
nginx.conf) and with `DynamicUpstreams = true` (the server chosen per request by the Lua
balancer), a minimal hand-written nginx reverse proxy, Interlock's generated HAProxy configuration
(`Kind = "haproxy"`, also with `HideInfoHeaders = true`), a hand-written HAProxy doing the
hand-written nginx's job (route the host, forward the client's address) and Caddy as a plain
reverse proxy. The generated nginx configurations count requests per route as by default
(`TrafficMetrics`: Lua in each worker); one more runs with `TrafficMetrics = false`, to show what
counting costs, and the counters are checked against what wrk sent. Load: wrk, one thread, 32
keep-alive connections, each target measured `--rounds` times in alternation; medians reported,
and for the key ratios the median of each round's ratio (targets measured seconds apart share
the machine's mood). Every proxy
runs one worker/thread pinned to CPU 1, while wrk and the backend share CPU 0, so the comparison
is per core and the machine's other load moves all targets alike.

Usage: python bench/dataplane.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, TypedDict

from common import cpu_seconds, dump, sh, wait_http
from interlock.config import default_config
from interlock.edges.offline_check import stand_in_pem
from interlock.model.policy import Policy
from interlock.model.routing import Route, Routing, Server, Upstream, VirtualHost
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy import render_haproxy
from interlock.render.haproxy_certificates import STATE_MAP
from interlock.render.nginx import render_nginx
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE

BACKEND, INTERLOCK, NGINX, HAPROXY, CADDY, STATIC, GENERATED_HAPROXY = 18001, 18080, 18081, 18082, 18083, 18084, 18085
GENERATED_HAPROXY_BARE, UNMETERED = 18086, 18087
HOST = "bench.local"


def backend_conf(tmp: Path) -> str:
    return f"""worker_processes 1; pid {tmp}/backend.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; server {{ listen 127.0.0.1:{BACKEND}; keepalive_requests 100000;
  location / {{ default_type text/plain; return 200 "hello from the backend\\n"; }} }} }}
"""


def handwritten_conf(tmp: Path) -> str:
    return f"""worker_processes 1; pid {tmp}/nginx.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log /dev/null;
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 32; }}
  server {{ listen 127.0.0.1:{NGINX}; server_name {HOST};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }} }} }}
"""


def interlock_conf(
    tmp: Path,
    *,
    dynamic: bool,
    metrics: bool = True,
    hide_info_headers: bool = False,
    port: int = 0,
    runtime: bool = False,
    policy: Policy | None = None,
) -> RenderedConfig:
    """The generated nginx configuration, counting requests per route (`TrafficMetrics`, on by
    default) unless `metrics` is false; `hide_info_headers`: without Interlock's five response
    headers (`HideInfoHeaders = true`); `runtime`: with run-time routing (measured in
    hot_path.py; here the server-block designs); `policy`: the backend's service has it
    (policy_cost.py)."""
    port = port or (INTERLOCK if dynamic else STATIC if metrics else UNMETERED)
    ext = default_config(TargetPort=port, TargetSSLPort=port + 1000).extensions["default"]
    ext = ext.model_copy(
        update={
            "config": ext.nginx.model_copy(
                update={
                    "pid_path": f"{tmp}/interlock-{port}.pid",
                    "access_log_path": "/dev/null",
                    "error_log_path": "/dev/null",
                    "user": "nginx",
                    "dynamic_upstreams": dynamic,
                    "runtime_routing": runtime,
                    "traffic_metrics": metrics,
                    "hide_info_headers": hide_info_headers,
                }
            )
        }
    )
    return render_nginx(one_route(policy), ext)


def one_route(policy: Policy | None = None) -> Routing:
    """The benchmarks' routing: HOST to the backend, its service with `policy`."""
    upstream = Upstream(HOST, (Server("127.0.0.1", BACKEND, "backend"),), policy=policy)
    return Routing(
        cluster="", hosts=(VirtualHost(HOST, routes=(Route("/", HOST),), services=("backend",)),), upstreams=(upstream,)
    )


def interlock_haproxy_conf(
    tmp: Path, *, hide_info_headers: bool = False, port: int = 0, policy: Policy | None = None
) -> str:
    """Interlock's generated HAProxy configuration (`Kind = "haproxy"`) for the same route: one
    thread like the others, its request log off as nginx's access log is here, its internal
    loopback ports moved aside. `hide_info_headers`: without Interlock's five response headers
    (`HideInfoHeaders = true`), to show what they cost."""
    port = port or (GENERATED_HAPROXY_BARE if hide_info_headers else GENERATED_HAPROXY)
    ext = default_config(
        Kind="haproxy",
        TargetPort=port,
        TargetSSLPort=port + 1000,
        Config={
            "PidPath": f"{tmp}/haproxy-{port}.pid",
            "GlobalOptions": ["nbthread 1"],
            "HideInfoHeaders": hide_info_headers,
        },
    ).extensions["default"]
    text = render_haproxy(one_route(policy), ext, certificates_dir=str(tmp)).text
    # The proxy agent keeps this map beside the certificates (empty: not draining).
    (tmp / STATE_MAP).touch()
    return (
        text.replace("    log global\n", "")
        .replace(":20080", f":{port + 4000}")
        .replace(":20443", f":{port + 5000}")
        .replace("/var/run/haproxy-admin.sock", f"{tmp}/haproxy-admin-{port}.sock")
    )


def haproxy_conf() -> str:
    """A hand-written HAProxy doing the hand-written nginx's job: route the host to the backend
    (an unknown host gets HAProxy's 503) and forward the client's address."""
    return f"""global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option forwardfor
frontend f
  bind 127.0.0.1:{HAPROXY}
  use_backend b if {{ req.hdr(host),field(1,:),lower -m str {HOST} }}
backend b
  server s1 127.0.0.1:{BACKEND}
"""


def caddy_conf() -> str:
    return f"""{{
  admin off
  auto_https off
}}
:{CADDY} {{
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:{BACKEND}
}}
"""


class WrkRun(TypedDict):
    rps: float
    cpu_us_per_request: float
    p50_ms: float
    p99_ms: float
    errors: str
    non2xx: int
    requests: int


def wrk(port: int, seconds: int, pids: tuple[int, ...], headers: tuple[str, ...] = ()) -> WrkRun:
    """wrk against `port` (with `headers` beside Host); also the CPU time the processes `pids`
    (the proxy) spent per request."""
    before = sum(cpu_seconds(pid) for pid in pids)
    out = sh(
        "taskset",
        "-c",
        "0",
        "wrk",
        "-t1",
        "-c32",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Host: {HOST}",
        *(part for header in headers for part in ("-H", header)),
        f"http://127.0.0.1:{port}/",
        timeout=seconds + 60,
    )
    cpu = sum(cpu_seconds(pid) for pid in pids) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "cpu_us_per_request": cpu / requests * 1e6,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": errors.group(1) if errors else "none",
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "requests": sent,
    }


def internal_ports_moved(text: str, step: int) -> str:
    """A generated nginx.conf whose internal loopback ports (status 20080, TLS 20443 and 20444:
    constants of the renderer) moved `step` thousand up, so that several run side by side."""
    for port in (20080, 20443, 20444):
        text = text.replace(f":{port}", f":{port + 1000 * step}")
    return text


def traffic_counted(status_port: int) -> int:
    """Requests the configuration's counters hold for the benchmark's host (its status port)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/interlock/traffic", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(int(float(line.rsplit("\t", 1)[1])) for line in lines if line.startswith(HOST) and "\tn\t" in line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = {
            "backend": backend_conf(tmp),
            "nginx": handwritten_conf(tmp),
            # The Interlock configurations run side by side.
            "interlock-static": internal_ports_moved(interlock_conf(tmp, dynamic=False).text, 1),
            "interlock-unmetered": internal_ports_moved(interlock_conf(tmp, dynamic=False, metrics=False).text, 2),
            "haproxy": haproxy_conf(),
            "interlock-haproxy": interlock_haproxy_conf(tmp),
            "interlock-haproxy-bare": interlock_haproxy_conf(tmp, hide_info_headers=True),
            "caddy": caddy_conf(),
        }
        for name, text in files.items():
            (tmp / f"{name}.conf").write_text(text)
        (tmp / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
        # The dynamic configuration runs as the proxy agent runs it: its work directory is the
        # prefix, where the Lua code finds the targets document.
        dynamic = interlock_conf(tmp, dynamic=True)
        prefix = tmp / "interlock"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(dynamic.text)
        (prefix / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
        (prefix / "targets").write_text(dynamic.targets)
        cpu0, cpu1 = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
        procs = [
            subprocess.Popen([*cpu0, "nginx", "-c", str(tmp / "backend.conf"), "-g", "daemon off;"]),
            subprocess.Popen([*cpu1, "nginx", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]),
            subprocess.Popen(
                [*cpu1, "nginx", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
            ),
            subprocess.Popen([*cpu1, "nginx", "-c", str(tmp / "interlock-static.conf"), "-g", "daemon off;"]),
            subprocess.Popen(
                [*cpu1, "haproxy", "-f", str(tmp / "haproxy.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [*cpu1, "haproxy", "-f", str(tmp / "interlock-haproxy.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [*cpu1, "haproxy", "-f", str(tmp / "interlock-haproxy-bare.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [*cpu1, "caddy", "run", "--adapter", "caddyfile", "--config", str(tmp / "caddy.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"GOMAXPROCS": "1", "HOME": tmp_name, "PATH": "/usr/bin:/bin"},
            ),
            subprocess.Popen([*cpu1, "nginx", "-c", str(tmp / "interlock-unmetered.conf"), "-g", "daemon off;"]),
        ]
        targets: dict[str, tuple[int, tuple[int, ...]]] = {
            "direct (backend)": (BACKEND, (procs[0].pid,)),
            "interlock (generated)": (STATIC, (procs[3].pid,)),
            "interlock (generated, TrafficMetrics = false)": (UNMETERED, (procs[8].pid,)),
            "interlock (DynamicUpstreams)": (INTERLOCK, (procs[2].pid,)),
            "nginx (hand-written)": (NGINX, (procs[1].pid,)),
            "haproxy": (HAPROXY, (procs[4].pid,)),
            "interlock haproxy (generated)": (GENERATED_HAPROXY, (procs[5].pid,)),
            "interlock haproxy (generated, HideInfoHeaders)": (GENERATED_HAPROXY_BARE, (procs[6].pid,)),
            "caddy": (CADDY, (procs[7].pid,)),
        }
        try:
            for port, _ in targets.values():
                wait_http(port, HOST)
            runs: dict[str, list[WrkRun]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (port, pids) in targets.items():
                    runs[name].append(wrk(port, args.seconds, pids))
                    time.sleep(0.5)
            # What the static configuration counted (its workers add up once a second).
            time.sleep(1.5)
            counted = traffic_counted(21080)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=20)
    sent = sum(r["requests"] for r in runs["interlock (generated)"])
    results: dict[str, dict[str, Any]] = {
        name: {
            "rps": statistics.median(r["rps"] for r in rs),
            "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "errors": sorted({str(r["errors"]) for r in rs}),
            "non2xx": sum(int(r["non2xx"]) for r in rs),
        }
        for name, rs in runs.items()
    }
    hand = results["nginx (hand-written)"]["rps"]

    def paired(name: str, baseline: str) -> float:
        """Median over rounds of `name`'s throughput / `baseline`'s in the same round: targets
        measured seconds apart share the machine's mood, rounds minutes apart do not."""
        return statistics.median(a["rps"] / b["rps"] for a, b in zip(runs[name], runs[baseline], strict=True))

    dump(
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": results,
            "interlock_to_handwritten": results["interlock (generated)"]["rps"] / hand,
            "interlock_to_caddy": results["interlock (generated)"]["rps"] / results["caddy"]["rps"],
            "interlock_to_haproxy": results["interlock (generated)"]["rps"] / results["haproxy"]["rps"],
            "dynamic_to_handwritten": results["interlock (DynamicUpstreams)"]["rps"] / hand,
            "generated_haproxy_to_handwritten_haproxy": results["interlock haproxy (generated)"]["rps"]
            / results["haproxy"]["rps"],
            "paired_generated_haproxy_to_handwritten_haproxy": paired("interlock haproxy (generated)", "haproxy"),
            "paired_interlock_to_handwritten": paired("interlock (generated)", "nginx (hand-written)"),
            "paired_unmetered_to_handwritten": paired(
                "interlock (generated, TrafficMetrics = false)", "nginx (hand-written)"
            ),
            "paired_metered_to_unmetered": paired(
                "interlock (generated)", "interlock (generated, TrafficMetrics = false)"
            ),
            "cpu_unmetered_to_metered": results["interlock (generated, TrafficMetrics = false)"]["cpu_us_per_request"]
            / results["interlock (generated)"]["cpu_us_per_request"],
            "traffic_counted": counted,
            "traffic_sent": sent,
            "paired_bare_haproxy_to_handwritten_haproxy": paired(
                "interlock haproxy (generated, HideInfoHeaders)", "haproxy"
            ),
            "paired_ratio_spread": [
                round(a["rps"] / b["rps"], 2)
                for a, b in zip(runs["interlock haproxy (generated)"], runs["haproxy"], strict=True)
            ],
            "generated_haproxy_to_generated_nginx": results["interlock haproxy (generated)"]["rps"]
            / results["interlock (generated)"]["rps"],
            "cpu_handwritten_haproxy_to_generated": results["haproxy"]["cpu_us_per_request"]
            / results["interlock haproxy (generated)"]["cpu_us_per_request"],
            # CPU per request is steadier than throughput on a noisy machine: the proxy's own cost.
            "cpu_handwritten_to_interlock": results["nginx (hand-written)"]["cpu_us_per_request"]
            / results["interlock (generated)"]["cpu_us_per_request"],
            "cpu_handwritten_to_dynamic": results["nginx (hand-written)"]["cpu_us_per_request"]
            / results["interlock (DynamicUpstreams)"]["cpu_us_per_request"],
        }
    )


if __name__ == "__main__":
    main()
