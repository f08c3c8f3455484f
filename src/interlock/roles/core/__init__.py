"""The core: the only role with the Docker socket, on a manager. A thin composition root.

    Watcher (Docker events -> snapshot) -> Board (snapshot -> cluster states, reports, status)
                                             |-> CoreApi (HTTP for extensions and the operator)
                                             '-> Reconciler (extension and proxy services)

`Core` wires the parts for one process; `run_core` adds what a real deployment needs: the core's
own service name, the control tokens (created and mounted on a manual install), the listener.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web

from interlock.config import CoreConfig
from interlock.config.schema import AcmeConfig
from interlock.constants import (
    CERTIFICATES_MOUNT,
    CORE_IDENTITY,
    CORE_SERVICE,
    LABEL_OWNER,
    METRICS_PORT,
    OPERATOR_TOKEN,
    SECRETS_DIR,
    SERVER_TLS,
    SWARM_SERVICE_NAME_LABEL,
    extension_token_secret,
)
from interlock.edges.acme_client import AcmeAccount
from interlock.edges.clock import Clock, SystemClock
from interlock.edges.docker_source import SwarmSource
from interlock.edges.listen import role_listeners
from interlock.edges.metrics_http import serve_metrics
from interlock.edges.peer_http import read_token
from interlock.edges.role_identities import ensure_identities
from interlock.edges.role_tls import mounted_server_context
from interlock.edges.swarm_ops import SwarmOps, SwarmWriter, ensure_tokens
from interlock.errors import DockerUnavailable, InterlockError
from interlock.model.snapshot import Snapshot
from interlock.roles.core.acme import AcmeClient, AcmeDesk
from interlock.roles.core.api import CoreApi
from interlock.roles.core.board import Board
from interlock.roles.core.certificates import CertificateDesk
from interlock.roles.core.reconciler import Reconciler
from interlock.roles.core.watcher import Offload, Watcher
from interlock.roles.runtime import until_stopped
from interlock.swarm.desired import all_tokens, core_tokens, tls_identities

log = logging.getLogger("interlock.core")

__all__ = ["Core", "core_url_for", "run_core"]


class Core:
    """The parts of one core process, wired: what the watcher sees is published on the board,
    and every new snapshot wakes the reconciler. Without `ops` (unit tests, dry runs) nothing
    is reconciled and services are not held back for the proxies."""

    def __init__(
        self,
        config: CoreConfig,
        source: SwarmSource,
        ops: SwarmWriter | None,
        *,
        service_name: str,
        extension_tokens: Mapping[str, str],
        operator_token: str,
        core_url: str,
        clock: Clock | None = None,
        offload: Offload = asyncio.to_thread,
        certificates_dir: Path = Path(SECRETS_DIR) / CERTIFICATES_MOUNT,
        plain_keys: bool = False,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.offload = offload
        self._notifying: set[asyncio.Task[None]] = set()
        self.board = Board(config, gate_on_proxies=ops is not None, service_name=service_name, clock=self.clock)
        self.certificates = CertificateDesk(self.board, certificates_dir)
        self.watcher = Watcher(
            source,
            self._on_snapshot,
            poll_interval=config.poll_interval_seconds,
            clock=self.clock,
            offload=offload,
            proxies=frozenset(config.proxy_service_name(name) for name in config.extensions),
        )
        self.reconciler = (
            Reconciler(config, ops, self.board, owner=service_name, core_url=core_url) if ops is not None else None
        )
        self.acme = (
            AcmeDesk(
                config.acme,
                self.board,
                self.certificates,
                ops,
                owner=service_name,
                client=acme_client(config.acme),
                clock=self.clock,
                offload=offload,
                wake_reconciler=self.wake_reconciler,
            )
            if config.acme is not None and ops is not None
            else None
        )
        if self.acme is not None and self.reconciler is not None:
            self.reconciler.more_mounts = self.acme.mounts
        self.api = CoreApi(
            self.board,
            self.certificates,
            extension_tokens=extension_tokens,
            operator_token=operator_token,
            is_ready=lambda: self.watcher.ready,
            on_config=self.wake_reconciler,
            listen_addr=config.listen_addr,
            plain_keys=plain_keys,
        )
        if self.acme is not None:
            self.api.acme_expiries = self.acme.expiries

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        changed = self.board.publish(snapshot)
        if self.certificates.read() or changed:
            # Waking the long-polls needs the condition's lock, so it runs as a task; kept
            # referenced until done (the loop holds tasks only weakly).
            task = asyncio.get_running_loop().create_task(self.board.notify())
            self._notifying.add(task)
            task.add_done_callback(self._notifying.discard)
        self.wake_reconciler()
        if self.acme is not None:
            self.acme.wake.set()

    def wake_reconciler(self) -> None:
        if self.reconciler is not None:
            self.reconciler.wake.set()

    async def run(self) -> None:
        parts = [self.watcher.run()]
        if self.reconciler is not None:
            parts.append(self.reconciler.run(self.clock, lambda: self.watcher.ready, self.offload))
        if self.acme is not None:
            parts.append(self.acme.run())
        await asyncio.gather(*parts)


def acme_client(config: AcmeConfig) -> Callable[[bytes, str | None], AcmeClient]:
    """The production ACME client: an account on `config`'s server."""

    def account(key: bytes, ca_bundle: str | None) -> AcmeClient:
        return AcmeAccount(config.directory, config.email, key, ca_bundle=ca_bundle)

    return account


def own_service_name(ops: SwarmOps | None) -> str:
    if os.environ.get("INTERLOCK_SERVICE_NAME"):
        return os.environ["INTERLOCK_SERVICE_NAME"]
    if ops is not None:
        try:
            return ops.container_labels(socket.gethostname()).get(SWARM_SERVICE_NAME_LABEL, CORE_SERVICE)
        except DockerUnavailable:
            pass
    return CORE_SERVICE


def bootstrap_tokens(ops: SwarmWriter, service_name: str, config: CoreConfig) -> None:
    """Started without its control tokens or TLS key mounted (a manual install, or an extension
    added to the configuration): create every token and TLS secret `config` needs and update our
    own service to mount the core's; Swarm then replaces this task."""
    labels = {LABEL_OWNER: service_name}
    tokens = ensure_tokens(ops, all_tokens(config), labels)
    tls = ensure_identities(ops, tls_identities(config), labels)[CORE_IDENTITY].key
    wanted = [(tokens[name], name) for name in core_tokens(config)] + [(tls, SERVER_TLS)]
    log.info("mounting control tokens into %s; Swarm restarts this task", service_name)
    if not ops.mount_secrets(service_name, wanted):
        raise InterlockError(f"control tokens are not mounted and service {service_name!r} was not found")


def core_url_for(config: CoreConfig, service_name: str) -> str:
    """Where extensions reach the core: EndpointOverride, else the service's tasks on ListenAddr's port."""
    url = config.endpoint_override or f"http://tasks.{service_name}:{config.listen_port}"
    return url if "://" in url else "http://" + url


async def run_core(config: CoreConfig, *, source: SwarmSource, ops: SwarmOps) -> None:
    service_name = own_service_name(ops)
    token_dir = Path(SECRETS_DIR)
    if not all((token_dir / name).exists() for name in (*core_tokens(config), SERVER_TLS)):
        await asyncio.to_thread(bootstrap_tokens, ops, service_name, config)
        await asyncio.Event().wait()
    core_url = core_url_for(config, service_name)
    core = Core(
        config,
        source,
        ops,
        service_name=service_name,
        extension_tokens={name: read_token(token_dir / extension_token_secret(name)) for name in config.extensions},
        operator_token=read_token(token_dir / OPERATOR_TOKEN),
        core_url=core_url,
    )
    runner = web.AppRunner(core.api.app(), access_log=None)
    await runner.setup()
    tls = mounted_server_context(token_dir)
    # An explicit ListenAddr host is the operator's; otherwise loopback and the control network.
    listeners = role_listeners(os.environ)
    for host in (config.listen_host,) if config.listen_host else listeners.api:
        await web.TCPSite(runner, host, config.listen_port, ssl_context=tls).start()
    if config.listen_port != METRICS_PORT:
        await serve_metrics(METRICS_PORT, listeners.metrics)
    log.info(
        "core %s listening on %s (%s); extensions reach it at %s",
        service_name,
        config.listen_addr,
        ", ".join(listeners.api),
        core_url,
    )
    await until_stopped(core.run())
