"""The core's ACME desk: orders a certificate for each `ssl_acme` host set (one at a time),
keeps it as two Docker secrets of Interlock's own, renews it `RenewBefore` its expiry, and says
why an order failed as a problem of the services that wanted it.

    routings (ssl_acme hosts) -> due host sets -> AcmeClient.order (in a thread)
        -> challenges published in the certificate bundles, validated once every proxy of the
           cluster serves them -> the issued pair: secrets (read back on restart: the core mounts
           them) and, at once, the certificate desk's shelf -> bundles -> proxies

The core restarts when its mounts change (a new certificate, the account key, the CA bundle);
the reconciler holds that back while an order runs (`busy`). No Docker calls on the event loop:
they go through `offload`. No HTTP of its own: the ACME client is an edge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from interlock.config.schema import AcmeConfig
from interlock.constants import ACME_SECRET_PREFIX, LABEL_ACME, LABEL_ACME_NOT_AFTER, LABEL_ACME_PART, LABEL_OWNER
from interlock.edges.acme_client import AcmeFailed, Issued, KeyType, Publish, new_key
from interlock.edges.clock import Clock
from interlock.edges.swarm_ops import SwarmWriter
from interlock.errors import DockerUnavailable
from interlock.model.routing import Routing
from interlock.problems import Problem, Severity
from interlock.roles.core.board import Board
from interlock.roles.core.certificates import CertificateDesk
from interlock.roles.core.watcher import Offload
from interlock.swarm.records import Ref, SecretRecord
from interlock.wire.certificates import Certificate, Pair

log = logging.getLogger("interlock.acme")

Names = tuple[str, ...]
CHECK_EVERY = 60.0
"""Seconds between looks at expiry dates when nothing wakes the desk."""
FIRST_BACKOFF, MAX_BACKOFF = 30.0, 3600.0
PROXIES_WAIT = 30.0
"""Seconds the proxies of a cluster have to serve an order's challenges."""
ACCOUNT = "account"


class AcmeClient(Protocol):
    def order(self, names: Names, key_type: KeyType, publish: Publish) -> Issued: ...


@dataclass(frozen=True, slots=True)
class Held:
    """An issued certificate the swarm holds as two secrets."""

    names: Names
    cert: Ref
    key: Ref
    not_after: float

    @property
    def pair(self) -> Pair:
        return (self.cert.name, self.key.name)


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    retry_at: float
    backoff: float


def held_in(secrets: list[SecretRecord]) -> tuple[dict[Names, Held], list[Ref]]:
    """The newest issued certificate of each host set among `secrets`, and the secrets of the
    ones superseded (or incomplete)."""
    parts: dict[tuple[Names, str], dict[str, SecretRecord]] = {}
    for secret in secrets:
        listed, part = secret.labels.get(LABEL_ACME, ""), secret.labels.get(LABEL_ACME_PART, "")
        if listed and listed != ACCOUNT and part in ("cert", "key"):
            issue = secret.labels.get(LABEL_ACME_NOT_AFTER, "0")
            parts.setdefault((tuple(listed.split(",")), issue), {})[part] = secret
    newest: dict[Names, Held] = {}
    stale: list[Ref] = []
    for (names, issue), found in sorted(parts.items(), key=lambda item: _number(item[0][1])):
        if set(found) != {"cert", "key"}:
            stale.extend(s.ref for s in found.values())
            continue
        if names in newest:
            stale.extend((newest[names].cert, newest[names].key))
        newest[names] = Held(names, found["cert"].ref, found["key"].ref, _number(issue))
    return newest, stale


def order_problems(
    routings: Mapping[str, Routing], failures: Mapping[Names, Failure], held: set[Names]
) -> list[Problem]:
    """A problem of each service whose host set's last order failed (a warning while a valid
    certificate is still served)."""
    found: dict[str, Problem] = {}
    for routing in routings.values():
        for host in routing.hosts:
            failure = failures.get(host.acme) if host.acme else None
            if failure is None:
                continue
            severity = Severity.WARNING if host.acme in held else Severity.ERROR
            reason = f"ACME order for {', '.join(host.acme)} failed: {failure.reason}; retried"
            for service in host.services:
                found[service] = Problem(service, "com.docker.lb.ssl_acme", "true", reason, severity)
    return list(found.values())


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


class AcmeDesk:
    def __init__(
        self,
        config: AcmeConfig,
        board: Board,
        certificates: CertificateDesk,
        ops: SwarmWriter,
        *,
        owner: str,
        client: Callable[[bytes, str | None], AcmeClient],
        clock: Clock,
        offload: Offload = asyncio.to_thread,
        wake_reconciler: Callable[[], None] = lambda: None,
    ) -> None:
        """`client(account_key_pem, ca_bundle_path)`: the ACME client (`AcmeAccount` in production)."""
        self.config, self.board, self.certificates, self.ops = config, board, certificates, ops
        self.owner, self.client, self.clock, self.offload = owner, client, clock, offload
        self.wake_reconciler = wake_reconciler
        self.directory = certificates.shelf.directory
        self.held: dict[Names, Held] = {}
        self.stale: list[Ref] = []
        self.account: Ref | None = None
        self.ca: Ref | None = None
        self.failures: dict[Names, Failure] = {}
        self.busy = False
        self.loaded = False
        self.wake = asyncio.Event()
        self._client: AcmeClient | None = None
        board.late_problems = self.problems
        certificates.acme_pairs = self.pairs

    # -- what other parts ask -----------------------------------------------------------------
    def wanted(self) -> set[Names]:
        return {n for s in self.board.slots.values() if s.state for n in s.state.routing.acme_names().values()}

    def pairs(self) -> dict[Names, Pair]:
        return {names: held.pair for names, held in self.held.items()}

    def expiries(self) -> dict[str, float]:
        """Host -> when the certificate it is served with expires, for every ACME host."""
        routings = [s.state.routing for s in self.board.slots.values() if s.state]
        return {
            host: self.held[names].not_after
            for routing in routings
            for host, names in routing.acme_names().items()
            if names in self.held
        }

    def mounts(self) -> list[Ref] | None:
        """The secrets the core must mount for ACME once it is used: the account key, the CA
        bundle, the certificates hosts want (None while an order runs: a restart now would
        lose it)."""
        if self.busy or not self.loaded:
            return None
        wanted = self.wanted()
        if not wanted and self.account is None:
            return []  # ACME never used: the core mounts nothing of it (and is not restarted for it)
        # Once used, the account key and the CA bundle stay: the next order needs no restart.
        refs = [r for r in (self.account, self.ca) if r is not None]
        return refs + [r for names, h in sorted(self.held.items()) if names in wanted for r in (h.cert, h.key)]

    def problems(self, routings: Mapping[str, Routing]) -> list[Problem]:
        return order_problems(routings, self.failures, set(self.held))

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        while not self.loaded:
            try:
                await self.offload(self.load)
            except DockerUnavailable as exc:
                log.warning("ACME: cannot list secrets yet: %s", exc)
                await asyncio.sleep(5)
        while True:
            self.wake.clear()
            for names in self.due():
                await self.order(names)
            await self.offload(self.tidy)
            try:
                await asyncio.wait_for(self.wake.wait(), CHECK_EVERY)
            except TimeoutError:
                pass

    def load(self) -> None:
        """What the swarm holds: issued certificates, the account key, the CA bundle secret."""
        secrets = [
            s
            for s in self.ops.secret_records()
            if s.labels.get(LABEL_OWNER) == self.owner or s.name == self.config.ca_certificate
        ]
        self.held, self.stale = held_in(secrets)
        accounts = sorted((s for s in secrets if s.labels.get(LABEL_ACME) == ACCOUNT), key=lambda s: s.created)
        self.account = accounts[-1].ref if accounts else None
        self.stale += [s.ref for s in accounts[:-1]]
        self.ca = next((s.ref for s in secrets if s.name == self.config.ca_certificate), None)
        self.loaded = True
        log.info("ACME: %d certificate(s) held; account key %s", len(self.held), "held" if self.account else "none yet")

    def due(self) -> list[Names]:
        now = self.clock.wall()
        renew = self.config.renew_before_seconds
        due = []
        for names in sorted(self.wanted()):
            held, failure = self.held.get(names), self.failures.get(names)
            if failure is not None and failure.retry_at > now:
                continue
            if held is None or held.not_after - now <= renew:
                due.append(names)
        return due

    async def order(self, names: Names) -> None:
        self.busy = True
        try:
            client = await self.offload(self._ready_client)
            if client is None:
                return  # the CA bundle is not mounted yet; the core mounts it, then restarts
            publish = self._publisher(names, asyncio.get_running_loop())
            issued = await self.offload(client.order, names, self.config.key_type, publish)
            held = await self.offload(self._store, issued)
        except (AcmeFailed, DockerUnavailable) as exc:
            await self._failed(names, str(exc))
            return
        finally:
            self.busy = False
        previous = self.held.get(names)
        if previous is not None:
            self.stale += [previous.cert, previous.key]
        self.held[names] = held
        self.failures.pop(names, None)
        # Served now; mounted for the core's next start.
        self.certificates.shelf.loaded[held.pair] = Certificate.of(issued.chain, issued.key)
        await self._refresh()
        self.wake_reconciler()

    async def _failed(self, names: Names, reason: str) -> None:
        previous = self.failures.get(names)
        backoff = min(MAX_BACKOFF, previous.backoff * 2) if previous else FIRST_BACKOFF
        self.failures[names] = Failure(reason, self.clock.wall() + backoff, backoff)
        log.warning("ACME: order for %s failed (retry in %.0f s): %s", ", ".join(names), backoff, reason)
        await self._refresh()  # the failure is a problem of the services now

    async def _refresh(self) -> None:
        if self.board.snapshot is not None:
            self.board.publish(self.board.snapshot)
        self.certificates.read()
        await self.board.notify()

    # -- in a thread -------------------------------------------------------------------------
    def _ready_client(self) -> AcmeClient | None:
        if self._client is not None:
            return self._client
        ca = None
        if self.config.ca_certificate:
            self.ca = self.ca or self.ops.secret(self.config.ca_certificate)
            if self.ca is None:
                raise AcmeFailed(f"CACertificate names no Docker secret {self.config.ca_certificate!r}; create it")
            ca_path = self.directory / self.ca.name
            if not ca_path.is_file():
                self.wake_reconciler()
                return None
            ca = str(ca_path)
        key = self._account_key()
        self._client = self.client(key, ca)
        return self._client

    def _account_key(self) -> bytes:
        mounted = self.directory / self.account.name if self.account else None
        if mounted is not None and mounted.is_file():
            return mounted.read_bytes()
        if self.account is not None:
            self.stale.append(self.account)  # made by a core that stopped before mounting it
        key = new_key("ec256")
        name = f"{ACME_SECRET_PREFIX}account-{Certificate.of('', key.decode()).id[:12]}"
        self.account = self.ops.create_secret(name, key, {LABEL_OWNER: self.owner, LABEL_ACME: ACCOUNT})
        return key

    def _store(self, issued: Issued) -> Held:
        certificate = Certificate.of(issued.chain, issued.key)
        base = f"{ACME_SECRET_PREFIX}{certificate.id[:12]}"
        labels = {
            LABEL_OWNER: self.owner,
            LABEL_ACME: ",".join(issued.names),
            LABEL_ACME_NOT_AFTER: str(int(issued.not_after)),
        }
        cert = self.ops.create_secret(f"{base}-cert", issued.chain.encode(), {**labels, LABEL_ACME_PART: "cert"})
        key = self.ops.create_secret(f"{base}-key", issued.key.encode(), {**labels, LABEL_ACME_PART: "key"})
        return Held(issued.names, cert, key, issued.not_after)

    def tidy(self) -> None:
        """Remove superseded secrets, and expired ones no host wants; Docker refuses while a
        task still mounts one (then next time)."""
        wanted, now = self.wanted(), self.clock.wall()
        for names in [n for n, h in self.held.items() if n not in wanted and h.not_after < now]:
            expired = self.held.pop(names)
            self.stale += [expired.cert, expired.key]
        kept = []
        for ref in self.stale:
            try:
                self.ops.remove_secret(ref.id)
            except DockerUnavailable:
                kept.append(ref)
        self.stale = kept

    def _publisher(self, names: Names, loop: asyncio.AbstractEventLoop) -> Publish:
        def publish(tokens: Mapping[str, str]) -> None:
            future = asyncio.run_coroutine_threadsafe(self._publish(names, dict(tokens)), loop)
            future.result(PROXIES_WAIT + 5)

        return publish

    async def _publish(self, names: Names, tokens: dict[str, str]) -> None:
        """Put `tokens` in the bundles of the clusters that route `names`; with tokens, wait
        until every proxy of each serves them."""
        extensions = [
            name
            for name, slot in self.board.slots.items()
            if slot.state and names in slot.state.routing.acme_names().values()
        ]
        for name in extensions:
            self.certificates.challenges[name] = tokens
        await self._refresh()
        if not tokens:
            return
        for name in extensions:
            tag = self.certificates.bundles[name].tag
            if not await self._served(name, tag):
                raise AcmeFailed(
                    f"the proxies of extension {name} did not serve the challenge within {PROXIES_WAIT:.0f} s"
                )

    async def _served(self, extension: str, tag: str) -> bool:
        slot = self.board.slots[extension]

        def waiting() -> bool:
            proxies = slot.report.proxies if slot.report else ()
            return not proxies or any(p.certificates != tag for p in proxies)

        deadline = self.clock.monotonic() + PROXIES_WAIT
        while waiting():
            if self.clock.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True
