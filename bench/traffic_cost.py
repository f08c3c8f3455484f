"""What per-route traffic counting (`TrafficMetrics`) costs nginx per request, against the
hand-written nginx and the generated configuration without it, measured in one run.

Three nginx instances on loopback, one worker each pinned to CPU 1 (wrk and the backend share
CPU 0): the hand-written reverse proxy of bench/dataplane.py, Interlock's generated configuration
as by default (counting on), the same with `TrafficMetrics = false`, and with counting but
`HideInfoHeaders = true` (none of Interlock's five response headers). Each round measures all
three, in an order that rotates from round to round, `--seconds` each; the ratios reported are
medians of each round's ratios (the three of a round are seconds apart and share the machine's
mood), with CPU time per request beside them. At the end the counters are read from the status
port as the agent reads them and compared with what wrk sent.

Usage: python bench/traffic_cost.py [--seconds 5] [--rounds 9]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import dump, wait_http
from dataplane import (
    BACKEND,
    HOST,
    NGINX,
    STATIC,
    UNMETERED,
    backend_conf,
    handwritten_conf,
    interlock_conf,
    internal_ports_moved,
    traffic_counted,
    wrk,
)
from interlock.edges.offline_check import stand_in_pem
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE

TARGETS = (
    "nginx (hand-written)",
    "interlock (generated)",
    "interlock (generated, TrafficMetrics = false)",
    "interlock (generated, HideInfoHeaders)",
)
BARE = 18088


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = {
            "backend": backend_conf(tmp),
            "nginx": handwritten_conf(tmp),
            "metered": internal_ports_moved(interlock_conf(tmp, dynamic=False).text, 1),
            "unmetered": internal_ports_moved(interlock_conf(tmp, dynamic=False, metrics=False).text, 2),
            "bare": internal_ports_moved(interlock_conf(tmp, dynamic=False, hide_info_headers=True, port=BARE).text, 3),
        }
        for name, text in files.items():
            (tmp / f"{name}.conf").write_text(text)
        (tmp / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
        cpu0, cpu1 = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
        procs = [
            subprocess.Popen([*cpu, "nginx", "-c", str(tmp / f"{name}.conf"), "-g", "daemon off;"])
            for cpu, name in (
                (cpu0, "backend"),
                (cpu1, "nginx"),
                (cpu1, "metered"),
                (cpu1, "unmetered"),
                (cpu1, "bare"),
            )
        ]
        ports = dict(zip(TARGETS, (NGINX, STATIC, UNMETERED, BARE), strict=True))
        pids = dict(zip(TARGETS, (p.pid for p in procs[1:]), strict=True))
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
        try:
            wait_http(BACKEND, HOST)
            for port in ports.values():
                wait_http(port, HOST)
            before = traffic_counted(21080)
            for index in range(args.rounds):
                order = TARGETS[index % len(TARGETS) :] + TARGETS[: index % len(TARGETS)]
                for name in order:
                    result = wrk(ports[name], args.seconds, (pids[name],))
                    runs[name].append(
                        {"rps": result["rps"], "cpu": result["cpu_us_per_request"], "requests": result["requests"]}
                    )
                    time.sleep(0.3)
            time.sleep(1.5)  # the workers add their counts up once a second
            counted = traffic_counted(21080) - before
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=20)

    def paired(name: str, baseline: str) -> list[float]:
        return [round(a["rps"] / b["rps"], 3) for a, b in zip(runs[name], runs[baseline], strict=True)]

    metered_to_hand = paired("interlock (generated)", "nginx (hand-written)")
    unmetered_to_hand = paired("interlock (generated, TrafficMetrics = false)", "nginx (hand-written)")
    metered_to_unmetered = paired("interlock (generated)", "interlock (generated, TrafficMetrics = false)")
    cpu = {name: statistics.median(r["cpu"] for r in rs) for name, rs in runs.items()}
    # Noise here only ever adds time: the best round of each is the steadier estimate of its cost.
    best_rps = {name: max(r["rps"] for r in rs) for name, rs in runs.items()}
    least_cpu = {name: min(r["cpu"] for r in rs) for name, rs in runs.items()}
    dump(
        {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "rps": {name: statistics.median(r["rps"] for r in rs) for name, rs in runs.items()},
            "cpu_us_per_request": cpu,
            "metered_to_handwritten": statistics.median(metered_to_hand),
            "metered_to_handwritten_rounds": metered_to_hand,
            "unmetered_to_handwritten": statistics.median(unmetered_to_hand),
            "metered_to_unmetered": statistics.median(metered_to_unmetered),
            "metered_to_unmetered_rounds": metered_to_unmetered,
            "counting_cpu_us": cpu["interlock (generated)"] - cpu["interlock (generated, TrafficMetrics = false)"],
            "best_rps": best_rps,
            "least_cpu_us_per_request": least_cpu,
            "best_metered_to_handwritten": best_rps["interlock (generated)"] / best_rps["nginx (hand-written)"],
            "best_unmetered_to_handwritten": best_rps["interlock (generated, TrafficMetrics = false)"]
            / best_rps["nginx (hand-written)"],
            "best_bare_to_handwritten": best_rps["interlock (generated, HideInfoHeaders)"]
            / best_rps["nginx (hand-written)"],
            "bare_to_handwritten": statistics.median(
                paired("interlock (generated, HideInfoHeaders)", "nginx (hand-written)")
            ),
            "least_counting_cpu_us": least_cpu["interlock (generated)"]
            - least_cpu["interlock (generated, TrafficMetrics = false)"],
            "counted": counted,
            "sent": int(sum(r["requests"] for r in runs["interlock (generated)"])),
        }
    )


if __name__ == "__main__":
    main()
