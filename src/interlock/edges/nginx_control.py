"""Run nginx beside the proxy agent and change its configuration safely.

`install(text, config_id)` (the sequence is `ProxyProcess.install`): write the new file beside
the live one, `nginx -t` it, swap it in with an atomic rename, send HUP (nginx keeps its
listening sockets and lets old workers finish), then confirm the new configuration is live by
asking nginx's loopback status port for its id, and wait until the workers of the old
configuration stop accepting connections. (nginx's master
lets old and new workers accept side by side for 100 ms after a reload, so until then a new
route can answer and then not answer.) On any failure the last good file is put back (and
reloaded if it had been swapped), so nginx always serves a configuration that passed `nginx -t`.

The hosts, routes and servers are in a separate targets document: `install` writes it beside
nginx.conf (nginx loads it with the configuration), and `update_targets` hands a new one to the
running nginx through the status port, with no reload. The certificates are a document of their
own (`update_certificates`): a 0400 file in the work directory (the proxy's tmpfs) for nginx's
next start, and posted to the running nginx, which serves them by SNI from the next handshake.
nginx runs with the work directory as its prefix, where the Lua code finds the documents, the
control token and the fallback certificate. Imports no other kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from interlock.constants import STATUS_PORT, VALIDATION_TIMEOUT
from interlock.edges.offline_check import stand_in_pem
from interlock.edges.proxy_process import KeptFile, ProxyCommands, ProxyProcess, write_private
from interlock.errors import ReloadFailed
from interlock.render.nginx_certificates import CERTIFICATES_FILE, FALLBACK_CERTIFICATE, certificates_document
from interlock.render.targets import targets_delta

if TYPE_CHECKING:
    from interlock.edges.traffic_meter import TrafficMeter
    from interlock.wire.certificates import CertificateBundle

log = logging.getLogger("interlock.nginx")

SHUTTING_DOWN = b"shutting down"
"""What nginx puts in a worker's process title once it has stopped accepting connections."""


def accepting_workers(master: int) -> set[int]:
    """The children of nginx's `master` process that may still accept connections: every child
    whose title does not say it is shutting down (nginx sets that title just before it closes
    the worker's listening sockets)."""
    pids = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                # The field after the parenthesised command name is the state, then the parent.
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
            if parent != master:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                if SHUTTING_DOWN in cmdline.read():
                    continue
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        pids.add(int(entry.name))
    return pids


def _nginx_commands(binary: str, prefix: str) -> ProxyCommands:
    return ProxyCommands(
        name="nginx",
        binary=binary,
        run=lambda live: ("-p", prefix, "-c", str(live), "-g", "daemon off;"),
        check=lambda path: ("-t", "-q", "-p", prefix, "-c", str(path)),
        reload=signal.SIGHUP,
    )


class NginxController:
    """nginx as the agent's `ProxyControl`: its process and files through `ProxyProcess`."""

    kind = "nginx"

    def __init__(
        self,
        workdir: Path,
        *,
        nginx: str = "nginx",
        confirm_timeout: float = 10.0,
        check_timeout: float = VALIDATION_TIMEOUT,
    ) -> None:
        self.workdir = workdir
        self.confirm_timeout = confirm_timeout
        self.proxy = ProxyProcess(
            _nginx_commands(nginx, f"{workdir}/"),
            KeptFile(workdir / "nginx.conf"),
            confirm_timeout=confirm_timeout,
            check_timeout=check_timeout,
        )
        self.targets = KeptFile(workdir / "targets")
        self.config_id = ""
        self.targets_id = ""
        self.targets_text = ""
        """The targets document nginx is confirmed to use."""
        self.reloads = 0
        self.target_updates = 0
        """Target-only changes applied without a reload: the reloads avoided."""
        self._token = ""

    @property
    def live(self) -> Path:
        return self.proxy.config.path

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self.proxy.process

    @property
    def running(self) -> bool:
        return self.proxy.running

    @property
    def exited(self) -> bool:
        return self.proxy.exited

    def _prepare(self) -> None:
        """The work directory, the token that authenticates our updates and the fallback
        certificate. nginx's master reads the token (root only) when it loads its configuration."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._token:
            self._token = secrets.token_urlsafe(32)
            write_private(self.workdir / "control-token", (self._token + "\n").encode())
        fallback = self.workdir / FALLBACK_CERTIFICATE
        if not fallback.exists():
            write_private(fallback, stand_in_pem().encode())

    async def install(self, text: str, config_id: str, targets: str = "", targets_id: str = "") -> None:
        """Make `text` (and its targets document) live, or raise with the live ones unchanged."""
        self._prepare()
        old_workers: set[int] = set()

        async def go_live() -> None:
            if self.running:
                assert self.process is not None
                old_workers.update(accepting_workers(self.process.pid))
                self.proxy.reload()
            else:
                await self.proxy.start()
            await self.proxy.confirm(config_id)
            if targets_id:
                await self._confirm_targets(targets_id)

        await self.proxy.install(text, go_live=go_live, companions=((self.targets, targets),))
        await self._old_workers_stopped_accepting(old_workers)
        self.config_id, self.targets_id, self.targets_text = config_id, targets_id, targets
        self.reloads += 1

    async def poll_traffic(self, meter: TrafficMeter) -> None:
        """Read nginx's request counters (its Lua counters on the loopback status port)."""
        await meter.poll_nginx()

    async def update_targets(self, targets: str, targets_id: str) -> None:
        """Hand a new targets document to the running nginx without a reload (only the
        upstreams that changed are sent), or raise ReloadFailed. The file is written first (and
        put back if nginx refuses the change), so a restart loads the servers nginx uses."""
        if not self.running:
            raise ReloadFailed("nginx is not running")
        try:
            delta = targets_delta(self.targets_text, targets)
        except ValueError as exc:
            raise ReloadFailed(f"targets {targets_id} not usable: {exc}") from exc
        self._prepare()
        self.targets.replace(targets)
        status, answer = await self._post("/interlock/targets", delta.encode())
        if status != 200 or answer != targets_id:
            self.targets.put_back()
            raise ReloadFailed(f"nginx did not take targets {targets_id}: {status} {answer[:500]}")
        self.targets_id, self.targets_text = targets_id, targets
        self.target_updates += 1

    async def update_certificates(self, bundle: CertificateBundle) -> None:
        """Keep `bundle` for nginx's next start (a 0400 file its master reads) and hand it to the
        running nginx, which serves it from the next handshake: no reload. A configuration
        without TLS servers has no certificates endpoint (404): the file is read when one comes."""
        self._prepare()
        document = certificates_document(bundle)
        kept = self.workdir / CERTIFICATES_FILE
        previous = kept.read_bytes() if kept.exists() else b""
        write_private(kept, document)
        if self.running:
            status, answer = await self._post("/interlock/certificates", document)
            if status != 404 and (status != 200 or answer != bundle.tag):
                # What nginx's next start reads stays what the running nginx serves.
                write_private(kept, previous)
                raise ReloadFailed(f"nginx did not take certificates {bundle.tag}: {status} {answer[:500]}")

    async def set_draining(self, draining: bool) -> None:
        """/_interlock/health answers 503 from now on (lua/health.lua), or 200 again; every
        other request is served as before. A configuration without Lua has no drain: it answers
        200 to the end."""
        status, answer = await self._post("/interlock/drain", b"1" if draining else b"0")
        if status not in (200, 404):
            change = "start" if draining else "stop"
            raise ReloadFailed(f"nginx did not {change} draining: {status} {answer[:300]}")

    async def _post(self, path: str, body: bytes) -> tuple[int, str]:
        """POST `body` to nginx's loopback status port with our token: (status, answer); status
        0 when nginx did not answer."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{STATUS_PORT}{path}",
                    data=body,
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=aiohttp.ClientTimeout(total=self.confirm_timeout),
                ) as response,
            ):
                return response.status, (await response.text()).strip()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return 0, str(exc)

    async def _confirm_targets(self, targets_id: str) -> None:
        seen = await self.proxy.poll_status("/interlock/targets", targets_id)
        if seen != targets_id:
            raise ReloadFailed(f"nginx serves targets {seen or 'nothing'!r}, not {targets_id!r}")

    async def _old_workers_stopped_accepting(self, old_workers: set[int]) -> None:
        """Wait until none of `old_workers` accepts connections any more, so that once a
        configuration is reported live every new connection gets it. The new one is live
        already; an old worker that lingers past confirm_timeout is only logged."""
        deadline = time.monotonic() + self.confirm_timeout
        while self.process is not None and old_workers:
            old_workers &= accepting_workers(self.process.pid)
            if not old_workers:
                return
            if time.monotonic() >= deadline:
                log.warning("workers %s of the previous configuration still accept connections", sorted(old_workers))
                return
            await asyncio.sleep(0.01)

    async def start(self) -> None:
        await self.proxy.start()

    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None:
        """Graceful stop: QUIT lets workers finish their requests."""
        await self.proxy.stop(sig, timeout)
