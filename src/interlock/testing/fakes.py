"""Small hand-written fakes of the edges the roles use, for unit tests of their loops.

`FakeClock` is a `Clock` whose time moves only when the test advances it, so settle windows,
periodic resyncs and backoff run instantly and in a known order (with `inline` for the calls a
loop would run in a thread). `FakeNginx` and `FakePeer` stand in for the agent's nginx and for
another role. `FakeSwarm` is an in-memory swarm
that is both a `SwarmSource` (lists, an event stream the test drives) and a `SwarmWriter`
(services, configs and the rest, kept as Engine-API-shaped JSON so the production converters read
them). Nothing here touches Docker, the network or the file system.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import heapq
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from interlock.constants import (
    CONTROL_NETWORK,
    CORE_IDENTITY,
    LABEL_TLS,
    LABEL_TLS_FINGERPRINT,
    LABEL_TLS_PART,
    OPERATOR_TOKEN,
    TLS_SECRET_PREFIX,
    extension_identity,
    extension_token_secret,
    proxy_token_secret,
)
from interlock.edges.swarm_ops import network_record, secret_record, service_record, task_record
from interlock.errors import ConfigRejected, DockerUnavailable, ReloadFailed
from interlock.swarm.records import NetworkRecord, Ref, SecretRecord, ServiceRecord, TaskRecord
from interlock.swarm.specs import certificate_mounts, with_certificates, with_secrets
from interlock.testing.swarm_json import fake_id, swarm_json
from interlock.wire.certificates import CertificateBundle

T = TypeVar("T")


class FakeClock:
    """A `Clock` whose time moves only when the test calls `advance`: sleepers and waits with a
    timeout are woken in deadline order, and everything they start runs before time moves on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._serial = 0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now

    def _timer(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._serial += 1
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), self._serial, future))
        return future

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._timer(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set() or timeout <= 0:
            await asyncio.sleep(0)
            return event.is_set()
        timer = self._timer(timeout)
        waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        pending: set[asyncio.Future[Any]] = {timer, waiter}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing each timer due on the way at its deadline."""
        target = self.now + seconds
        await _run_ready()
        while self._timers and self._timers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._timers)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            await _run_ready()
        self.now = max(self.now, target)
        await _run_ready()


async def _run_ready(rounds: int = 50) -> None:
    """Let every task that can run, run (single-threaded code settles within a few rounds)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def inline(function: Callable[..., T], *args: Any) -> T:
    """`asyncio.to_thread` without the thread: the fakes answer at once, and tests stay
    deterministic on a `FakeClock`."""
    return function(*args)


class _Stream:
    def __init__(self, swarm: FakeSwarm) -> None:
        self.swarm = swarm
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _FakeObjects:
    """The secrets and configs of a swarm in memory, and its writes and outages."""

    def __init__(self, secrets: tuple[str, ...], *, tokens: bool, extensions: tuple[str, ...]) -> None:
        self.index = 10
        token_names = [
            OPERATOR_TOKEN,
            *(f(e) for e in extensions for f in (extension_token_secret, proxy_token_secret)),
        ]
        names = (*(token_names if tokens else ()), *secrets)
        self.secret_ids = {name: fake_id("secret", name) for name in names}
        self.secret_labels: dict[str, dict[str, str]] = {}
        for identity in (CORE_IDENTITY, *(extension_identity(e) for e in extensions)) if tokens else ():
            fingerprint = fake_id("tls", identity)[:12]
            for part in ("key", "cert"):
                name = f"{TLS_SECRET_PREFIX}{fingerprint}-{part}"
                self.secret_ids[name] = fake_id("secret", name)
                self.secret_labels[name] = {
                    LABEL_TLS: identity,
                    LABEL_TLS_PART: part,
                    LABEL_TLS_FINGERPRINT: fingerprint,
                }
        self.config_objects: dict[str, dict[str, Any]] = {}
        self.down = False
        """While True every call raises DockerUnavailable, as a stopped daemon would."""
        self.writes: list[tuple[str, str]] = []
        """(operation, name) of every write, in order."""
        self.secret_lists = 0
        self.failed_calls = 0
        """Calls refused while `down`."""

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise DockerUnavailable("Docker API: connection refused (fake)")

    def list_secrets(self) -> list[dict[str, Any]]:
        self._check()
        self.secret_lists += 1
        return [
            {"ID": i, "Spec": {"Name": n, "Labels": self.secret_labels.get(n, {})}} for n, i in self.secret_ids.items()
        ]

    def secrets(self, label: str | None = None) -> list[dict[str, Any]]:
        return self.list_secrets()

    def configs(self, label: str | None = None) -> list[dict[str, Any]]:
        self._check()
        return list(self.config_objects.values())

    def secret_records(self, label: str | None = None) -> list[SecretRecord]:
        return [secret_record(s) for s in self.secrets(label)]

    def config_records(self, label: str | None = None) -> list[SecretRecord]:
        return [secret_record(c) for c in self.configs(label)]

    def secret(self, name: str) -> Ref | None:
        self._check()
        return Ref(self.secret_ids[name], name) if name in self.secret_ids else None

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref:
        self._check()
        if name in self.secret_ids:
            raise DockerUnavailable(f"POST /secrets/create: 409 secret {name} already exists")
        self.secret_ids[name] = fake_id("secret", name, self.index)
        self.secret_labels[name] = dict(labels)
        self.writes.append(("create-secret", name))
        return Ref(self.secret_ids[name], name)

    def remove_secret(self, secret_id: str) -> None:
        self._check()
        for name, known in list(self.secret_ids.items()):
            if known == secret_id:
                del self.secret_ids[name]
                self.secret_labels.pop(name, None)
                self.writes.append(("remove-secret", name))

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> Ref:
        self._check()
        existing = next((c for c in self.config_objects.values() if c["Spec"]["Name"] == name), None)
        if existing is None:
            existing = {
                "ID": fake_id("config", name),
                "Spec": {"Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()},
            }
            self.config_objects[existing["ID"]] = existing
            self.writes.append(("create-config", name))
        return Ref(existing["ID"], name)

    def remove_config(self, config_id: str) -> None:
        self._check()
        removed = self.config_objects.pop(config_id, None)
        if removed is not None:
            self.writes.append(("remove-config", removed["Spec"]["Name"]))


class FakeSwarm(_FakeObjects):
    """A swarm in memory. App services come from a compact description (see `swarm_json`);
    services the core creates are kept as it sent them."""

    def __init__(
        self,
        description: Mapping[str, Any] | None = None,
        *,
        secrets: tuple[str, ...] = (),
        tokens: bool = True,
        extensions: tuple[str, ...] = ("default",),
    ) -> None:
        """`tokens`: Interlock's token and TLS secrets for `extensions` exist (as after `interlock up`)."""
        super().__init__(secrets, tokens=tokens, extensions=extensions)
        self.apps: dict[str, Any] = dict(description or {})
        self.owned: dict[str, dict[str, Any]] = {}
        self.owned_tasks: list[dict[str, Any]] = []
        """Tasks of the services the core owns, as the Engine API lists them; a test adds them."""
        self.image_ids: dict[str, str] = {}
        self.control_network = True
        self.removed_networks: list[str] = []  # by `remove_network`; no longer listed
        self.control_subnet: str | None = "10.255.0.0/24"
        """None: Swarm has not allocated the control network's subnet yet."""
        self.malformed = False
        """While True the lists answer a service without an ID (not the Engine API's shape)."""
        self.lists = 0
        self.streams: list[_Stream] = []
        self._on_event: Callable[[dict[str, Any]], None] | None = None
        self._on_end: Callable[[BaseException | None], None] | None = None

    # -- what the test does ---------------------------------------------------------------
    def set_apps(self, description: Mapping[str, Any], *, event: bool = True) -> None:
        """Replace the app services; with `event`, the stream reports a service update."""
        self.apps = dict(description)
        self.index += 1
        if event:
            self.emit({"Type": "service", "Action": "update", "Actor": {"ID": "app"}})

    def emit(self, event: dict[str, Any]) -> None:
        if self._on_event is not None and not self.streams[-1].closed:
            self._on_event(event)

    def end_stream(self, error: BaseException | None = None) -> None:
        if self._on_end is not None:
            self._on_end(error)

    def service(self, name: str) -> dict[str, Any] | None:
        return self.owned.get(name)

    # -- SwarmSource -------------------------------------------------------------------------
    def list_swarm(self) -> dict[str, list[dict[str, Any]]]:
        self._check()
        self.lists += 1
        raw = swarm_json(self.apps)
        for service in raw["services"]:
            # Every change the test makes moves the version of the app services, as an update would.
            service["Version"] = {"Index": self.index}
        raw["services"] += [copy.deepcopy(s) for s in self.owned.values()]
        if self.malformed:
            raw["services"].append({"Spec": {"Name": "no-id"}})
        raw["networks"] = self._networks(raw["networks"])
        return raw

    def _networks(self, apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ipam = {"Config": [{"Subnet": self.control_subnet}] if self.control_subnet else []}
        control = [
            {"Id": fake_id("network", CONTROL_NETWORK), "Name": CONTROL_NETWORK, "Driver": "overlay", "IPAM": ipam}
        ]
        kept = [n for n in apps if n["Name"] not in self.removed_networks]
        return kept + (control if self.control_network else [])

    def stream_events(
        self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[[BaseException | None], None]
    ) -> _Stream:
        self._check()
        self._on_event, self._on_end = on_event, on_end
        self.streams.append(_Stream(self))
        return self.streams[-1]

    # -- SwarmWriter -------------------------------------------------------------------------
    def networks(self) -> list[dict[str, Any]]:
        self._check()
        return self._networks(swarm_json(self.apps)["networks"])

    def image_identity(self, reference: str) -> str:
        self._check()
        return self.image_ids.get(reference, "")

    def services(self, *, label: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        self._check()
        found = []
        # As Docker lists them: the app services and the ones the core owns.
        for service in [*swarm_json(self.apps)["services"], *self.owned.values()]:
            key, _, value = (label or "").partition("=")
            if label and service["Spec"].get("Labels", {}).get(key) != value:
                continue
            if name and service["Spec"]["Name"] != name:
                continue
            found.append(copy.deepcopy(service))
        return found

    def create_service(self, spec: Mapping[str, Any]) -> str:
        self._check()
        name = spec["Name"]
        if name in self.owned:
            raise DockerUnavailable(f"POST /services/create: 409 name {name} is in use")
        self.index += 1
        service_id = fake_id("service", name, self.index)
        self.owned[name] = {"ID": service_id, "Version": {"Index": self.index}, "Spec": copy.deepcopy(dict(spec))}
        self.writes.append(("create", name))
        return service_id

    def update_service(self, service: ServiceRecord, spec: Mapping[str, Any]) -> None:
        self._check()
        current = self.owned.get(spec["Name"])
        if current is None or current["Version"]["Index"] != service.version:
            raise DockerUnavailable("POST /services/update: 500 update out of sequence")
        self.index += 1
        current["Version"] = {"Index": self.index}
        current["PreviousSpec"] = current["Spec"]
        current["Spec"] = copy.deepcopy(dict(spec))
        self.writes.append(("update", spec["Name"]))

    def remove_network(self, network_id: str) -> None:
        """As Docker: refused while a service's spec names the network."""
        name = next((n["Name"] for n in self.networks() if n["Id"] == network_id), None)
        if name is None or any(network_id in s.network_ids for s in self.service_records()):
            raise DockerUnavailable(f"DELETE /networks/{network_id}: 403 not found, or in use")
        self.removed_networks.append(name)
        self.writes.append(("remove network", name))

    def remove_service(self, service_id: str) -> None:
        self._check()
        for name, service in list(self.owned.items()):
            if service["ID"] == service_id:
                del self.owned[name]
                self.index += 1
                self.writes.append(("remove", name))

    def service_named(self, name: str) -> dict[str, Any] | None:
        return next(iter(self.services(name=name)), None)

    # The typed reads the core uses (`SwarmWriter`), made from the JSON above by the real edge.
    def service_records(self, *, label: str | None = None, name: str | None = None) -> list[ServiceRecord]:
        return [service_record(s) for s in self.services(label=label, name=name)]

    def task_records(self, service_id: str) -> list[TaskRecord]:
        self._check()
        return [task_record(t) for t in self.owned_tasks if t.get("ServiceID") == service_id]

    def network_records(self) -> list[NetworkRecord]:
        return [network_record(n) for n in self.networks()]

    def mount_secrets(self, service_name: str, mounts: Sequence[tuple[Ref, str]]) -> bool:
        current = self.owned.get(service_name)
        if current is None:
            return False
        self.update_service(service_record(current), with_secrets(current["Spec"], mounts))
        return True

    def mount_certificates(self, service_name: str, certificates: Sequence[Ref]) -> bool:
        current = self.owned.get(service_name)
        if current is None:
            return False
        if certificate_mounts(current["Spec"]) == sorted(certificates, key=lambda r: r.name):
            return False
        self.update_service(service_record(current), with_certificates(current["Spec"], certificates))
        return True


class FakeNginx:
    """A `ProxyControl` that records what it was asked to install; `refuse` makes the next
    installs fail as `nginx -t` would."""

    kind = "nginx"

    def __init__(self) -> None:
        self.config_id = ""
        self.targets_id = ""
        self.reloads = 0
        self.target_updates = 0
        self.installs: list[str] = []
        self.target_changes: list[str] = []
        self.refuse = ""
        self.started = False
        self.certificates: list[CertificateBundle] = []
        """Every bundle handed over, in order."""
        self.draining = False

    @property
    def running(self) -> bool:
        return bool(self.config_id)

    @property
    def exited(self) -> bool:
        return False

    async def install(self, text: str, config_id: str, targets: str = "", targets_id: str = "") -> None:
        if self.refuse:
            raise ConfigRejected(self.refuse)
        self.installs.append(config_id)
        self.config_id, self.targets_id = config_id, targets_id
        self.reloads += 1

    async def update_targets(self, targets: str, targets_id: str) -> None:
        self.target_changes.append(targets_id)
        self.targets_id = targets_id
        self.target_updates += 1

    async def update_certificates(self, bundle: CertificateBundle) -> None:
        if self.refuse:
            raise ReloadFailed(self.refuse)
        self.certificates.append(bundle)

    async def set_draining(self, draining: bool) -> None:
        self.draining = draining

    async def poll_traffic(self, meter: object) -> None:
        return None

    async def start(self) -> None:
        self.started = True

    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None:
        self.started = False


class FakePeer:
    """A `Peer` that answers GETs from a script, in order, then blocks (as a long-poll with
    nothing new would); POSTs are recorded and answered 200."""

    def __init__(self, *answers: tuple[int, bytes] | Exception) -> None:
        self.answers = list(answers)
        self.gets: list[tuple[str, dict[str, str]]] = []
        self.posts: list[tuple[str, bytes]] = []
        self._never = asyncio.Event()

    async def get(self, path: str, *, params: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        self.gets.append((path, dict(params or {})))
        if not self.answers:
            await self._never.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
        self.posts.append((path, body))
        return 200, b'{"ok": true}'

    async def close(self) -> None:
        pass
