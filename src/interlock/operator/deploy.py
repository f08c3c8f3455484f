"""`interlock up` and `down`, and the waits between: deploying or updating the core idempotently
(control network, token secrets, the core's config, the core service), waiting until a proxy
answers and every proxy serves the newest routes, and removing exactly what `up` and the core
created (found by their labels).

Runs where the Docker CLI would (a manager, or DOCKER_HOST). Imports no role: it deploys them.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from interlock.config import CoreConfig, load_config
from interlock.constants import (
    CONTROL_NETWORK,
    CORE_IDENTITY,
    CORE_SERVICE,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_ROLE,
    MANAGED_BY_UP,
    OPERATOR_TOKEN,
)
from interlock.edges.role_identities import ensure_identities
from interlock.edges.swarm_ops import SwarmOps, ensure_tokens
from interlock.errors import DockerUnavailable, OperatorError
from interlock.operator.status_client import core_status
from interlock.swarm.desired import all_tokens, core_tokens, images, tls_identities
from interlock.swarm.records import Ref, ServiceRecord, TaskRecord
from interlock.swarm.specs import (
    STATUS_PROBE_ROLE,
    certificate_mounts,
    core_spec,
    spec_hash,
    with_certificates,
)
from interlock.wire.status import CoreStatus

MANAGED = {LABEL_MANAGED: MANAGED_BY_UP}
Say = Callable[[str], None]


def has_ipvs() -> bool:
    return Path("/proc/net/ip_vs").exists() or Path("/sys/module/ip_vs").exists()


def default_config_text(*, host_mode: bool, replicas: int) -> str:
    lines = ["# Written by `interlock up`: Interlock's defaults (HTTP 8080, HTTPS 8443).", "[Extensions.default]"]
    if host_mode:
        lines += ['PublishMode = "host"', f"ProxyReplicas = {replicas}"]
    return "\n".join(lines) + "\n"


def up(config_path: str | None, *, debug: bool, wait: float, say: Say = print) -> CoreConfig:
    ops = SwarmOps.from_environment()
    state, manager = ops.swarm_state()
    if state != "active":
        raise OperatorError("this Docker engine is not part of a swarm; run `docker swarm init` first")
    if not manager:
        raise OperatorError("run `interlock up` on a manager node (the core needs the manager's API)")
    if config_path:
        text = Path(config_path).read_text()
    else:
        ready = [n for n in ops.node_records() if n.state == "ready"]
        host_mode = not has_ipvs()
        if host_mode:
            say("this kernel has no IPVS, so Swarm's routing mesh cannot answer: publishing the proxy in host mode")
        text = default_config_text(host_mode=host_mode, replicas=max(1, min(2, len(ready))))
    config = load_config(text, source=config_path or "default config")
    for name, ext in config.extensions.items():
        if ext.config.clear_text_password:
            say(
                f"note: Extensions.{name}.Config.AdminPass is kept in clear text in the core's configuration; "
                "put the password in a Docker secret and name it in AdminPassSecret instead"
            )
    identities = {image: ops.image_identity(image) for image in images(config)}
    for image, identity in identities.items():
        if not identity:
            raise OperatorError(f"image {image} is not on this node; build it (scripts/build-images) or pull it first")
    # Not attachable: a container started with `docker run --network` cannot join it; only
    # services (which need a manager's API) can.
    network = ops.ensure_overlay(CONTROL_NETWORK, MANAGED, attachable=False)
    if ops.network_attachable(network.id):
        say(
            f"note: network {CONTROL_NETWORK} is attachable (made by an earlier version); "
            "`interlock down` then `up` remakes it"
        )
    monitoring = None
    if config.monitoring_network:
        # Attachable only when the operator asks (a Prometheus run as a plain container).
        monitoring = ops.ensure_overlay(
            config.monitoring_network,
            {**MANAGED, LABEL_ROLE: "monitoring"},
            attachable=config.monitoring_attachable,
        )
        if ops.network_attachable(monitoring.id) != config.monitoring_attachable:
            say(
                f"note: network {config.monitoring_network} is "
                f"{'' if not config.monitoring_attachable else 'not '}attachable, unlike MonitoringAttachable = "
                f"{str(config.monitoring_attachable).lower()}; `interlock down` then `up` remakes it"
            )
    tokens = ensure_tokens(ops, all_tokens(config), MANAGED)
    tls = ensure_identities(ops, tls_identities(config), MANAGED)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    config_ref = ops.create_config(f"interlock-config-{digest}", text.encode(), MANAGED)
    core_image = next(iter(config.extensions.values())).image
    spec = core_spec(
        name=CORE_SERVICE,
        image=core_image,
        config=config_ref,
        control_network=network,
        operator_token=tokens[OPERATOR_TOKEN],
        extension_tokens=[tokens[name] for name in core_tokens(config) if name != OPERATOR_TOKEN],
        tls=tls[CORE_IDENTITY].key,
        monitoring_network=monitoring,
        constraints=config.core_constraints,
        debug=debug,
        image_id=identities[core_image],
    )
    current = ops.service_record(CORE_SERVICE)
    if current is None:
        say(f"creating the core service {CORE_SERVICE}")
        ops.create_service(spec)
    elif current.spec_hash != spec_hash(spec):
        say(f"updating the core service {CORE_SERVICE}")
        # The certificate secrets the core mounted for the routed hosts stay mounted.
        running = ops.service_named(CORE_SERVICE)
        kept = certificate_mounts(running["Spec"]) if running else []
        ops.update_service(current, with_certificates(spec, kept))
    else:
        say(f"the core service {CORE_SERVICE} is up to date")
    _remove_unused_core_configs(ops, keep=config_ref)
    if wait > 0:
        deadline = time.monotonic() + wait
        for name, ext in config.extensions.items():
            service = config.proxy_service_name(name)
            say(f"waiting for the {ext.proxy_replicas} task(s) of {service} to answer on port {ext.published_port}")
            where = wait_for_proxies(ops, config, name, deadline, say)
            say(f"{service} answers at {', '.join(where) or '(no replicas)'}")
        say("waiting until every proxy serves its cluster's newest configuration")
        wait_converged(ops, config, deadline, say)
    say("Interlock is up. Route a service with --label com.docker.lb.hosts=NAME --label com.docker.lb.port=PORT")
    return config


def _remove_unused_core_configs(ops: SwarmOps, keep: Ref) -> None:
    for config in ops.config_records(label=f"{LABEL_MANAGED}={MANAGED_BY_UP}"):
        if config.id != keep.id and config.name.startswith("interlock-config-"):
            try:
                ops.remove_config(config.id)
            except DockerUnavailable:
                pass  # still in use by a task being replaced


def _proxy_tasks(
    ops: SwarmOps, config: CoreConfig, name: str
) -> tuple[ServiceRecord | None, list[TaskRecord], list[TaskRecord]]:
    """Extension `name`'s proxy service (None when it does not exist yet), its tasks Swarm wants
    running, and those of them that run."""
    service = ops.service_record(config.proxy_service_name(name))
    if service is None:
        return None, [], []
    tasks = [t for t in ops.task_records(service.id) if t.desired_state == "running"]
    return service, tasks, [t for t in tasks if t.running]


def proxy_addresses(ops: SwarmOps, config: CoreConfig, name: str) -> tuple[list[str], str]:
    """Where the running tasks of extension `name`'s proxy answer HTTP (host:port), or why not
    yet. In host mode each task answers at its node's address (127.0.0.1 on this node); in
    ingress mode every node's routing mesh answers, so this node does."""
    ext = config.extensions[name]
    service, _, running = _proxy_tasks(ops, config, name)
    if service is None:
        return [], f"{config.proxy_service_name(name)} does not exist yet"
    if len(running) < ext.proxy_replicas:
        return [], f"{len(running)} of {ext.proxy_replicas} tasks running"
    if ext.publish_mode != "host":
        return [f"127.0.0.1:{ext.published_port}"], ""
    here = ops.local_node_id()
    nodes = {n.id: n.address for n in ops.node_records()}
    return sorted(
        f"{'127.0.0.1' if t.node_id == here else nodes.get(t.node_id, '?')}:{ext.published_port}" for t in running
    ), ""


def answers(address: str) -> str:
    """'' when nginx answers HTTP at `address` (any status), else what happened."""
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=2):
            return ""
    except urllib.error.HTTPError as exc:
        if exc.headers.get("Server", "").startswith("nginx") or exc.code in (404, 503):
            return ""
        return f"{address}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{address}: {exc}"


def wait_for_proxies(ops: SwarmOps, config: CoreConfig, name: str, deadline: float, say: Say = print) -> list[str]:
    """Poll until every proxy task of extension `name` answers where Swarm placed it."""
    found: list[str] = []

    def pending() -> str:
        addresses, why = proxy_addresses(ops, config, name)
        why = why or "; ".join(filter(None, (answers(a) for a in addresses)))
        found[:] = [] if why else addresses
        return why

    wait_until(pending, deadline, f"{config.proxy_service_name(name)} to answer", say)
    return found


def converged(ops: SwarmOps, config: CoreConfig, status: CoreStatus) -> str | None:
    """None when every proxy task runs and serves its cluster's newest configuration, else why not."""
    if not status.ready:
        return "the core has not listed the swarm yet"
    by_extension = {c.extension: c for c in status.clusters}
    for name, ext in config.extensions.items():
        cluster = by_extension.get(name)
        if cluster is None or not cluster.config_id:
            return f"extension {name} has no validated configuration yet"
        service, tasks, running = _proxy_tasks(ops, config, name)
        if service is None:
            return f"proxy service {config.proxy_service_name(name)} does not exist yet"
        if (service.update_state or "completed") not in ("completed", "rollback_completed"):
            return f"{config.proxy_service_name(name)} is still updating"
        if len(running) != ext.proxy_replicas or len(tasks) != ext.proxy_replicas:
            return f"{config.proxy_service_name(name)}: {len(running)} of {ext.proxy_replicas} tasks running"
        newest = (cluster.config_id, cluster.targets_id or "")
        serving = {p.proxy: (p.config_id, p.targets_id or "") for p in cluster.proxies}
        for task in running:
            container = task.container_id[:12]
            if serving.get(container) != newest:
                return f"proxy {container} does not serve {cluster.serving_id} yet"
    return None


def wait_converged(ops: SwarmOps, config: CoreConfig, deadline: float, say: Say = print) -> None:
    wait_until(
        lambda: converged(ops, config, core_status(ops)) or "", deadline, "every proxy to serve the newest routes", say
    )


def down(*, say: Say = print, timeout: float = 90.0) -> None:
    """Remove what `up` and the core created, and return only once it is gone, so an `up` right
    after cannot find a network or secret that is still being removed."""
    ops = SwarmOps.from_environment()
    deadline = time.monotonic() + timeout
    core = ops.service_record(CORE_SERVICE)
    if core is not None and core.labels.get(LABEL_MANAGED) == MANAGED_BY_UP:
        say(f"removing {CORE_SERVICE}")
        ops.remove_service(core.id)
        # A core task that is still stopping would recreate what it owns: wait until it is gone.
        wait_until(_still_running(ops, core.id, CORE_SERVICE), deadline, "the core to stop", say)
    # A status probe left by an interrupted `interlock status` holds the control network.
    owned = ops.service_records(label=f"{LABEL_OWNER}={CORE_SERVICE}") + ops.service_records(
        label=f"{LABEL_ROLE}={STATUS_PROBE_ROLE}"
    )
    for service in owned:
        say(f"removing {service.name}")
        ops.remove_service(service.id)
    wait_until(
        lambda: ", ".join(s.name for s in ops.service_records(label=f"{LABEL_OWNER}={CORE_SERVICE}")),
        deadline,
        "the core's services to go",
        say,
    )
    for service in owned:
        wait_until(_still_running(ops, service.id, service.name), deadline, f"{service.name}'s tasks to stop", say)
    for label in (f"{LABEL_OWNER}={CORE_SERVICE}", f"{LABEL_MANAGED}={MANAGED_BY_UP}"):
        # Configs, secrets and the network can go once no task uses them.
        for config in ops.config_records(label=label):
            _retry(partial(ops.remove_config, config.id), deadline)
        for secret in ops.secret_records(label=label):
            _retry(partial(ops.remove_secret, secret.id), deadline)
    for other in ops.network_records():
        if other.labels.get(LABEL_MANAGED) == MANAGED_BY_UP and other.labels.get(LABEL_ROLE) == "monitoring":
            try:
                ops.remove_network(other.id)
                say(f"removed network {other.name}")
            except DockerUnavailable as exc:
                say(f"left network {other.name} in place: something else still uses it ({exc})")
    network = ops.network(CONTROL_NETWORK)
    if network is not None and ops.network_labels(network.id).get(LABEL_MANAGED) == MANAGED_BY_UP:
        say(f"removing network {CONTROL_NETWORK}")
        _retry(lambda: ops.remove_network(network.id), deadline)
        wait_until(
            lambda: "" if ops.network(CONTROL_NETWORK) is None else f"network {CONTROL_NETWORK} still exists",
            deadline,
            f"network {CONTROL_NETWORK} to go",
            say,
        )
    say("Interlock is down")


def _still_running(ops: SwarmOps, service_id: str, name: str) -> Callable[[], str]:
    """A check: how many tasks of the service are still starting or running ("" for none)."""

    def pending() -> str:
        # All tasks, filtered here: Docker refuses a service filter naming a removed service.
        live = sum(t.service_id == service_id and t.live for t in ops.all_task_records())
        return f"{live} task(s) of {name} still running" if live else ""

    return pending


def wait_until(
    pending: Callable[[], str],
    deadline: float,
    what: str,
    say: Say,
    *,
    interval: float = 0.5,
    repeat_after: float = 10.0,
) -> None:
    """Poll `pending` (what is still awaited, "" once done) until it is done or `deadline`
    passes (OperatorError naming `what` and the last reason). Says what is awaited each time it
    changes, and again every `repeat_after` seconds it does not, with the time waited so far, so
    an operator always sees what `up` or `down` is waiting for."""
    started = time.monotonic()
    said, said_at = "", started
    while reason := pending():
        now = time.monotonic()
        if now > deadline:
            raise OperatorError(f"timed out waiting for {what}: {reason}; see `interlock status`")
        if reason != said or now - said_at >= repeat_after:
            say(f"  ... {reason} ({now - started:.0f} s)")
            said, said_at = reason, now
        time.sleep(interval)


def _retry(action: Callable[[], None], deadline: float) -> None:
    while True:
        try:
            action()
            return
        except DockerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
