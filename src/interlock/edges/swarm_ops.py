"""Docker writes for the core and `interlock up`/`down`: services, networks, secrets, configs.

Specs are built by `interlock.swarm.specs` in the Engine API's JSON shape and sent as they
are. Every failure becomes `DockerUnavailable` with Docker's own message.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import docker
import docker.errors
import requests

from interlock.errors import DockerUnavailable
from interlock.swarm.records import (
    NetworkRecord,
    NodeRecord,
    Ref,
    SecretMount,
    SecretRecord,
    ServiceRecord,
    TaskRecord,
)
from interlock.swarm.specs import certificate_mounts, spec_hash, with_certificates, with_secrets

_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError)


def network_subnets(network: Mapping[str, Any]) -> tuple[str, ...]:
    """The subnets of a network as the Engine API lists it (IPAM.Config[].Subnet)."""
    configs = (network.get("IPAM") or {}).get("Config") or ()
    return tuple(str(c["Subnet"]) for c in configs if isinstance(c, Mapping) and c.get("Subnet"))


def _config_ids(container: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(c["ConfigID"]) for c in container.get("Configs") or () if c.get("ConfigID"))


def service_record(raw: Mapping[str, Any]) -> ServiceRecord:
    spec = raw.get("Spec") or {}
    template = spec.get("TaskTemplate") or {}
    container = template.get("ContainerSpec") or {}
    previous = ((raw.get("PreviousSpec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return ServiceRecord(
        id=str(raw["ID"]),
        name=str(spec.get("Name", "")),
        version=int((raw.get("Version") or {}).get("Index", 0)),
        spec_hash=spec_hash(spec),
        config_ids=_config_ids(container),
        previous_config_ids=_config_ids(previous),
        labels=dict(spec.get("Labels") or {}),
        image=str(container.get("Image", "")),
        image_id=next(
            (str(e).partition("=")[2] for e in container.get("Env") or () if str(e).startswith("INTERLOCK_IMAGE_ID=")),
            "",
        ),
        secrets=tuple(
            SecretMount(
                Ref(str(m.get("SecretID", "")), str(m.get("SecretName", ""))),
                str((m.get("File") or {}).get("Name", "")),
            )
            for m in container.get("Secrets") or ()
        ),
        network_ids=tuple(str(n.get("Target", "")) for n in template.get("Networks") or ()),
        update_state=str((raw.get("UpdateStatus") or {}).get("State") or ""),
    )


def task_record(raw: Mapping[str, Any]) -> TaskRecord:
    status = raw.get("Status") or {}
    return TaskRecord(
        id=str(raw.get("ID", "")),
        service_id=str(raw.get("ServiceID", "")),
        node_id=str(raw.get("NodeID", "")),
        state=str(status.get("State", "")),
        desired_state=str(raw.get("DesiredState", "")),
        created=str(raw.get("CreatedAt", "")),
        container_id=str((status.get("ContainerStatus") or {}).get("ContainerID") or ""),
        addresses=tuple(
            (str(a["Network"]["ID"]), str(a["Addresses"][0]).split("/")[0])
            for a in raw.get("NetworksAttachments") or ()
            if a.get("Addresses") and (a.get("Network") or {}).get("ID")
        ),
        config_ids=_config_ids((raw.get("Spec") or {}).get("ContainerSpec") or {}),
    )


def node_record(raw: Mapping[str, Any]) -> NodeRecord:
    status = raw.get("Status") or {}
    return NodeRecord(str(raw.get("ID", "")), str(status.get("Addr", "")), str(status.get("State", "")))


def secret_record(raw: Mapping[str, Any]) -> SecretRecord:
    """A secret (or a config: the same shape) without its data."""
    spec = raw.get("Spec") or {}
    return SecretRecord(
        str(raw["ID"]), str(spec.get("Name", "")), dict(spec.get("Labels") or {}), str(raw.get("CreatedAt", ""))
    )


def network_record(raw: Mapping[str, Any]) -> NetworkRecord:
    return NetworkRecord(
        str(raw.get("Id") or raw.get("ID", "")),
        str(raw.get("Name", "")),
        network_subnets(raw),
        dict(raw.get("Labels") or {}),
    )


class SwarmWriter(Protocol):
    """The Docker reads and writes the core's reconciler and token bootstrap need, as typed
    records (no Engine JSON past this module); `SwarmOps` in production,
    `interlock.testing.fakes.FakeSwarm` in unit tests."""

    def network_records(self) -> list[NetworkRecord]: ...
    def secret_records(self, label: str | None = None) -> list[SecretRecord]: ...
    def config_records(self, label: str | None = None) -> list[SecretRecord]: ...
    def image_identity(self, reference: str) -> str: ...
    def service_records(self, *, label: str | None = None, name: str | None = None) -> list[ServiceRecord]: ...
    def task_records(self, service_id: str) -> list[TaskRecord]: ...
    def create_service(self, spec: Mapping[str, Any]) -> str: ...
    def update_service(self, service: ServiceRecord, spec: Mapping[str, Any]) -> None: ...
    def remove_service(self, service_id: str) -> None: ...
    def mount_secrets(self, service_name: str, mounts: Sequence[tuple[Ref, str]]) -> bool: ...
    def mount_certificates(self, service_name: str, certificates: Sequence[Ref]) -> bool: ...
    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref: ...
    def remove_config(self, config_id: str) -> None: ...
    def secret(self, name: str) -> Ref | None: ...
    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref: ...
    def remove_secret(self, secret_id: str) -> None: ...
    def remove_network(self, network_id: str) -> None: ...


def with_subnets(network: Ref, inspect: Callable[[str], Mapping[str, Any]], within: float = 60.0) -> Ref:
    """`network` with its subnets, read again by `inspect` (its ID -> the API's network) until
    Swarm has allocated them."""
    # Swarm's allocator gives a new network its subnet after the create call returns (seconds
    # on a busy manager). The roles find where to listen by the subnets in their environment;
    # a spec written without them would have them listen on every address.
    deadline = time.monotonic() + within
    while not network.subnets:
        if time.monotonic() > deadline:
            raise DockerUnavailable(f"Swarm gave network {network.name} no subnet within {within:.0f}s")
        time.sleep(0.2)
        network = Ref(network.id, network.name, network_subnets(inspect(network.id)))
    return network


class SwarmOps:
    def __init__(self, client: docker.APIClient) -> None:
        self.client = client

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        url = self.client._url(path)
        try:
            if method == "GET":
                response = self.client._get(url, params=params)
            elif method == "POST":
                response = self.client._post_json(url, data=body, params=params)
            else:
                response = self.client._delete(url, params=params)
            return self.client._result(response, json=expect_json)
        except docker.errors.NotFound:
            if method == "DELETE":
                return None  # already gone: removal is idempotent
            raise DockerUnavailable(f"{method} {path}: not found") from None
        except _ERRORS as exc:
            raise DockerUnavailable(f"{method} {path}: {exc}") from exc

    def image_identity(self, reference: str) -> str:
        """What `reference` (a tag) resolves to on this node: its registry digest, else the
        local image ID; '' when the image is not here. Put into specs, so that a rebuilt or
        re-pulled image under the same tag rolls the services that run it."""
        from urllib.parse import quote

        try:
            image = self._call("GET", f"/images/{quote(reference, safe='/:@')}/json")
        except DockerUnavailable:
            return ""
        digests = image.get("RepoDigests") or []
        return str(digests[0] if digests else image.get("Id", ""))

    # services
    def services(self, *, label: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        filters: dict[str, list[str]] = {}
        if label:
            filters["label"] = [label]
        if name:
            filters["name"] = [name]
        try:
            return list(self.client.services(filters=filters or None))
        except _ERRORS as exc:
            raise DockerUnavailable(f"list services: {exc}") from exc

    def service_named(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.services(name=name) if s["Spec"]["Name"] == name), None)

    def service_records(self, *, label: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        return [service_record(s) for s in self.services(label=label, name=name)]

    def service_record(self, name: str) -> ServiceRecord | None:
        return next((s for s in self.service_records(name=name) if s.name == name), None)

    def mount_secrets(self, service_name: str, mounts: Sequence[tuple[Ref, str]]) -> bool:
        """Mount each (secret, file name) into service `service_name`, replacing what is mounted
        under that file name; False when there is no such service. Swarm replaces its tasks."""
        service = self.service_named(service_name)
        if service is not None:
            self.update_service(service_record(service), with_secrets(service["Spec"], mounts))
        return service is not None

    def mount_certificates(self, service_name: str, certificates: Sequence[Ref]) -> bool:
        """Make service `service_name` (the core's) mount exactly `certificates` under
        CERTIFICATES_MOUNT; True when its spec changed (Swarm then replaces its task)."""
        service = self.service_named(service_name)
        if service is None or certificate_mounts(service["Spec"]) == sorted(certificates, key=lambda r: r.name):
            return False
        self.update_service(service_record(service), with_certificates(service["Spec"], certificates))
        return True

    def create_service(self, spec: Mapping[str, Any]) -> str:
        return str(self._call("POST", "/services/create", body=spec)["ID"])

    def update_service(self, service: ServiceRecord, spec: Mapping[str, Any]) -> None:
        self._call("POST", f"/services/{service.id}/update", params={"version": service.version}, body=spec)

    def remove_service(self, service_id: str) -> None:
        self._call("DELETE", f"/services/{service_id}", expect_json=False)

    def task_records(self, service_id: str) -> list[TaskRecord]:
        return [task_record(t) for t in self.tasks(service_id)]

    def all_task_records(self) -> list[TaskRecord]:
        return [task_record(t) for t in self.all_tasks()]

    def node_records(self) -> list[NodeRecord]:
        return [node_record(n) for n in self.nodes()]

    def tasks(self, service_id: str) -> list[dict[str, Any]]:
        try:
            return list(self.client.tasks(filters={"service": service_id}))
        except _ERRORS as exc:
            raise DockerUnavailable(f"list tasks: {exc}") from exc

    # networks
    def container_output(self, container_id: str) -> bytes:
        """What a container on this node printed on standard output (a finished job's result;
        read from the node itself: Swarm's service log broker can repeat lines)."""
        try:
            return bytes(self.client.logs(container_id, stdout=True, stderr=False))
        except _ERRORS as exc:
            raise DockerUnavailable(f"logs of {container_id[:12]}: {exc}") from exc

    def networks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/networks"))

    def network_records(self) -> list[NetworkRecord]:
        return [network_record(n) for n in self.networks()]

    def network(self, name: str) -> Ref | None:
        for network in self._call("GET", "/networks", params={"filters": json.dumps({"name": [name]})}):
            if network["Name"] == name:
                return Ref(network["Id"], name, network_subnets(network))
        return None

    def ensure_overlay(self, name: str, labels: Mapping[str, str], *, attachable: bool = True) -> Ref:
        """The overlay network `name`, made if missing, once Swarm has given it a subnet."""
        network = self.network(name)
        if network is None:
            body = {"Name": name, "Driver": "overlay", "Attachable": attachable, "Labels": dict(labels)}
            network = Ref(str(self._call("POST", "/networks/create", body=body)["Id"]), name)
        return with_subnets(network, lambda network_id: self._call("GET", f"/networks/{network_id}"))

    def network_attachable(self, network_id: str) -> bool:
        return bool(self._call("GET", f"/networks/{network_id}").get("Attachable"))

    def remove_network(self, network_id: str) -> None:
        self._call("DELETE", f"/networks/{network_id}", expect_json=False)

    # secrets and configs share a shape
    def _objects(self, kind: str, label: str | None = None) -> list[dict[str, Any]]:
        params = {"filters": json.dumps({"label": [label]})} if label else None
        return list(self._call("GET", f"/{kind}", params=params))

    def secrets(self, label: str | None = None) -> list[dict[str, Any]]:
        return self._objects("secrets", label)

    def configs(self, label: str | None = None) -> list[dict[str, Any]]:
        return self._objects("configs", label)

    def secret_records(self, label: str | None = None) -> list[SecretRecord]:
        return [secret_record(s) for s in self.secrets(label)]

    def config_records(self, label: str | None = None) -> list[SecretRecord]:
        return [secret_record(c) for c in self.configs(label)]

    def secret(self, name: str) -> Ref | None:
        return next((Ref(s["ID"], name) for s in self.secrets() if s["Spec"]["Name"] == name), None)

    def config(self, name: str) -> Ref | None:
        return next((Ref(c["ID"], name) for c in self.configs() if c["Spec"]["Name"] == name), None)

    def _create(self, kind: str, name: str, data: bytes, labels: Mapping[str, str]) -> Ref:
        body = {"Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()}
        return Ref(str(self._call("POST", f"/{kind}/create", body=body)["ID"]), name)

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref:
        return self._create("secrets", name, data, labels)

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref:
        existing = self.config(name)
        return existing if existing is not None else self._create("configs", name, data, labels)

    def remove_secret(self, secret_id: str) -> None:
        self._call("DELETE", f"/secrets/{secret_id}", expect_json=False)

    def remove_config(self, config_id: str) -> None:
        self._call("DELETE", f"/configs/{config_id}", expect_json=False)

    def config_data(self, config_id: str) -> bytes:
        return base64.b64decode(self._call("GET", f"/configs/{config_id}")["Spec"]["Data"])

    def network_labels(self, network_id: str) -> dict[str, str]:
        return dict(self._call("GET", f"/networks/{network_id}").get("Labels") or {})

    def nodes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/nodes"))

    def all_tasks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/tasks"))

    def exec_in(self, container_id: str, argv: list[str]) -> tuple[int, bytes]:
        """Run `argv` in a container on this node: (exit code, stdout and stderr)."""
        try:
            exec_id = self.client.exec_create(container_id, argv)["Id"]
            output = self.client.exec_start(exec_id)
            return int(self.client.exec_inspect(exec_id).get("ExitCode") or 0), bytes(output)
        except _ERRORS as exc:
            raise DockerUnavailable(f"exec in {container_id[:12]}: {exc}") from exc

    def exec_lines(self, container_id: str, argv: list[str]) -> Iterator[bytes]:
        """Run `argv` in a container on this node and yield its standard output line by line
        while it runs (blocking; for a long-lived command). Its standard input is open while
        this reads and closes when the reader goes away: the command can end then."""
        try:
            exec_id = self.client.exec_create(container_id, argv, stdout=True, stderr=False, stdin=True)["Id"]
            pending = b""
            for chunk in self.client.exec_start(exec_id, stream=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from lines
        except _ERRORS as exc:
            raise DockerUnavailable(f"exec in {container_id[:12]}: {exc}") from exc

    # the core's own identity
    def container_labels(self, container_id: str) -> dict[str, str]:
        try:
            return dict(self.client.inspect_container(container_id)["Config"]["Labels"] or {})
        except _ERRORS as exc:
            raise DockerUnavailable(f"inspect container {container_id}: {exc}") from exc

    @classmethod
    def from_environment(cls) -> SwarmOps:
        """The Docker engine the Docker CLI would use (DOCKER_HOST and friends, else the socket)."""
        try:
            return cls(docker.APIClient(version="auto", **docker.utils.kwargs_from_env()))
        except _ERRORS as exc:
            raise DockerUnavailable(f"cannot reach Docker: {exc}") from exc

    def local_node_id(self) -> str:
        """The swarm node ID of the engine this client talks to."""
        try:
            return str((self.client.info().get("Swarm") or {}).get("NodeID", ""))
        except _ERRORS as exc:
            raise DockerUnavailable(f"docker info: {exc}") from exc

    def swarm_state(self) -> tuple[str, bool]:
        """(LocalNodeState, is this node a manager)."""
        try:
            info = self.client.info()
        except _ERRORS as exc:
            raise DockerUnavailable(f"docker info: {exc}") from exc
        swarm = info.get("Swarm") or {}
        return str(swarm.get("LocalNodeState", "")), bool(swarm.get("ControlAvailable"))


def ensure_tokens(ops: SwarmWriter, names: Sequence[str], labels: Mapping[str, str]) -> dict[str, Ref]:
    """Name -> the token secret of that name, created with 32 random bytes (URL-safe) where it
    is missing. Tokens are never read back: the roles that hold them get them mounted."""
    return {
        name: ops.secret(name) or ops.create_secret(name, secrets.token_urlsafe(32).encode(), labels) for name in names
    }
