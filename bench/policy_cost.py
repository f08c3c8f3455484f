"""What per-service policies cost per request, both kinds, against the same route without them,
measured in one run.

On loopback, every proxy one worker (nginx) or one thread (HAProxy) pinned to CPU 1, wrk and
the backend on CPU 0. Four targets: Interlock's nginx with run-time routing (the default) for
one route, the same route with a policy, and the same pair on HAProxy. The policy is what a
user would put on a service: basic authentication (a bcrypt htpasswd user, cost 5 as
`htpasswd -B` makes it; wrk sends its credentials with every request, on all four targets),
an allow-list (the client is in its third network), a rate limit (high enough never to refuse,
so every request is counted), a request header and a response header set, and CORS origins (wrk
sends no Origin, so only the check runs). HAProxy's policy has no basic authentication (refused
on HAProxy clusters). Each round measures the four in an order that
rotates from round to round; the ratio reported is the median of each round's ratio of CPU time
per request (policy / none), with the medians of requests a second beside it.

The target (issue 23): less than 15 % more CPU per request with the policy.

Usage: python bench/policy_cost.py [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import dump, wait_http
from dataplane import HOST, WrkRun, backend_conf, interlock_conf, interlock_haproxy_conf, internal_ports_moved, wrk
from hot_path import start as start_nginx
from interlock.model.policy import Policy, RateLimit
from interlock.render.nginx_certificates import certificates_document
from interlock.wire.certificates import CertificateBundle, Credentials

POLICY = Policy(
    allow_ips=("10.0.0.0/8", "192.168.0.0/16", "127.0.0.0/8"),
    rate_limit=RateLimit(1_000_000, 1, 1_000_000),
    request_headers=(("X-Tenant", "blue"),),
    response_headers=(("X-Frame-Options", "DENY"),),
    cors_origins=("https://app.example.com",),
    auth_basic="bench-users",
    auth_realm="bench",
)
HAPROXY_POLICY = replace(POLICY, auth_basic="", auth_realm="")
CREDENTIALS = "Authorization: Basic " + base64.b64encode(b"bench:wonder land").decode()


def users() -> bytes:
    """The certificates document with one bcrypt user, as the core would send it."""
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    hashed: bytes = libcrypt.crypt(b"wonder land", b"$2y$05$" + b"benchsaltbenchsaltbenc")
    bundle = CertificateBundle("", credentials=(Credentials.of("bench-users", (f"bench:{hashed.decode()}",)),))
    return certificates_document(bundle)


PORTS = {
    "nginx": 18191,
    "nginx, with the policy": 18192,
    "haproxy": 18193,
    "haproxy, with the policy": 18194,
}


def start_haproxy(tmp: Path, name: str, text: str) -> subprocess.Popen[bytes]:
    (tmp / f"{name}.cfg").write_text(text)
    return subprocess.Popen(["taskset", "-c", "1", "haproxy", "-W", "-f", str(tmp / f"{name}.cfg")])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "backend.conf").write_text(backend_conf(tmp))
        bare = interlock_conf(tmp, dynamic=False, runtime=True, port=PORTS["nginx"])
        policed = interlock_conf(tmp, dynamic=False, runtime=True, port=PORTS["nginx, with the policy"], policy=POLICY)
        procs = {
            "backend": subprocess.Popen(
                ["taskset", "-c", "0", "nginx", "-c", str(tmp / "backend.conf"), "-g", "daemon off;"]
            ),
            "nginx": start_nginx(tmp / "bare", internal_ports_moved(bare.text, 1), bare.targets),
            "nginx, with the policy": start_nginx(
                tmp / "policed", internal_ports_moved(policed.text, 2), policed.targets, users()
            ),
            "haproxy": start_haproxy(tmp, "bare", interlock_haproxy_conf(tmp, port=PORTS["haproxy"])),
            "haproxy, with the policy": start_haproxy(
                tmp,
                "policed",
                interlock_haproxy_conf(tmp, port=PORTS["haproxy, with the policy"], policy=HAPROXY_POLICY),
            ),
        }
        runs: dict[str, list[WrkRun]] = {name: [] for name in PORTS}
        try:
            for port in PORTS.values():
                wait_http(port, HOST)
            names = list(PORTS)
            for index in range(args.rounds):
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    runs[name].append(wrk(PORTS[name], args.seconds, (procs[name].pid,), (CREDENTIALS,)))
                    time.sleep(0.3)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(timeout=20)

    def cpu_ratio(name: str, baseline: str) -> float:
        pairs = zip(runs[name], runs[baseline], strict=True)
        return round(statistics.median(a["cpu_us_per_request"] / b["cpu_us_per_request"] for a, b in pairs), 3)

    dump(
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "results": {
                name: {
                    "rps": round(statistics.median(r["rps"] for r in rs)),
                    "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in rs), 2),
                    "non2xx": sum(int(r["non2xx"]) for r in rs),
                }
                for name, rs in runs.items()
            },
            "nginx_policy_to_none": cpu_ratio("nginx, with the policy", "nginx"),
            "haproxy_policy_to_none": cpu_ratio("haproxy, with the policy", "haproxy"),
        }
    )


if __name__ == "__main__":
    main()
