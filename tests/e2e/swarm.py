"""Helpers for end-to-end tests on a real swarm: services made with the Docker CLI, requests
through the published proxy ports, polling with deadlines, and the proxy's rendered
configuration printed when something does not converge."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

from interlock.swarm.specs import http_check

REPO = Path(__file__).resolve().parents[2]
INTERLOCK = str(REPO / ".venv" / "bin" / "interlock")
IMAGE = "interlock:" + __import__("interlock").__version__
HTTP, HTTPS, EAST_HTTP, EAST_HTTPS = 8080, 8443, 9080, 9443
HAP_HTTP, HAP_HTTPS = 7080, 7443
NETWORKS = ("e2e-a", "e2e-b")


@dataclass(frozen=True)
class Cluster:
    """A service cluster of tests/e2e/interlock.toml that the routing tests run against."""

    kind: str
    http: int
    https: int
    labels: dict[str, str]
    """What puts a service into it (`service_cluster`)."""


CLUSTERS = (
    Cluster("nginx", HTTP, HTTPS, {}),
    Cluster("haproxy", HAP_HTTP, HAP_HTTPS, {"com.docker.lb.service_cluster": "hap"}),
)

T = TypeVar("T")


def sh(*args: str, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def rendered_configs() -> str:
    """The configuration and targets every running proxy serves, for failure messages."""
    out = []
    for container in sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name", check=False).split():
        name = sh(
            "docker",
            "inspect",
            "-f",
            '{{index .Config.Labels "com.docker.swarm.service.name"}}',
            container,
            check=False,
        ).strip()
        if name.startswith("interlock-proxy"):
            text = sh("docker", "exec", container, "cat", "/var/lib/interlock/nginx/nginx.conf", check=False)
            text += sh("docker", "exec", container, "cat", "/var/lib/interlock/haproxy/haproxy.cfg", check=False)
            targets = sh("docker", "exec", container, "cat", "/var/lib/interlock/nginx/targets", check=False)
            out.append(f"===== {name} ({container}) =====\n{text}\n----- targets -----\n{targets}")
    problems = sh(INTERLOCK, "problems", check=False)
    return "\n".join(out) + "\n===== interlock problems =====\n" + problems


def service_log(name: str, tail: int = 60) -> str:
    """The last lines the service's tasks logged, with Docker's timestamps, for a failure
    message (a note instead, should `docker service logs` not answer)."""
    try:
        proc = subprocess.run(
            ["docker", "service", "logs", "--timestamps", "--tail", str(tail), name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "(docker service logs did not answer)\n"
    return proc.stdout + proc.stderr


def proxy_logs(tail: int = 60) -> str:
    """The last lines each proxy service logged (agent and nginx, access log included)."""
    out = []
    for name in sh("docker", "service", "ls", "--format", "{{.Name}}", check=False).split():
        if name.startswith("interlock-proxy"):
            out.append(f"===== {name} =====\n{service_log(name, tail)}")
    return "\n".join(out)


def poll(check: Callable[[], T | None], *, timeout: float = 60, what: str = "condition", interval: float = 0.2) -> T:
    """Call `check` until it returns a truthy value; fail with the proxies' configuration."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
            last = result
            # A Response is falsy for 4xx/5xx, yet an expected 503 is a success here.
            if result is not None and (result or isinstance(result, requests.Response)):
                return result
        except (requests.RequestException, AssertionError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{rendered_configs()}")


def get(
    host: str, path: str = "/", *, port: int = HTTP, session: requests.Session | None = None, **kwargs: Any
) -> requests.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return (session or requests).get(
        f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10, allow_redirects=False, **kwargs
    )


def routed(
    host: str, path: str = "/", *, port: int = HTTP, status: int = 200
) -> Callable[[], requests.Response | None]:
    def check() -> requests.Response | None:
        response = get(host, path, port=port)
        return response if response.status_code == status else None

    return check


def settled(port: int = HTTP, timeout: float = 60) -> dict[str, Any]:
    """Wait until every running proxy of the cluster behind `port` reports the cluster's newest
    configuration and targets; returns that cluster's `interlock status` entry, with only the
    running proxies. (A proxy killed without a word is listed for up to 30 s; it is left out here.)

    A first answer through a new route comes from a new nginx worker, while for a moment the
    old workers still answer with the previous configuration; the proxy agent reports a
    configuration once they stopped, so after this every request sees it."""
    extension = "east" if port in (EAST_HTTP, EAST_HTTPS) else "hap" if port in (HAP_HTTP, HAP_HTTPS) else "default"
    proxy_service = "interlock-proxy" if extension == "default" else f"interlock-proxy-{extension}"

    def check() -> dict[str, Any] | None:
        running = set(
            sh(
                "docker",
                "ps",
                "--filter",
                f"label=com.docker.swarm.service.name={proxy_service}",
                "--format",
                "{{.ID}}",
            ).split()
        )
        status = json.loads(sh(INTERLOCK, "status", "--json"))
        # Right after `interlock up` the core may not list every cluster yet.
        cluster: dict[str, Any] | None = next((c for c in status["clusters"] if c["extension"] == extension), None)
        if cluster is None:
            return None
        cluster["proxies"] = [p for p in cluster["proxies"] if p["proxy"] in running]
        newest = (cluster["config_id"], cluster["targets_id"])
        if cluster["proxies"] and all((p["config_id"], p["targets_id"]) == newest for p in cluster["proxies"]):
            return cluster
        return None

    return poll(check, what=f"every {proxy_service} task serving the newest configuration", timeout=timeout)


def until_routed(
    host: str, path: str = "/", *, port: int = HTTP, status: int = 200, what: str, timeout: float = 60
) -> requests.Response:
    """Poll until `host` answers `status` through `port`, then until the proxies settled (see
    `settled`), so that the following requests see the same routing."""
    response = poll(routed(host, path, port=port, status=status), what=what, timeout=timeout)
    settled(port, timeout=timeout)
    return response


@contextmanager
def service(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    networks: tuple[str, ...] = ("e2e-a",),
    replicas: int = 1,
    args: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    health_port: int = 8080,
    health_path: str = "/",
) -> Iterator[str]:
    """A demo-app service for the duration of the block."""
    # Like a well-behaved app: a health check, so Swarm reports the task running only once it
    # serves (without one, a task is "running" as soon as its process starts).
    cmd = [
        "docker",
        "service",
        "create",
        "-d",
        "--quiet",
        "--name",
        name,
        "--replicas",
        str(replicas),
        "--stop-grace-period",
        "5s",
        "--health-interval",
        "500ms",
        "--health-timeout",
        "2s",
        "--health-retries",
        "3",
        # Failed checks while the app starts do not count (a busy 2-core machine can take seconds
        # to start Python): without this Swarm killed slow starters as unhealthy and replaced them.
        "--health-start-period",
        "20s",
        "--health-cmd",
        shlex.join(http_check(health_port, health_path)[1:]),
    ]
    for network in networks:
        cmd += ["--network", network]
    for key, value in {**(labels or {}), E2E_LABEL: "1"}.items():
        cmd += ["--label", f"{key}={value}"]
    cmd += [*extra, IMAGE, "demo-app", *args]
    create(cmd, name)
    try:
        yield name
    finally:
        sh("docker", "service", "rm", name, check=False)


class DockerRefused(RuntimeError):
    """A docker write failed for a reason an operator would not simply run it again for (not
    an AssertionError: `poll` would try again)."""


def docker_write(cmd: list[str], *, transient: tuple[str, ...], committed: Callable[[], bool] | None = None) -> None:
    """Run a docker CLI write as an operator would: again while Swarm answers one of the
    `transient` errors, until it succeeds or `committed()` says Swarm made the change before
    it answered; any other error fails at once."""

    def attempt() -> bool | None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode == 0 or (committed is not None and committed()):
            return True
        if any(message in proc.stderr for message in transient):
            return None
        raise DockerRefused(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")

    poll(attempt, what=" ".join(cmd), interval=1)


def create(cmd: list[str], name: str) -> None:
    """`docker service create ...` for service `name`, run again while Swarm elects a leader (a
    manager was just lost: "raft: failed to process the request: node lost leader status").
    Swarm may have committed the create before it answered that: then the service exists."""

    def exists() -> bool:
        return subprocess.run(["docker", "service", "inspect", name], capture_output=True, check=False).returncode == 0

    docker_write(cmd, transient=("raft",), committed=exists)


def force_update(name: str) -> None:
    """`docker service update -d --force NAME`, run again on "update out of sequence": another
    writer (Swarm's updater recording its progress, the core updating its own service) changed
    the service between the CLI's read and its write."""
    docker_write(["docker", "service", "update", "-d", "--force", name], transient=("update out of sequence",))


def task_history(name: str) -> str:
    """The service's tasks as `docker service ps` lists them, with their errors: for failure
    messages ('' once the service is gone)."""
    return sh(
        *("docker", "service", "ps", "--no-trunc", name),
        *("--format", "{{.Name}} {{.Image}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}"),
        check=False,
    )


def settled_update(name: str) -> bool | None:
    """Whether Swarm finished (or never had) an update of the service (for `poll`)."""
    status = json.loads(sh("docker", "service", "inspect", name))[0].get("UpdateStatus") or {}
    return status.get("State") in (None, "completed", "rollback_completed") or None


E2E_LABEL = "interlock.e2e"
"""On every service a test makes: what an interrupted run left is removed before the next."""


def remove_leftovers() -> None:
    """What an interrupted run left behind: its services and stacks (a test that was killed ran
    no cleanup), so that their hosts and orders do not meet the next run's."""
    for service_id in sh("docker", "service", "ls", "-q", "--filter", f"label={E2E_LABEL}").split():
        sh("docker", "service", "rm", service_id, check=False)
    stacks = sh("docker", "stack", "ls", "--format", "{{.Name}}", check=False).split()
    for stack in stacks:
        if stack == "shop" or stack.startswith("gone-"):  # the stacks tests/e2e/test_stacks.py deploys
            sh("docker", "stack", "rm", stack, check=False)


def lb(**labels: str) -> dict[str, str]:
    return {f"com.docker.lb.{k}": v for k, v in labels.items()}


def task_ips(service_name: str, network: str) -> set[str]:
    """Addresses of the service's running tasks on `network`."""
    task_ids = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", service_name).split()
    ips: set[str] = set()
    for task in json.loads(sh("docker", "inspect", *task_ids)) if task_ids else ():
        for attachment in task.get("NetworksAttachments") or ():
            if attachment["Network"]["Spec"]["Name"] == network:
                ips.update(a.split("/")[0] for a in attachment["Addresses"])
    return ips


def upstreams(host: str, count: int, *, port: int = HTTP, **kwargs: Any) -> list[str]:
    """x-upstream-addr of `count` requests on one keep-alive connection."""
    with requests.Session() as session:
        return [
            get(host, port=port, session=session, **kwargs).headers.get("x-upstream-addr", "") for _ in range(count)
        ]


def secret_removed(name: str) -> bool | None:
    done = subprocess.run(["docker", "secret", "rm", name], capture_output=True, check=False).returncode == 0
    return done or None


@contextmanager
def secrets_removed_after(*names: str) -> Iterator[None]:
    try:
        yield
    finally:
        for name in names:
            # The core lets go of a secret once no host names it (a task replacement later).
            poll(lambda name=name: secret_removed(name), what=f"secret {name} removed", timeout=120)  # type: ignore[misc]
