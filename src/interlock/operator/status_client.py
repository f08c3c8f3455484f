"""The operator's status client: the running core's /v1/status, asked through `docker exec`
where the core runs on this node, else by a one-shot probe job on the control network (the
core's API is on that network only), else computed here (`offline.local_status`), with a note.

Imports no role: it only asks the core, or the Docker API.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import msgspec

from interlock.constants import (
    CONTROL_NETWORK,
    CORE_SERVICE,
    LABEL_OWNER,
    OPERATOR_TOKEN,
    SERVER_TLS,
)
from interlock.edges.swarm_ops import SwarmOps
from interlock.errors import DockerUnavailable
from interlock.operator.offline import core_config, local_status
from interlock.swarm.records import Ref, ServiceRecord, TaskRecord
from interlock.swarm.specs import (
    status_probe_spec,
    tls_pairs,
)
from interlock.wire.status import CoreStatus


def core_status(ops: SwarmOps | None = None) -> CoreStatus:
    """The running core's /v1/status: asked through `docker exec` when the core runs on this
    node, else by a one-shot job on the control network (the API is on that network only); when
    neither answers, routes and problems computed here, with a note saying so."""
    ops = ops or SwarmOps.from_environment()
    core = ops.service_record(CORE_SERVICE)
    if core is not None:
        here = ops.local_node_id()
        # While the core is updated (start-first) the old one still runs for a moment, with the
        # old configuration: ask the newest task Swarm wants running.
        tasks = sorted(ops.task_records(core.id), key=lambda t: t.created, reverse=True)
        for task in tasks:
            if not task.running:
                continue
            try:
                output = _inspect_here(ops, task) if task.node_id == here else _probe(ops, core, task, here)
                if output:
                    return msgspec.json.decode(output, type=CoreStatus)
            except (DockerUnavailable, msgspec.DecodeError):
                continue
    return local_status(ops, core)


def follow_status(ops: SwarmOps | None = None, interval: float = 0.25) -> Iterator[CoreStatus]:
    """The core's status each time it changes, for as long as the caller reads.

    Where the core runs on this node, one `docker exec` streams it (`interlock inspect --follow`
    asks the core's API in its container every `interval` s), so a change shows within a
    second. Elsewhere, or while the core is being replaced, `core_status` is asked once a second."""
    ops = ops or SwarmOps.from_environment()
    while True:
        core = ops.service_record(CORE_SERVICE)
        here = ops.local_node_id()
        tasks = ops.task_records(core.id) if core is not None else []
        local = [t for t in sorted(tasks, key=lambda t: t.created, reverse=True) if t.running and t.node_id == here]
        container = local[0].container_id if local else ""
        if container:
            try:
                for line in ops.exec_lines(container, ["interlock", "inspect", "--follow", str(interval)]):
                    try:
                        yield msgspec.json.decode(line, type=CoreStatus)
                    except msgspec.DecodeError:
                        continue
            except DockerUnavailable:
                pass
        # The stream ended (the core task stopped) or the core is elsewhere: ask once, then look again.
        yield core_status(ops)
        time.sleep(1)


def _inspect_here(ops: SwarmOps, task: TaskRecord) -> bytes | None:
    if not task.container_id:
        return None
    code, output = ops.exec_in(task.container_id, ["interlock", "inspect"])
    return output if code == 0 else None


def _probe(ops: SwarmOps, core: ServiceRecord, task: TaskRecord, here: str, timeout: float = 30.0) -> bytes | None:
    """The status of the core task `task` (on another node), printed by a status probe job
    that runs on this node."""
    config = core_config(ops, core)
    token = next((m.secret for m in core.secrets if m.secret.name == OPERATOR_TOKEN), None)
    # The probe pins the certificate of the key pair the core serves with.
    key = next((m.secret.id for m in core.secrets if m.file == SERVER_TLS), None)
    pair = next((p for p in tls_pairs(ops.secret_records()).values() if p.key.id == key), None)
    core_cert = pair.cert if pair is not None else None
    network = core.network_ids[0] if core.network_ids else None
    address = task.address_on(network) if network else None
    if config is None or token is None or network is None or address is None or (key and core_cert is None):
        return None
    spec = status_probe_spec(
        name=f"interlock-status-{secrets.token_hex(4)}",
        image=core.image,
        control_network=Ref(network, CONTROL_NETWORK),
        operator_token=token,
        core_cert=core_cert,
        core_address=f"{address}:{config.listen_port}",
        node_id=here,
    )
    probe = ops.create_service(spec)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in ops.task_records(probe):
                if job.state == "complete" and job.container_id:
                    return ops.container_output(job.container_id)
                if job.state in ("failed", "rejected"):
                    return None
            time.sleep(0.2)
        return None
    finally:
        ops.remove_service(probe)


def role_images(ops: SwarmOps | None = None) -> dict[str, str]:
    """Service name -> the image its spec runs, for the core and every role the core deployed
    (after an upgrade: which roles run the new image yet)."""
    ops = ops or SwarmOps.from_environment()
    services = [*ops.service_records(name=CORE_SERVICE), *ops.service_records(label=LABEL_OWNER)]
    return {
        s.name: f"{s.image} ({s.image_id[:19]})" if s.image_id else s.image
        for s in sorted(services, key=lambda s: s.name)
    }
