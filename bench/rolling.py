"""Zero failed requests through deploys: constant-rate load while 3-replica services are rolled
(`docker service update --force`, stop-first and start-first) and 300 create/update/remove
operations run on other services.

Load: `--rate` GET/s for `--seconds` against two hosts through the proxy (127.0.0.1:8080), half on
keep-alive connections and half on a new connection per request; status codes and socket errors
are counted separately. Backend: interlock-bench-backend (keeps serving 3 s after SIGTERM, within
its stop grace period), as the README asks of applications.

Usage: python bench/rolling.py [--rate 1000] [--seconds 110]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from pathlib import Path

from common import constant_load, create_backend, dump, sh

REPO = Path(__file__).resolve().parents[1]
ROLLED = {"roll-stop-first": "stop-first", "roll-start-first": "start-first"}


def roll(stop: threading.Event, counts: dict[str, int]) -> None:
    while not stop.is_set():
        for name, order in ROLLED.items():
            if stop.is_set():
                return
            sh(
                "docker",
                "service",
                "update",
                "--quiet",
                "--force",
                "--update-order",
                order,
                "--update-parallelism",
                "1",
                name,
                timeout=300,
            )
            counts[order] += 1


def churn(stop: threading.Event, counts: dict[str, int], operations: int, worker: int, lock: threading.Lock) -> None:
    index = 0
    while not stop.is_set():
        with lock:
            if counts["operations"] >= operations:
                return
            counts["operations"] += 3
        name = f"churn-{worker}-{index}"
        create_backend(name, f"{name}.local")
        sh("docker", "service", "update", "--quiet", "-d", "--label-add", f"com.docker.lb.hosts={name}-b.local", name)
        sh("docker", "service", "rm", name)
        index += 1


async def run(rate: float, seconds: float, operations: int) -> dict[str, object]:
    for name in ROLLED:
        create_backend(name, f"{name}.local", replicas=3)
    for name in ROLLED:
        for _ in range(300):
            if sh("docker", "service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}").strip() == "3/3":
                break
            time.sleep(0.2)
    await asyncio.sleep(2)
    stop = threading.Event()
    counts = {"stop-first": 0, "start-first": 0, "operations": 0}
    workers = [
        threading.Thread(target=roll, args=(stop, counts)),
        threading.Thread(target=churn, args=(stop, counts, operations)),
    ]
    for worker in workers:
        worker.start()
    try:
        result = await constant_load(8080, [f"{n}.local" for n in ROLLED], rate=rate, seconds=seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=400)
        for name in ROLLED:
            sh("docker", "service", "rm", name, check=False)
    return {
        "rate": rate,
        "seconds": seconds,
        "rolling_updates": {k: counts[k] for k in ("stop-first", "start-first")},
        "other_service_operations": counts["operations"],
        "load": result.as_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=110)
    parser.add_argument("--operations", type=int, default=300)
    args = parser.parse_args()
    sh(str(REPO / "bench" / "backend" / "build.sh"))
    dump(asyncio.run(run(args.rate, args.seconds, args.operations)))


if __name__ == "__main__":
    main()
