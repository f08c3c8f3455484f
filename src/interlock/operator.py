"""`interlock up`, `down`, `status`, `routes` and `problems`: Interlock as an operator drives it.

These run where the Docker CLI would (a manager, or DOCKER_HOST). `up` deploys or updates the
core idempotently (control network, token secrets, the core's config, the core service) and
waits until a proxy answers; `down` removes exactly what `up` and the core created (found by
their labels). The read commands ask the running core over `docker exec` (the core's API is on
the control network only); where the core is not reachable they compute routes and problems
from the Docker API with the same pipeline, and say so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import docker

from interlock import __version__
from interlock.config import ConfigError, CoreConfig, load_config
from interlock.edges.docker_source import DockerSwarmSource
from interlock.edges.swarm_ops import SwarmOps
from interlock.errors import DockerUnavailable
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.render.swarm_specs import (
    CONTROL_NETWORK,
    EXTENSION_TOKEN,
    LABEL_MANAGED,
    LABEL_OWNER,
    PROXY_TOKEN,
    Ref,
    core_spec,
    spec_hash,
)
from interlock.render.tables import routes_table

CORE_SERVICE = "interlock"
MANAGED = {LABEL_MANAGED: "interlock-up"}
REPO = Path(__file__).resolve().parents[2]


class OperatorError(Exception):
    """Something the operator must fix; the message says what."""


def connect() -> tuple[docker.APIClient, SwarmOps]:
    try:
        client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    except docker.errors.DockerException as exc:
        raise OperatorError(f"cannot reach Docker: {exc}") from exc
    return client, SwarmOps(client)


def has_ipvs() -> bool:
    return Path("/proc/net/ip_vs").exists() or Path("/sys/module/ip_vs").exists()


def default_config_text(*, host_mode: bool, replicas: int) -> str:
    lines = ["# Written by `interlock up`: Interlock's defaults (HTTP 8080, HTTPS 8443).", "[Extensions.default]"]
    if host_mode:
        lines += ['PublishMode = "host"', f"ProxyReplicas = {replicas}"]
    return "\n".join(lines) + "\n"


def ensure_image(client: docker.APIClient, image: str, say: Any) -> None:
    try:
        client.inspect_image(image)
        return
    except docker.errors.ImageNotFound:
        pass
    builder = REPO / "scripts" / "build-images"
    if image != f"interlock:{__version__}" or not builder.exists():
        raise OperatorError(f"image {image} is not on this node; build or pull it first")
    say(f"building {image} (scripts/build-images)")
    subprocess.run([str(builder)], check=True)


def up(config_path: str | None, *, debug: bool, wait: float, say: Any = print) -> CoreConfig:
    client, ops = connect()
    state, manager = ops.swarm_state()
    if state != "active":
        raise OperatorError("this Docker engine is not part of a swarm; run `docker swarm init` first")
    if not manager:
        raise OperatorError("run `interlock up` on a manager node (the core needs the manager's API)")
    if config_path:
        text = Path(config_path).read_text()
    else:
        ready = [n for n in client.nodes() if (n.get("Status") or {}).get("State") == "ready"]
        host_mode = not has_ipvs()
        if host_mode:
            say("this kernel has no IPVS, so Swarm's routing mesh cannot answer: publishing the proxy in host mode")
        text = default_config_text(host_mode=host_mode, replicas=max(1, min(2, len(ready))))
    try:
        config = load_config(text, source=config_path or "default config")
    except ConfigError as exc:
        raise OperatorError(str(exc)) from exc
    for image in sorted(
        {e.image for e in config.extensions.values()} | {e.proxy_image for e in config.extensions.values()}
    ):
        ensure_image(client, image, say)
    network = ops.ensure_overlay(CONTROL_NETWORK, MANAGED)
    tokens = {}
    for name in (EXTENSION_TOKEN, PROXY_TOKEN):
        tokens[name] = ops.secret(name) or ops.create_secret(name, secrets.token_urlsafe(32).encode(), MANAGED)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    config_ref = ops.create_config(f"interlock-config-{digest}", text.encode(), MANAGED)
    core_image = next(iter(config.extensions.values())).image
    spec = core_spec(
        name=CORE_SERVICE,
        image=core_image,
        config=config_ref,
        control_network=network,
        extension_token=tokens[EXTENSION_TOKEN],
        proxy_token=tokens[PROXY_TOKEN],
        debug=debug,
        image_id=ops.image_identity(core_image),
    )
    current = ops.service_named(CORE_SERVICE)
    if current is None:
        say(f"creating the core service {CORE_SERVICE}")
        ops.create_service(spec)
    elif spec_hash(current["Spec"]) != spec_hash(spec):
        say(f"updating the core service {CORE_SERVICE}")
        ops.update_service(current, spec)
    else:
        say(f"the core service {CORE_SERVICE} is up to date")
    _remove_unused_core_configs(ops, keep=config_ref)
    if wait > 0:
        deadline = time.monotonic() + wait
        for name, ext in config.extensions.items():
            port = ext.published_port
            say(f"waiting for proxy {config.proxy_service_name(name)} to answer on port {port}")
            wait_for_proxy(port, max(1.0, deadline - time.monotonic()))
        say("waiting until every proxy serves its cluster's newest configuration")
        wait_converged(client, ops, config, deadline)
    say("Interlock is up. Route a service with --label com.docker.lb.hosts=NAME --label com.docker.lb.port=PORT")
    return config


def _remove_unused_core_configs(ops: SwarmOps, keep: Ref) -> None:
    for config in ops.configs(label=f"{LABEL_MANAGED}=interlock-up"):
        if config["ID"] != keep.id and config["Spec"]["Name"].startswith("interlock-config-"):
            try:
                ops.remove_config(config["ID"])
            except DockerUnavailable:
                pass  # still in use by a task being replaced


def wait_for_proxy(port: int, timeout: float) -> int:
    """Poll http://127.0.0.1:PORT/ until nginx answers (any HTTP status); returns the status."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            if exc.headers.get("Server", "").startswith("nginx") or exc.code in (404, 503):
                return int(exc.code)
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise OperatorError(f"no proxy answered on port {port} within {timeout:.0f}s ({last}); see `interlock status`")


def _converged(client: docker.APIClient, ops: SwarmOps, config: CoreConfig) -> str | None:
    """None when every proxy task runs and serves its cluster's newest configuration, else why not."""
    status = core_status()
    if not status.get("ready"):
        return "the core has not listed the swarm yet"
    by_extension = {c["extension"]: c for c in status.get("clusters", [])}
    for name, ext in config.extensions.items():
        cluster = by_extension.get(name)
        if cluster is None or not cluster.get("config_id"):
            return f"extension {name} has no validated configuration yet"
        service = ops.service_named(config.proxy_service_name(name))
        if service is None:
            return f"proxy service {config.proxy_service_name(name)} does not exist yet"
        if ((service.get("UpdateStatus") or {}).get("State") or "completed") not in ("completed", "rollback_completed"):
            return f"{config.proxy_service_name(name)} is still updating"
        tasks = [t for t in ops.tasks(service["ID"]) if t["DesiredState"] == "running"]
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if len(running) != ext.proxy_replicas or len(tasks) != ext.proxy_replicas:
            return f"{config.proxy_service_name(name)}: {len(running)} of {ext.proxy_replicas} tasks running"
        newest = (cluster["config_id"], cluster.get("targets_id") or "")
        serving = {p["proxy"]: (p["config_id"], p.get("targets_id") or "") for p in cluster.get("proxies", [])}
        for task in running:
            container = ((task["Status"].get("ContainerStatus") or {}).get("ContainerID") or "")[:12]
            if serving.get(container) != newest:
                return f"proxy {container} does not serve {'+'.join(filter(None, newest))} yet"
    return None


def wait_converged(client: docker.APIClient, ops: SwarmOps, config: CoreConfig, deadline: float) -> None:
    reason: str | None = "not checked"
    while time.monotonic() < deadline:
        reason = _converged(client, ops, config)
        if reason is None:
            return
        time.sleep(0.5)
    raise OperatorError(f"Interlock did not settle in time: {reason}; see `interlock status`")


def down(*, say: Any = print, timeout: float = 90.0) -> None:
    client, ops = connect()
    deadline = time.monotonic() + timeout
    core = ops.service_named(CORE_SERVICE)
    if core is not None and core["Spec"].get("Labels", {}).get(LABEL_MANAGED) == "interlock-up":
        say(f"removing {CORE_SERVICE}")
        ops.remove_service(core["ID"])
        # A core task that is still stopping would recreate what it owns: wait until it is gone.
        _wait(
            lambda: not any(t["ServiceID"] == core["ID"] and t["Status"]["State"] == "running" for t in client.tasks()),
            deadline,
            "the core to stop",
        )
    for service in ops.services(label=f"{LABEL_OWNER}={CORE_SERVICE}"):
        say(f"removing {service['Spec']['Name']}")
        ops.remove_service(service["ID"])
    _wait(lambda: not ops.services(label=f"{LABEL_OWNER}={CORE_SERVICE}"), deadline, "owned services to go")
    for label in (f"{LABEL_OWNER}={CORE_SERVICE}", f"{LABEL_MANAGED}=interlock-up"):
        # Configs, secrets and the network can go once no task uses them.
        for config in ops.configs(label=label):
            _retry(lambda c=config: ops.remove_config(c["ID"]), deadline)
        for secret in ops.secrets(label=label):
            _retry(lambda s=secret: ops.remove_secret(s["ID"]), deadline)
    network = ops.network(CONTROL_NETWORK)
    if network is not None:
        details = client.inspect_network(network.id)
        if (details.get("Labels") or {}).get(LABEL_MANAGED) == "interlock-up":
            _retry(lambda: ops.remove_network(network.id), deadline)
    say("Interlock is down")


def _wait(done: Any, deadline: float, what: str) -> None:
    while not done():
        if time.monotonic() > deadline:
            raise OperatorError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _retry(action: Any, deadline: float) -> None:
    while True:
        try:
            action()
            return
        except DockerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def core_status() -> dict[str, Any]:
    """The running core's /v1/status, through `docker exec` on this node; or a local computation."""
    client, ops = connect()
    core = ops.service_named(CORE_SERVICE)
    if core is not None:
        # While the core is updated (start-first) the old one still runs for a moment, with the
        # old configuration: ask the newest task Swarm wants running.
        tasks = sorted(ops.tasks(core["ID"]), key=lambda t: str(t.get("CreatedAt", "")), reverse=True)
        for task in tasks:
            container = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            if task["Status"]["State"] != "running" or task.get("DesiredState") != "running" or not container:
                continue
            try:
                exec_id = client.exec_create(container, ["interlock", "inspect"])["Id"]
                output = client.exec_start(exec_id)
                if client.exec_inspect(exec_id).get("ExitCode") == 0:
                    return dict(json.loads(output))
            except (docker.errors.DockerException, json.JSONDecodeError):
                continue
    return local_status(client, core)


def local_status(client: docker.APIClient, core: dict[str, Any] | None) -> dict[str, Any]:
    """Routes and problems computed here from the Docker API (the core was not reachable)."""
    source = DockerSwarmSource(client)
    config = None
    if core is not None:
        configs = core["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs") or []
        if configs:
            data = client.inspect_config(configs[0]["ConfigID"])["Spec"]["Data"]
            config = load_config(base64.b64decode(data).decode())
    clusters = tuple(e.service_cluster for e in config.extensions.values()) if config else ("",)
    result = build(snapshot_from_api(source.list_swarm()), clusters)
    return {
        "ready": False,
        "note": "the core was not reachable from this node; routes and problems computed locally",
        "core": {"service": CORE_SERVICE if core else None},
        "clusters": [],
        "routes": [row for r in result.routings.values() for row in routes_table(r)],
        "problems": [
            {"service": p.service, "label": p.label, "value": p.value, "reason": p.reason, "severity": str(p.severity)}
            for p in result.problems
        ],
    }


def capture_snapshot() -> dict[str, Any]:
    """The swarm's services, tasks, networks and nodes in the Docker API's shape."""
    client, _ = connect()
    return dict(DockerSwarmSource(client).list_swarm())


def inspect_local(listen_addr: str = ":8080") -> dict[str, Any]:
    """Inside the core's container: ask the core's own API for its status."""
    from interlock.edges.peer_http import read_token
    from interlock.render.swarm_specs import SECRETS_DIR

    token = read_token(Path(SECRETS_DIR) / EXTENSION_TOKEN)
    port = listen_addr.rpartition(":")[2]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/status", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def print_table(rows: list[dict[str, Any]], columns: list[str], out: Any = sys.stdout) -> None:
    cells = [
        [", ".join(v) if isinstance(v, list) else str(v) for v in (row.get(c, "") for c in columns)] for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
