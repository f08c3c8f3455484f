"""Proxies rolled under load, measured: the scenarios test_rolling asserts on and bench/rolling.py
reports. A load balancer (tests/multinode/front.py, a real HAProxy that never retries) is in
front of a cluster's two host-mode proxies, one on each worker, and a bounded load goes through
it to a service that stays. Meanwhile:

- `new_network`: a service on a network no proxy is on is deployed to the hap cluster, whose
  proxies join that network (each replaced in turn, drained first), then removed again (they
  leave it: replaced once more);
- `upgrade`: `interlock up` with a new image (the same code under another tag and id), then
  (for the benchmark) back: the core, every extension and every proxy roll to it.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.e2e.swarm import IMAGE, INTERLOCK, lb, poll, service, settled_update, sh, task_history, unique
from tests.multinode.conftest import CONFIG, HAP_PORT, NETWORK, Cluster
from tests.multinode.front import Front, front
from tests.multinode.load import Load
from tests.multinode.scenario import PORT, answered

ON_WORKERS = ("--constraint", "node.role==worker", "--replicas-max-per-node", "1")
NEXT_IMAGE = IMAGE + "-next"
"""The upgrade's image: Interlock's own, with one more label, so another image id."""


@dataclass(frozen=True)
class RollFigures:
    scenario: str
    requests: int
    failed: int
    outcomes: dict[str, int]
    failures: list[tuple[float, str]]
    """Each failed request: seconds from the start of the load, outcome."""
    slowest_s: float
    taken_out: int
    """How often the load balancer took a proxy out (its health check said draining or failed)."""
    served_by_every_proxy_s: float
    """new_network: from the new service's task running to the last proxy serving it.
    upgrade: from `interlock up` to every role's tasks running the new image."""
    rolled_back_s: float
    """new_network: from removing the service to the proxies having left its network.
    upgrade: from `interlock up` with the old image to every task running it again."""
    history: str = ""
    """The proxies' tasks as `docker service ps` lists them, and the balancer's changes of mind:
    for a failure message."""

    @classmethod
    def of(cls, scenario: str, load: Load, balancer: Front, first: float, second: float, proxies: str) -> RollFigures:
        tasks = task_history(proxies)
        update = sh("docker", "service", "inspect", "--format", "{{json .UpdateStatus}}", proxies, check=False)
        core_log = sh("sh", "-c", "docker service logs --tail 300 interlock 2>&1", check=False)
        writes = [line for line in core_log.splitlines() if "service" in line and "updating" in line]
        return cls(
            history=f"{tasks}\nupdate: {update}\ncore: "
            + "\n".join(writes[-12:])
            + "\nbalancer: "
            + "\n".join(balancer.reasons()),
            scenario=scenario,
            requests=load.total,
            failed=load.failed,
            outcomes=dict(load.outcomes),
            failures=load.failures,
            slowest_s=round(load.slowest, 2),
            taken_out=[state for _, state in balancer.state_changes()].count("DOWN"),
            served_by_every_proxy_s=round(first, 2),
            rolled_back_s=round(second, 2),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        first = "served by every proxy" if self.scenario == "new_network" else "every role on the new image"
        second = "proxies left the network" if self.scenario == "new_network" else "every role back"
        return (
            f"{self.scenario}: {self.requests} requests through the load balancer, {self.failed} failed "
            f"{self.outcomes} {self.failures[:20]}, slowest {self.slowest_s:.1f}s; a proxy taken out "
            f"{self.taken_out} times; {first} after {self.served_by_every_proxy_s:.1f}s, {second} after "
            f"{self.rolled_back_s:.1f}s"
        )


def proxy_tasks(proxy_service: str) -> dict[str, str]:
    """Task id -> node of the proxy service's tasks that run (and are meant to)."""
    out = sh(
        *("docker", "service", "ps", "--filter", "desired-state=running"),
        *("--format", "{{.ID}} {{.Node}} {{.CurrentState}}", proxy_service),
    )
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if " Running " in f"{line} "}


EARLY_DRAIN = "draining (Swarm took this task out of its service's DNS"


def drain_lines(cluster: Cluster, proxy_service: str, task_ids: list[str]) -> dict[str, str]:
    """Task id (as `docker service ps` prints it) -> how its agent's drain began, from the
    logs of its stopped container on its node."""
    found: dict[str, str] = {}
    for node in cluster.workers:
        listed = sh(
            *(*node.docker, "ps", "-a", "--filter", f"label=com.docker.swarm.service.name={proxy_service}"),
            *("--format", '{{.ID}} {{.Label "com.docker.swarm.task.id"}}'),
        )
        for container, task in (line.split() for line in listed.splitlines()):
            short = next((t for t in task_ids if task.startswith(t)), None)
            if short is not None:
                logs = subprocess.run(
                    [*node.docker, "logs", container], capture_output=True, text=True, timeout=30, check=True
                )
                drained = [line for line in (logs.stdout + logs.stderr).splitlines() if "draining" in line]
                found[short] = " | ".join(drained) or "(no drain logged)"
    return found


def service_networks(name: str) -> set[str]:
    spec = json.loads(sh("docker", "service", "inspect", name))[0]["Spec"]["TaskTemplate"]
    return {n["Target"] for n in spec.get("Networks") or ()}


def network_id(name: str) -> str:
    return sh("docker", "network", "inspect", "-f", "{{.Id}}", name).strip()


def new_network(cluster: Cluster, workdir: Path, *, drained: bool = True) -> RollFigures:
    """`drained`: the hap cluster's ProxyDrainPeriod is above 0 (the benchmark's baseline sets 0)."""
    workers = [w.address for w in cluster.workers]
    poll(lambda: settled_update("interlock-proxy-hap"), what="no update of the hap proxies under way", timeout=180)
    steady, fresh = unique("roll"), unique("roll-new")
    network = unique("roll-net")
    hap = {"service_cluster": "hap"}
    with service(steady, labels=lb(hosts=f"{steady}.mn", port="8080", **hap), networks=(NETWORK,), replicas=2):
        for address in workers:
            poll(lambda a=address: answered(a, f"{steady}.mn", HAP_PORT), what=f"{steady} through {address}")  # type: ignore[misc]
        before = proxy_tasks("interlock-proxy-hap")
        with (
            front(workers, HAP_PORT, workdir, f"{steady}.mn") as balancer,
            Load("127.0.0.1", f"{steady}.mn", port=balancer.port, threads=3, max_seconds=300) as load,
        ):
            poll(lambda: load.total > 100 or None, what="the load running")
            sh("docker", "network", "create", "-d", "overlay", "--label", "interlock.e2e=1", network)
            try:
                with service(fresh, labels=lb(hosts=f"{fresh}.mn", port="8080", **hap), networks=(network,)):
                    poll(lambda: proxy_tasks(fresh) or None, what=f"{fresh}'s task running", timeout=120)
                    running_at = time.monotonic()
                    served = poll(
                        lambda: all(answered(a, f"{fresh}.mn", HAP_PORT) for a in workers) or None,
                        what=f"{fresh} through every proxy",
                        timeout=180,
                    )
                    served_at = time.monotonic()
                    assert served and not set(before) & set(proxy_tasks("interlock-proxy-hap")), (
                        "each proxy was replaced to join the network"
                    )
                    # Each began its drain when Docker took it out of tasks.<service>, about 2 s
                    # ahead of its stop signal, so the drain cost the roll next to no time.
                    if drained:
                        drains = drain_lines(cluster, "interlock-proxy-hap", list(before))
                        assert sorted(drains) == sorted(before), drains
                        assert all(EARLY_DRAIN in line for line in drains.values()), drains
                removed_at = time.monotonic()
                joined = network_id(network)
                poll(
                    lambda: joined not in service_networks("interlock-proxy-hap") or None,
                    what="the proxies taken off the network",
                    timeout=120,
                )
                poll(
                    lambda: (
                        (
                            len(proxy_tasks("interlock-proxy-hap")) == 2
                            and all(answered(a, f"{steady}.mn", HAP_PORT) for a in workers)
                        )
                        or None
                    ),
                    what="both proxies serving again after leaving it",
                    timeout=180,
                )
                left_at = time.monotonic()
                poll(balancer.all_up, what="the balancer sending to both proxies again")
            finally:
                poll(
                    lambda: (
                        subprocess.run(
                            ["docker", "network", "rm", network], check=False, capture_output=True
                        ).returncode
                        == 0
                        or None
                    ),
                    what=f"network {network} removed",
                    timeout=180,
                )
    return RollFigures.of(
        "new_network", load, balancer, served_at - running_at, left_at - removed_at, "interlock-proxy-hap"
    )


def build_next_image(cluster: Cluster) -> None:
    """NEXT_IMAGE on this node and every other one (each daemon has its own image store)."""
    dockerfile = f"FROM {IMAGE}\nLABEL com.docker.interlock.test-upgrade=next\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", NEXT_IMAGE, "-"],
        input=dockerfile.encode(),
        check=True,
        timeout=300,
        capture_output=True,
    )
    for node in (*cluster.workers, *cluster.managers):
        saved = subprocess.Popen(["docker", "save", NEXT_IMAGE], stdout=subprocess.PIPE)
        subprocess.run([*node.docker, "load", "-q"], stdin=saved.stdout, check=True, timeout=300, capture_output=True)
        saved.wait(timeout=60)


def interlock_services() -> list[str]:
    return sorted(json.loads(sh(INTERLOCK, "status", "--json"))["images"])


def everything_runs(image: str) -> bool | None:
    """Every Interlock service's tasks that are meant to run, run `image`, and only those."""
    for name in interlock_services():
        out = sh(
            *("docker", "service", "ps", "--filter", "desired-state=running"),
            *("--format", "{{.Image}}|{{.CurrentState}}", name),
        )
        rows = [line.split("|") for line in out.splitlines()]
        if not rows or any(i.split("@")[0] != image or not s.startswith("Running") for i, s in rows):
            return None
    return True


def upgrade(cluster: Cluster, workdir: Path, *, back: bool = True) -> RollFigures:
    """`back`: then `interlock up` with the old image again (else every role stays on
    NEXT_IMAGE, the same code)."""
    build_next_image(cluster)
    poll(lambda: settled_update("interlock-proxy"), what="no update of the proxies under way", timeout=180)
    workers = [w.address for w in cluster.workers]
    steady = unique("upgrade")
    upgraded = workdir / "next.toml"
    text = CONFIG.read_text()
    upgraded.write_text(
        text.replace("[Extensions.default]\n", f'[Extensions.default]\nImage = "{NEXT_IMAGE}"\n')
        .replace("[Extensions.east]\n", f'[Extensions.east]\nImage = "{NEXT_IMAGE}"\n')
        .replace("[Extensions.hap]\n", f'[Extensions.hap]\nImage = "{NEXT_IMAGE}"\n')
        .replace("PublishMode = ", f'ProxyImage = "{NEXT_IMAGE}"\nPublishMode = ')
    )
    with service(
        steady, labels=lb(hosts=f"{steady}.mn", port="8080"), networks=(NETWORK,), replicas=2, extra=ON_WORKERS
    ):
        for address in workers:
            poll(lambda a=address: answered(a, f"{steady}.mn", PORT), what=f"{steady} through {address}")  # type: ignore[misc]
        with (
            front(workers, PORT, workdir, f"{steady}.mn") as balancer,
            Load("127.0.0.1", f"{steady}.mn", port=balancer.port, threads=3, max_seconds=400) as load,
        ):
            poll(lambda: load.total > 100 or None, what="the load running")
            started = time.monotonic()
            sh(INTERLOCK, "up", "-c", str(upgraded), "--wait", "240", timeout=400)
            poll(lambda: everything_runs(NEXT_IMAGE), what=f"every role on {NEXT_IMAGE}", timeout=300)
            upgraded_at = time.monotonic()
            images = json.loads(sh(INTERLOCK, "status", "--json"))["images"]
            assert all(i.startswith(NEXT_IMAGE + " ") for i in images.values()), images
            went_back = back_at = time.monotonic()
            if back:
                sh(INTERLOCK, "up", "-c", str(CONFIG), "--wait", "240", timeout=400)
                poll(lambda: everything_runs(IMAGE), what=f"every role on {IMAGE} again", timeout=300)
                back_at = time.monotonic()
            poll(balancer.all_up, what="the balancer sending to both proxies again")
    if back:
        sh("docker", "image", "rm", "-f", NEXT_IMAGE, check=False)
    return RollFigures.of("upgrade", load, balancer, upgraded_at - started, back_at - went_back, "interlock-proxy")
