"""ACME on the real swarm, both kinds, with Debian's pebble (tests/e2e/pebble.py): a service
labelled `ssl_acme=true` created -> the first TLS handshake presenting a certificate pebble
issued for it. Next to the baseline measured in the same trial: the same service's first 200
over plain HTTP (routing alone). "core saw it -> handshake" starts at the core's log line saying
it issued the certificate, so the rest is the certificate's way to every proxy; before it come
the order itself (pebble validates the challenge at the proxy) and, on a first order, the core
mounting the CA bundle. Each trial starts once the core's own service is settled (the previous
trial's certificate unmounted), as a steady core would order. Proxy tasks replaced during the
trials are counted (the goal: none). TLS clients go to 127.0.0.1 only.

Usage: python bench/acme_orders.py [--trials 3]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import create_backend, dump, sh, summary, until

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.pebble import issued, resolve, running_pebble  # noqa: E402
from tests.e2e.swarm import task_ips  # noqa: E402

CLUSTERS = {"nginx": ("", 8080, 8443, "interlock-proxy"), "haproxy": ("hap", 7080, 7443, "interlock-proxy-hap")}
"""Kind -> (service cluster, HTTP port, TLS port, proxy service) in tests/e2e/interlock.toml."""


def http_ok(host: str, port: int) -> bool:
    answer = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    return answer.stdout == "200"


def core_issued(host: str) -> float:
    """When a core task logged that it issued `host`'s certificate (Docker's timestamp; the
    core that ordered may have been replaced since, so every task's log is read)."""
    logs = subprocess.run(
        ["docker", "service", "logs", "--timestamps", "--raw", "interlock"], capture_output=True, text=True, check=False
    )
    for line in (logs.stdout + logs.stderr).splitlines():
        if "issued a certificate for" in line and host in line:
            stamp = line.split()[0][:26].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC).timestamp()
    raise RuntimeError(f"no core said it issued {host}'s certificate")


def proxy_tasks(service: str) -> set[str]:
    return set(sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", service).split())


def core_settled() -> bool:
    """No update of the core's service under way (mounting or unmounting certificates) and
    its status answering: the next order starts in a core that stays."""
    state = sh(
        "docker", "service", "inspect", "interlock", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}"
    )
    status = subprocess.run([str(REPO / ".venv" / "bin" / "interlock"), "status"], capture_output=True, check=False)
    return state.strip() in ("", "completed") and status.returncode == 0


def trial(kind: str, index: int, root: str) -> dict[str, float]:
    cluster, http_port, tls_port, proxy = CLUSTERS[kind]
    until(core_settled, timeout=240)
    name = f"acme-{kind}-{index}-{int(time.time())}"
    host = f"{name}.e2e.test"
    resolve(host, sorted(task_ips(proxy, "e2e-a"))[0])
    labels = {"com.docker.lb.ssl_acme": "true"}
    if cluster:
        labels["com.docker.lb.service_cluster"] = cluster
    create_backend(name, host, labels=labels)
    created = time.time()
    routed = until(lambda: http_ok(host, http_port), timeout=240)
    served = until(lambda: issued(host, tls_port, root) is not None, timeout=240)
    until(lambda: _quietly(core_issued, host), timeout=60)  # docker service logs lags a moment
    seen = core_issued(host)
    sh("docker", "service", "rm", name)
    return {
        "create_to_http_200": routed - created,
        "create_to_handshake": served - created,
        "core_issued_to_handshake": served - seen,
    }


def _quietly(read: Callable[[str], float], host: str) -> bool:
    try:
        read(host)
    except RuntimeError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="interlock-bench-acme-") as scratch,
        running_pebble(Path(scratch), ("e2e-a",)) as root,
    ):
        for kind, (_, _, _, proxy) in CLUSTERS.items():
            before = proxy_tasks(proxy)
            trials = [trial(kind, i, root) for i in range(args.trials)]
            results[kind] = {
                "trials": trials,
                "summary": {key: summary([t[key] for t in trials]) for key in trials[0]},
                "proxy_tasks_replaced": len(before - proxy_tasks(proxy)),
            }
    dump({"kinds": results, "trials": args.trials})


if __name__ == "__main__":
    main()
