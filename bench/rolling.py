"""Zero failed requests through deploys: constant-rate load while 3-replica services are rolled
(`docker service update --force`, stop-first and start-first) and 300 create/update/remove
operations run on other services.

Load: `--rate` GET/s for `--seconds` against two hosts through a proxy, half on keep-alive
connections and half on a new connection per request; status codes and socket errors are counted
separately. It runs once per cluster of tests/e2e/interlock.toml: `default` (127.0.0.1:8080,
`DynamicUpstreams = true`), `east` (127.0.0.1:9080, static upstreams, as by default) and `hap`
(127.0.0.1:7080, the HAProxy kind), so the reloads each proxy made for the same kind of deploy
sit side by side (`--clusters` runs some of them only, without the drain contrast). Each churn operation waits
for the new service's task to run, so every create, update and remove changes the routes.
Backend: interlock-bench-backend (keeps serving 3 s after SIGTERM, within its stop grace
period), as the README asks of applications.

With `--no-retry` the client never sends a request again: one that fails on a reused keep-alive
connection (closed by the proxy just as the request went) is a failed request, as for Python's
http.client and many scripts and SDKs. Either way the client honours `Connection: close`.

Usage: python bench/rolling.py [--rate 1000] [--seconds 110] [--clusters default east hap] [--no-retry]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from common import (
    constant_load,
    counters_delta,
    create_backend,
    dump,
    force_update,
    proxy_counters,
    sh,
    wait_replicas,
    wait_routed,
)

REPO = Path(__file__).resolve().parents[1]
RUN = f"{int(time.time()) % 100000}"
ORDERS = {"roll-stop-first": "stop-first", "roll-start-first": "start-first"}


class Cluster(NamedTuple):
    port: int
    labels: dict[str, str]


CLUSTERS = {
    "default": Cluster(8080, {}),
    "east": Cluster(9080, {"com.docker.lb.service_cluster": "east"}),
    "hap": Cluster(7080, {"com.docker.lb.service_cluster": "hap"}),
}


def roll(stop: threading.Event, counts: dict[str, int], rolled: dict[str, str]) -> None:
    while not stop.is_set():
        for name, order in rolled.items():
            if stop.is_set():
                return
            force_update(name, order)
            counts[order] += 1


def churn(
    stop: threading.Event,
    counts: dict[str, int],
    operations: int,
    worker: int,
    lock: threading.Lock,
    cluster: str,
) -> None:
    index = 0
    while not stop.is_set():
        with lock:
            if counts["operations"] >= operations:
                return
            counts["operations"] += 3
        name = f"churn-{cluster}-{RUN}-{worker}-{index}"
        try:
            create_backend(name, f"{name}.local", labels=CLUSTERS[cluster].labels)
            wait_replicas(name, 1, interval=0.5)
            sh(
                "docker",
                "service",
                "update",
                "--quiet",
                "-d",
                "--label-add",
                f"com.docker.lb.hosts={name}-b.local",
                name,
            )
        except RuntimeError as exc:  # Docker refusing an operation is not a failed request; count it
            with lock:
                counts["operation_errors"] += 1
            print(f"churn operation failed: {exc}", file=sys.stderr)
        finally:
            sh("docker", "service", "rm", name, check=False)
        index += 1


async def run(rate: float, seconds: float, operations: int, cluster: str, *, retry: bool) -> dict[str, object]:
    rolled = {f"{name}-{cluster}": order for name, order in ORDERS.items()}
    for name in rolled:
        create_backend(name, f"{name}.local", replicas=3, labels=CLUSTERS[cluster].labels)
    for name in rolled:
        wait_replicas(name, 3)
        wait_routed(CLUSTERS[cluster].port, f"{name}.local")
    await asyncio.sleep(2)
    stop = threading.Event()
    counts = {"stop-first": 0, "start-first": 0, "operations": 0, "operation_errors": 0}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def guarded(target: Callable[..., None], *args: object) -> threading.Thread:
        def run_it() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported after the load: a dead worker must fail the run
                failures.append(exc)
                stop.set()

        return threading.Thread(target=run_it)

    before = proxy_counters(cluster)
    # Two churners in parallel, so the operations fit in the load's duration without starving
    # the load generator of CPU on a small machine.
    workers = [
        guarded(roll, stop, counts, rolled),
        *(guarded(churn, stop, counts, operations, i, lock, cluster) for i in range(2)),
    ]
    for worker in workers:
        worker.start()
    try:
        port = CLUSTERS[cluster].port
        # 32 connections keep the rate when reloads slow some answers down.
        hosts = [f"{n}.local" for n in rolled]
        result = await constant_load(port, hosts, rate=rate, seconds=seconds, connections=32, retry_stale=retry)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=400)
        for name in rolled:
            sh("docker", "service", "rm", name, check=False)
    if failures:
        raise RuntimeError(f"a worker failed during the load: {failures[0]!r}") from failures[0]
    return {
        "rolling_updates": {k: counts[k] for k in ("stop-first", "start-first")},
        "other_service_operations": counts["operations"],
        "operation_errors": counts["operation_errors"],
        "load": result.as_dict(),
        "proxy": counters_delta(before, proxy_counters(cluster)),
    }


async def run_all(rate: float, seconds: float, operations: int, only: list[str], *, retry: bool) -> dict[str, object]:
    clusters = {
        cluster: await run(rate, seconds, operations, cluster, retry=retry) for cluster in CLUSTERS if cluster in only
    }
    if only != list(CLUSTERS):
        return {"rate": rate, "seconds": seconds, "retry": retry, "clusters": clusters}
    contrast = {}
    for image in ("interlock-bench-backend:1", "interlock-bench-backend:nodrain"):
        contrast[image] = await drain_contrast(image, rate / 2, min(seconds, 30))
    return {"rate": rate, "seconds": seconds, "retry": retry, "clusters": clusters, "drain_contrast": contrast}


async def drain_contrast(image: str, rate: float, seconds: float) -> dict[str, object]:
    """The same stop-first rolls of one 3-replica service, with an app that keeps serving after
    SIGTERM and with one that stops at once: what the drain rule is worth."""
    name = "roll-contrast"
    create_backend(name, f"{name}.local", replicas=3, image=image)
    wait_replicas(name, 3)
    await asyncio.sleep(2)
    stop = threading.Event()
    rolls = {"count": 0}
    before = proxy_counters()

    def keep_rolling() -> None:
        while not stop.is_set():
            sh("docker", "service", "update", "--quiet", "--force", "--update-order", "stop-first", name, timeout=300)
            rolls["count"] += 1

    roller = threading.Thread(target=keep_rolling)
    roller.start()
    try:
        result = await constant_load(8080, [f"{name}.local"], rate=rate, seconds=seconds)
    finally:
        stop.set()
        roller.join(timeout=400)
    proxy = counters_delta(before, proxy_counters())
    sh("docker", "service", "rm", name, check=False)
    time.sleep(2)
    return {"rolls": rolls["count"], "load": result.as_dict(), "proxy": proxy}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=110)
    parser.add_argument("--operations", type=int, default=300)
    parser.add_argument("--clusters", nargs="+", choices=list(CLUSTERS), default=list(CLUSTERS))
    parser.add_argument("--no-retry", action="store_true", help="a request failing on a reused connection is failed")
    args = parser.parse_args()
    sh(str(REPO / "bench" / "backend" / "build.sh"))
    dump(asyncio.run(run_all(args.rate, args.seconds, args.operations, args.clusters, retry=not args.no_retry)))


if __name__ == "__main__":
    main()
