"""Docker service specs (Engine API JSON) for the services Interlock runs.

`interlock up` deploys the core from `core_spec`; the core deploys one extension and one proxy
per `[Extensions.NAME]` from `extension_spec` and `proxy_spec`. Every spec carries a hash of
itself in a label, so reconciling is "update when the hash differs" and an unchanged cluster is
never touched. Only the core spec mounts the Docker socket. Pure; swarm layer (IDs of networks,
secrets and configs are resolved by the caller).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from interlock.config.durations import parse_duration
from interlock.config.schema import DEBUG_ARGS, CoreConfig, ExtensionConfig
from interlock.constants import (
    ADMIN_PASS_FILE,
    CERTIFICATES_MOUNT,
    CONTROL_SUBNETS,
    DOCKER_SOCKET,
    EXTENSION_PORT,
    EXTENSION_TOKEN,
    EXTENSION_TYPE,
    LABEL_CLUSTER,
    LABEL_EXTENSION,
    LABEL_MANAGED,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_SPEC,
    LABEL_TLS,
    LABEL_TLS_FINGERPRINT,
    LABEL_TLS_PART,
    MANAGED_BY_UP,
    MANAGER_CONSTRAINT,
    MONITORING_SUBNETS,
    PEER_CERT,
    PROXY_TOKEN,
    PROXY_TYPE,
    PROXY_WORKDIR,
    SERVER_TLS,
    STATUS_PORT,
)
from interlock.swarm.records import Ref, SecretRecord


@dataclass(frozen=True, slots=True)
class TLSPair:
    """A server role's TLS identity: the secret with its key and certificate (the server's
    alone) and the secret with the certificate only (its clients pin it)."""

    key: Ref
    cert: Ref


def tls_pairs(secrets: Sequence[SecretRecord]) -> dict[str, TLSPair]:
    """Identity -> its TLS pair, from the swarm's secrets: a key and a cert secret of one
    identity with the same fingerprint; the newest pair when there are several."""
    parts: dict[tuple[str, str], dict[str, Ref]] = {}
    order: dict[tuple[str, str], str] = {}
    for secret in secrets:
        labels = secret.labels
        identity, part, fingerprint = (
            labels.get(LABEL_TLS),
            labels.get(LABEL_TLS_PART),
            labels.get(LABEL_TLS_FINGERPRINT),
        )
        if identity and part in ("key", "cert") and fingerprint:
            parts.setdefault((identity, fingerprint), {})[part] = secret.ref
            order[(identity, fingerprint)] = max(order.get((identity, fingerprint), ""), secret.created)
    pairs: dict[str, TLSPair] = {}
    for key in sorted(parts, key=lambda k: order[k]):
        found = parts[key]
        if "key" in found and "cert" in found:
            pairs[key[0]] = TLSPair(found["key"], found["cert"])
    return pairs


@dataclass(frozen=True, slots=True)
class ClusterRefs:
    """What one cluster's services attach to, resolved to IDs by the core."""

    control_network: Ref
    extension_token: Ref
    """This cluster's own extension token (`extension_token_secret`)."""
    proxy_token: Ref
    """This cluster's own proxy token (`proxy_token_secret`)."""
    core_url: str
    app_networks: tuple[Ref, ...] = ()
    proxy_config: Ref | None = None
    owner: str = "interlock"
    extra: Mapping[str, str] = field(default_factory=dict)
    image_ids: Mapping[str, str] = field(default_factory=dict)
    """Image reference -> what it resolves to on the manager (see `image_env`)."""
    core_cert: Ref | None = None
    """The core's certificate: the extension calls the core over TLS, pinned to it."""
    extension_tls: TLSPair | None = None
    """The extension's TLS identity: it serves its proxies over TLS, and they pin its certificate."""
    monitoring_network: Ref | None = None
    """`MonitoringNetwork`: where a Prometheus scrapes the roles' metrics."""
    admin_pass: Ref | None = None
    """HAProxy's `AdminPassSecret`: mounted into the proxy only."""

    @property
    def role_networks(self) -> list[Ref]:
        """The networks every role of the cluster is on: control, and monitoring if any."""
        return [self.control_network, *([self.monitoring_network] if self.monitoring_network else [])]


def listen_env(control: Ref, monitoring: Ref | None) -> list[str]:
    """Where a role may listen (`edges.listen`): the subnets of the control and monitoring
    networks, when Swarm has allocated them."""
    env = [f"{CONTROL_SUBNETS}={','.join(control.subnets)}"] if control.subnets else []
    if env and monitoring is not None and monitoring.subnets:
        env.append(f"{MONITORING_SUBNETS}={','.join(monitoring.subnets)}")
    return env


def image_env(image: str, image_ids: Mapping[str, str]) -> list[str]:
    """`INTERLOCK_IMAGE_ID=...` when the image's identity is known: a new build or pull under the
    same tag then changes the spec, and Swarm replaces the tasks with the new image."""
    identity = image_ids.get(image, "")
    return [f"INTERLOCK_IMAGE_ID={identity}"] if identity else []


def http_check(port: int, path: str) -> list[str]:
    """A health command: exit 0 when 127.0.0.1:`port` answers GET `path` with a status below 500.
    Bash and its /dev/tcp, not Python: a check runs every few seconds in every task, and
    starting Python for each one cost a busy node whole seconds of CPU (and timed checks out)."""
    if not (0 < port < 65536 and re.fullmatch(r"/[A-Za-z0-9/_.-]*", path)):
        raise ValueError(f"health check {port} {path!r}: a port and a plain absolute path")
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} || exit 1; "
        f'printf "GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" >&3; '
        "read -r -t 4 _ code _ <&3 || exit 1; "
        # The rest of the answer read to its end, so closing sends no reset to the server.
        "while read -r -t 4 _ <&3; do :; done; "
        '[ "${code:-500}" -lt 500 ] 2>/dev/null'
    )
    return ["CMD", "bash", "-c", script]


def _health(port: int, path: str) -> dict[str, Any]:
    """Swarm keeps a task `starting` until this passes, so updates wait for a serving task.
    Failures in the first 30 s do not count: a proxy started while its extension is away (an
    upgrade replaces both) waits a few seconds for it before it serves the mounted configuration,
    and on a busy node that outlasted three checks, so Swarm killed it and rolled back. Every
    second: a replaced proxy counts as running (and the next one is replaced) a second at most
    after it serves, and a bash check costs little."""
    return {
        "Test": http_check(port, path),
        "Interval": 1_000_000_000,
        "Timeout": 5_000_000_000,
        "Retries": 3,
        "StartPeriod": 30_000_000_000,
    }


def _debug(args: Sequence[str]) -> list[str]:
    """Interlock's `Args`/`ProxyArgs` as our command line: `-D` is a global option, before the
    role (validated in the config: only -D/--debug or empty strings get here)."""
    return ["-D"] if any(a in DEBUG_ARGS for a in args) else []


def _ns(duration: str) -> int:
    return int(parse_duration(duration) * 1e9)


def secret_mount(ref: Ref, target: str | None = None, mode: int = 0o400) -> dict[str, Any]:
    """`ref` mounted at /run/secrets/`target` (its own name by default), root's, `mode`."""
    return {
        "File": {"Name": target or ref.name, "UID": "0", "GID": "0", "Mode": mode},
        "SecretID": ref.id,
        "SecretName": ref.name,
    }


def certificate_mount_target(name: str) -> str:
    """Where the core mounts certificate secret `name`: under SECRETS_DIR/CERTIFICATES_MOUNT."""
    return f"{CERTIFICATES_MOUNT}/{name}"


def with_certificates(spec: Mapping[str, Any], certificates: Sequence[Ref]) -> dict[str, Any]:
    """A copy of the core's service `spec` mounting exactly `certificates` (the secrets the
    routed hosts name) under CERTIFICATES_MOUNT, after its own secrets, sorted by name."""
    copied = json.loads(json.dumps(spec))
    container = copied["TaskTemplate"]["ContainerSpec"]
    own = [m for m in container.get("Secrets") or () if not m["File"]["Name"].startswith(CERTIFICATES_MOUNT + "/")]
    mounts = [secret_mount(ref, certificate_mount_target(ref.name)) for ref in sorted(certificates, key=_by_name)]
    container["Secrets"] = [*own, *mounts]
    return dict(copied)


def certificate_mounts(spec: Mapping[str, Any]) -> list[Ref]:
    """The certificate secrets the core's service `spec` mounts."""
    container = spec["TaskTemplate"]["ContainerSpec"]
    return [
        Ref(m["SecretID"], m["SecretName"])
        for m in container.get("Secrets") or ()
        if m["File"]["Name"].startswith(CERTIFICATES_MOUNT + "/")
    ]


def _by_name(ref: Ref) -> str:
    return ref.name


def with_secrets(spec: Mapping[str, Any], mounts: Sequence[tuple[Ref, str]]) -> dict[str, Any]:
    """A copy of service `spec` mounting each (secret, file name), in place of whatever it
    mounted under that file name."""
    copied = json.loads(json.dumps(spec))
    container = copied["TaskTemplate"]["ContainerSpec"]
    for ref, target in mounts:
        kept = [m for m in container.get("Secrets") or () if m["File"]["Name"] != target]
        container["Secrets"] = [*kept, secret_mount(ref, target)]
    return dict(copied)


def _placement(constraints: Sequence[str], preferences: Sequence[str]) -> dict[str, Any]:
    spread = [{"Spread": {"SpreadDescriptor": p.split("=", 1)[1]}} for p in preferences if p.startswith("spread=")]
    return {"Constraints": list(constraints), "Preferences": spread}


def with_spec_hash(spec: dict[str, Any]) -> dict[str, Any]:
    """Add LABEL_SPEC: the hash of the spec without that label."""
    labels = {k: v for k, v in spec.get("Labels", {}).items() if k != LABEL_SPEC}
    body = dict(spec, Labels=labels)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return dict(body, Labels={**labels, LABEL_SPEC: digest})


def spec_hash(spec: Mapping[str, Any]) -> str:
    return str(spec.get("Labels", {}).get(LABEL_SPEC, ""))


def extension_spec(config: CoreConfig, name: str, refs: ClusterRefs) -> dict[str, Any]:
    ext = config.extensions[name]
    labels = {
        **ext.labels,
        "type": EXTENSION_TYPE,
        LABEL_OWNER: refs.owner,
        LABEL_ROLE: "extension",
        LABEL_EXTENSION: name,
        LABEL_CLUSTER: ext.service_cluster,
    }
    return with_spec_hash(
        {
            "Name": config.extension_service_name(name),
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": ext.image,
                    "Args": [*_debug(ext.args), "extension"],
                    "Env": [
                        f"INTERLOCK_CORE_URL={refs.core_url}",
                        f"INTERLOCK_EXTENSION={name}",
                        *image_env(ext.image, refs.image_ids),
                        *listen_env(refs.control_network, refs.monitoring_network),
                    ],
                    "Labels": dict(ext.container_labels),
                    "Secrets": [
                        secret_mount(refs.extension_token, EXTENSION_TOKEN),
                        secret_mount(refs.proxy_token, PROXY_TOKEN),
                        *([secret_mount(refs.core_cert, PEER_CERT)] if refs.core_cert else []),
                        *([secret_mount(refs.extension_tls.key, SERVER_TLS)] if refs.extension_tls else []),
                    ],
                },
                "Placement": _placement(ext.constraints, ext.placement_preferences),
                "Networks": [{"Target": n.id} for n in refs.role_networks],
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "rollback", "Order": "start-first"},
            "EndpointSpec": {"Mode": "dnsrr"},
        }
    )


def proxy_spec(config: CoreConfig, name: str, refs: ClusterRefs) -> dict[str, Any]:
    ext: ExtensionConfig = config.extensions[name]
    labels = {
        **ext.proxy_labels,
        "type": PROXY_TYPE,
        LABEL_OWNER: refs.owner,
        LABEL_ROLE: "proxy",
        LABEL_EXTENSION: name,
        LABEL_CLUSTER: ext.service_cluster,
    }
    networks = [*refs.role_networks, *sorted(refs.app_networks, key=lambda r: r.name)]
    peer = [secret_mount(refs.extension_tls.cert, PEER_CERT)] if refs.extension_tls else []
    admin = [secret_mount(refs.admin_pass, ADMIN_PASS_FILE)] if refs.admin_pass else []
    # No certificate secret: certificates come from the core over the control channel, so a new,
    # rotated or removed one never replaces a proxy task.
    secrets = [secret_mount(refs.proxy_token, PROXY_TOKEN), *peer, *admin]
    container: dict[str, Any] = {
        "Image": ext.proxy_image,
        "Args": [*_debug(ext.proxy_args), "proxy"],
        "Env": [
            f"INTERLOCK_EXTENSION_URL=http://tasks.{config.extension_service_name(name)}:{EXTENSION_PORT}",
            f"INTERLOCK_PROXY_CONFIG={ext.proxy_config_path}",
            f"INTERLOCK_PROXY_KIND={ext.kind}",
            f"INTERLOCK_PROXY_DRAIN={parse_duration(ext.proxy_drain_period):g}",
            # Its own service: its drain starts when Docker takes the task out of tasks.<service>.
            f"INTERLOCK_PROXY_SERVICE={config.proxy_service_name(name)}",
            *image_env(ext.proxy_image, refs.image_ids),
            *listen_env(refs.control_network, refs.monitoring_network),
        ],
        "Labels": dict(ext.proxy_container_labels),
        "StopSignal": ext.proxy_stop_signal,
        "StopGracePeriod": _ns(ext.proxy_stop_grace_period),
        "Secrets": secrets,
        # The proxy's work files (configuration, certificates and their keys) live in memory only.
        "Mounts": [{"Type": "tmpfs", "Target": PROXY_WORKDIR, "TmpfsOptions": {"Mode": 0o700}}],
        "Healthcheck": _health(STATUS_PORT, "/interlock/config"),
    }
    if ext.proxy_sysctls:
        container["Sysctls"] = dict(sorted(ext.proxy_sysctls.items()))
    if refs.proxy_config is not None:
        container["Configs"] = [
            {
                "File": {"Name": ext.proxy_config_path, "UID": "0", "GID": "0", "Mode": 0o444},
                "ConfigID": refs.proxy_config.id,
                "ConfigName": refs.proxy_config.name,
            }
        ]
    ports = [
        {
            "Protocol": "tcp",
            "TargetPort": ext.target_port,
            "PublishedPort": ext.published_port,
            "PublishMode": ext.publish_mode,
        },
        {
            "Protocol": "tcp",
            "TargetPort": ext.target_ssl_port,
            "PublishedPort": ext.published_ssl_port,
            "PublishMode": ext.publish_mode,
        },
    ]
    return with_spec_hash(
        {
            "Name": config.proxy_service_name(name),
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": container,
                "Placement": _placement(ext.proxy_constraints, ext.proxy_placement_preferences),
                "Networks": [{"Target": n.id} for n in networks],
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            },
            "Mode": {"Replicated": {"Replicas": ext.proxy_replicas}},
            # One proxy at a time, rolled back on failure (Interlock's behaviour since UCP 3.1.5);
            # host-mode ports cannot be bound twice on one node, hence stop-first.
            "UpdateConfig": {
                "Parallelism": 1,
                "Delay": _ns(ext.proxy_update_delay),
                "FailureAction": "rollback",
                "Order": "stop-first",
                "Monitor": 5_000_000_000,
            },
            "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Order": "stop-first"},
            "EndpointSpec": {"Mode": "vip", "Ports": ports},
        }
    )


def core_spec(
    *,
    name: str,
    image: str,
    config: Ref,
    control_network: Ref,
    operator_token: Ref,
    extension_tokens: Sequence[Ref],
    tls: Ref | None = None,
    monitoring_network: Ref | None = None,
    constraints: Sequence[str] = (MANAGER_CONSTRAINT,),
    debug: bool = False,
    image_id: str = "",
) -> dict[str, Any]:
    """The core: the only service with the Docker socket, on a manager (always: `constraints`
    only narrow which). It holds the operator's token and every extension's own token, under
    their secret names; never a proxy token."""
    return with_spec_hash(
        {
            "Name": name,
            "Labels": {LABEL_MANAGED: MANAGED_BY_UP, LABEL_ROLE: "core"},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image,
                    "Args": [*(["-D"] if debug else []), "run", "-c", "/config.toml"],
                    "Env": [
                        f"INTERLOCK_SERVICE_NAME={name}",
                        *image_env(image, {image: image_id}),
                        *listen_env(control_network, monitoring_network),
                    ],
                    "Mounts": [{"Type": "bind", "Source": DOCKER_SOCKET, "Target": DOCKER_SOCKET}],
                    "Configs": [
                        {
                            "File": {"Name": "/config.toml", "UID": "0", "GID": "0", "Mode": 0o444},
                            "ConfigID": config.id,
                            "ConfigName": config.name,
                        }
                    ],
                    "Secrets": [
                        secret_mount(operator_token),
                        *(secret_mount(t) for t in sorted(extension_tokens, key=lambda r: r.name)),
                        *([secret_mount(tls, SERVER_TLS)] if tls else []),
                    ],
                },
                "Placement": {
                    "Constraints": [MANAGER_CONSTRAINT, *(c for c in constraints if c != MANAGER_CONSTRAINT)]
                },
                "Networks": [
                    {"Target": n.id} for n in (control_network, *([monitoring_network] if monitoring_network else []))
                ],
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "rollback", "Order": "stop-first"},
            "EndpointSpec": {"Mode": "dnsrr"},
        }
    )


STATUS_PROBE_ROLE = "status-probe"


def status_probe_spec(
    *,
    name: str,
    image: str,
    control_network: Ref,
    operator_token: Ref,
    core_address: str,
    node_id: str,
    core_cert: Ref | None = None,
) -> dict[str, Any]:
    """A one-shot job that asks the core at `core_address` (host:port on the control network)
    for its status and prints it: how `interlock status` reaches a core on another manager,
    whose API is on the control network only. It runs on `node_id` (the operator's node, which
    has the image) and holds the operator's token, nothing else."""
    return {
        "Name": name,
        "Labels": {LABEL_MANAGED: MANAGED_BY_UP, LABEL_ROLE: STATUS_PROBE_ROLE},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Args": ["inspect", "--core", core_address],
                "Secrets": [secret_mount(operator_token), *([secret_mount(core_cert, PEER_CERT)] if core_cert else [])],
            },
            "Placement": {"Constraints": [f"node.id=={node_id}"]},
            "Networks": [{"Target": control_network.id}],
            "RestartPolicy": {"Condition": "none"},
        },
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }
