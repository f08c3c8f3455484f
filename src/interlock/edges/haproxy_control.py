"""Run HAProxy beside the proxy agent and change its configuration safely (`Kind = "haproxy"`).

The same contract as `NginxController`, and the same install sequence (`ProxyProcess.install`):
the new file is written beside the live one and checked with `haproxy -c`, swapped in with an
atomic rename, and made live by a reload; the reload is confirmed by asking the status frontend
for the configuration's id; on any failure the last good file is put back. HAProxy runs in
master-worker mode in the foreground (`-W -db`), as the agent's child: SIGUSR2 makes the master
start a new worker on the live file, which takes over the listening sockets (`expose-fd
listeners` on the admin socket, so no connection is refused meanwhile), while the old worker
finishes its connections (bounded by `hard-stop-after`). Certificates come apart from the
configuration (`update_certificates`): one combined PEM a host and the crt-list the TLS frontend
binds, 0400 files in the proxy's tmpfs that every reload and restart reads, and, in the running
HAProxy, the same change through the runtime API (`new`/`set`/`commit ssl cert`, `add`/`del ssl
crt-list`): no reload. Wraps haproxy only; imports no other kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from interlock.constants import ADMIN_PASS_ENV, ADMIN_PASS_FILE, VALIDATION_TIMEOUT
from interlock.edges import haproxy_slot_moves
from interlock.edges.offline_check import stand_in_pem
from interlock.edges.proxy_process import KeptFile, ProxyCommands, ProxyProcess, write_private
from interlock.edges.traffic_meter import TrafficMeter
from interlock.errors import ReloadFailed
from interlock.render.haproxy_certificates import (
    ACME_MAP,
    CERTIFICATES_DIR,
    CRT_LIST,
    DRAINING,
    FALLBACK_PEM,
    STATE_MAP,
    acme_map,
    combined_pem,
    crt_list,
    crt_list_line,
    pem_name,
)
from interlock.render.haproxy_slots import ADMIN_SOCKET, with_targets
from interlock.wire.certificates import DEFAULT_TLS_HOST, CertificateBundle

_CERTIFICATE_REFUSALS = ("Can't", "unable", "Unknown command", "No ongoing", "does not exist", "already exists", "rror")
"""What the runtime API's answers to the `ssl cert` and `ssl crt-list` commands say when it did
not do it."""

log = logging.getLogger("interlock.agent")


def requests_in_flight(show_sess: str) -> list[str]:
    """The requests HAProxy is handling, as `show sess` lists them (its streams, but the runtime
    API's own and the status port's); an idle kept-alive connection has none."""
    return [
        line[:300]
        for line in show_sess.splitlines()
        if " fe=" in line and " fe=GLOBAL " not in line and " fe=interlock_status " not in line
    ]


def admin_env(secrets_dir: Path) -> dict[str, str]:
    """HAProxy's environment: the agent's, and the stats page's password from `AdminPassSecret`
    (mounted as ADMIN_PASS_FILE) where there is one; haproxy.cfg names the variable, never the
    password."""
    env = dict(os.environ)
    secret = secrets_dir / ADMIN_PASS_FILE
    if secret.is_file():
        env[ADMIN_PASS_ENV] = secret.read_text().strip()
    return env


def _haproxy_commands(binary: str) -> ProxyCommands:
    return ProxyCommands(
        name="haproxy",
        binary=binary,
        run=lambda live: ("-W", "-db", "-f", str(live)),
        check=lambda path: ("-c", "-f", str(path)),
        # The master starts a new worker on the live file; the old one stops accepting at once
        # (the new one has the sockets) and finishes its connections.
        reload=signal.SIGUSR2,
        # nginx's graceful stop (QUIT) is HAProxy's soft stop (USR1): finish, then exit. TERM is
        # the fast stop on both.
        stop_signals={signal.SIGQUIT: signal.SIGUSR1},
    )


def write_certificate_files(
    directory: Path, bundle: CertificateBundle | None, written: CertificateBundle | None = None
) -> None:
    """In `directory`: the PEM of every host of `bundle`, the fallback and the crt-list, 0400
    (the master reads them as root), in a directory only root may enter; PEMs of hosts gone are
    removed. A host whose certificate is the one `written` (the bundle the files hold) gave it
    is not written again."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not (directory / FALLBACK_PEM).exists():
        write_private(directory / FALLBACK_PEM, stand_in_pem().encode())
    by_host = bundle.by_host() if bundle else {}
    held = written.by_host() if written else {}
    wanted = {FALLBACK_PEM, CRT_LIST, ACME_MAP, STATE_MAP}
    write_private(directory / ACME_MAP, acme_map(bundle).encode())
    if not (directory / STATE_MAP).exists():
        write_private(directory / STATE_MAP, b"")
    for host, certificate in by_host.items():
        wanted.add(pem_name(host))
        if host not in held or held[host].id != certificate.id or not (directory / pem_name(host)).exists():
            write_private(directory / pem_name(host), combined_pem(certificate).encode())
    write_private(directory / CRT_LIST, crt_list(bundle, str(directory)).encode())
    for stale in directory.iterdir():
        if stale.name not in wanted and not stale.name.endswith(".next"):
            stale.unlink(missing_ok=True)


class HAProxyController:
    """HAProxy as the agent's `ProxyControl`: its process and file through `ProxyProcess`."""

    kind = "HAProxy"

    def __init__(
        self,
        workdir: Path,
        *,
        haproxy: str = "haproxy",
        secrets_dir: Path = Path("/run/secrets"),
        certificates_dir: Path = Path(CERTIFICATES_DIR),
        confirm_timeout: float = 10.0,
        check_timeout: float = VALIDATION_TIMEOUT,
        log: Path | None = None,
    ) -> None:
        """`log`: a file HAProxy's log (its standard output: requests, reloads) is appended to;
        None leaves it on the agent's standard output, where the container's log has it."""
        self.workdir = workdir
        self.confirm_timeout = confirm_timeout
        self.proxy = ProxyProcess(
            _haproxy_commands(haproxy),
            KeptFile(workdir / "haproxy.cfg"),
            confirm_timeout=confirm_timeout,
            check_timeout=check_timeout,
        )
        self.log = log
        self.secrets_dir = secrets_dir
        self.certificates_dir = certificates_dir
        self.admin_socket = Path(ADMIN_SOCKET)
        self.config_id = ""
        self.targets_id = ""
        self.targets_text = ""
        """The servers HAProxy is confirmed to use."""
        self.reloads = 0
        self.target_updates = 0
        """Task moves applied through the runtime API: the reloads avoided."""
        self.certificates: CertificateBundle | None = None
        """The certificates the files hold and the running HAProxy serves."""
        self.changing = asyncio.Lock()
        """Held by a reload until it is confirmed, and by each run-time change: one made while
        the master loads the files would reach only the old worker, and the new one would start
        without it (a drain lost, so a load balancer sent requests to a proxy about to stop)."""

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

    async def install(self, text: str, config_id: str, targets: str = "", targets_id: str = "") -> None:
        """Check, swap, reload and confirm `text`, which carries its servers in its own text
        (and loads the certificates the files hold)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.certificates_dir / CRT_LIST).exists():
            # The first configuration: the files of the certificates held (or none) for it to load;
            # afterwards update_certificates keeps them.
            write_certificate_files(self.certificates_dir, self.certificates)

        async def go_live() -> None:
            if self.running:
                self._reload()
            else:
                await self.start()
            await self.proxy.confirm(config_id)

        async with self.changing:
            await self.proxy.install(text, go_live=go_live)
        self.config_id, self.targets_id, self.targets_text = config_id, targets_id, targets
        self.reloads += 1

    def _reload(self) -> None:
        self.proxy.reload()

    async def update_certificates(self, bundle: CertificateBundle) -> None:
        """Write the files of `bundle` (for every later reload and restart), then change the
        running HAProxy's certificates through its runtime API: a rotated certificate is
        replaced in place, a new host's is added to the crt-list and a removed host's taken out.
        A running configuration without a TLS frontend has no crt-list: the files are enough."""
        async with self.changing:
            previous = self.certificates
            write_certificate_files(self.certificates_dir, bundle, previous)
            if self.running:
                try:
                    await self._change_certificates(previous, bundle)
                except ReloadFailed:
                    # What every later reload or restart reads stays what the running HAProxy has.
                    write_certificate_files(self.certificates_dir, previous, bundle)
                    raise
            self.certificates = bundle

    async def _change_certificates(self, previous: CertificateBundle | None, bundle: CertificateBundle) -> None:
        before = previous.by_host() if previous else {}
        after = bundle.by_host()
        directory = str(self.certificates_dir)
        listed = f"{directory}/{CRT_LIST}"
        for host, certificate in after.items():
            if host in before and before[host].id == certificate.id:
                continue
            path = f"{directory}/{pem_name(host)}"
            if host not in before:
                await self._runtime_ok(f"new ssl cert {path}", host, fine="already exists")
            # A payload ends at an empty line: the PEM's last line, then the one runtime() adds.
            await self._runtime_ok(f"set ssl cert {path} <<\n{combined_pem(certificate).rstrip()}\n", host)
            await self._runtime_ok(f"commit ssl cert {path}", host)
            if host not in before and host != DEFAULT_TLS_HOST:
                # No crt-list yet (the running configuration has no TLS host): the files suffice.
                line = crt_list_line(directory, host)
                await self._runtime_ok(f"add ssl crt-list {listed} <<\n{line}\n", host, fine="does not exist")
        for host in before.keys() - after.keys():
            path = f"{directory}/{pem_name(host)}"
            await self.runtime(f"del ssl crt-list {listed} {path}")
            await self.runtime(f"del ssl cert {path}")
        # ACME challenges: a configuration without AcmeChallenges has no such map, and refuses
        # these; the challenge then fails and the core says so.
        challenges = f"{directory}/{ACME_MAP}"
        held = dict(previous.challenges) if previous else {}
        for token, answer in bundle.challenges:
            if held.get(token) != answer:
                await self.runtime(f"add map {challenges} {token} {answer}")
        for token in held.keys() - dict(bundle.challenges).keys():
            await self.runtime(f"del map {challenges} {token}")

    async def set_draining(self, draining: bool) -> None:
        """/_interlock/health answers 503 from now on, or 200 again: `draining` in the state
        map or not, at run time (and in its file, should HAProxy be reloaded meanwhile)."""
        state = self.certificates_dir / STATE_MAP
        async with self.changing:
            write_private(state, f"{DRAINING} 1\n".encode() if draining else b"")
            answer = await self.runtime(f"add map {state} {DRAINING} 1" if draining else f"del map {state} {DRAINING}")
        taken_back_twice = not draining and "not found" in answer.lower()
        if answer.strip() and not taken_back_twice:
            change = "start" if draining else "stop"
            raise ReloadFailed(f"haproxy did not {change} draining: {' '.join(answer.split())[:300]}")

    async def _runtime_ok(self, command: str, host: str, *, fine: str = "") -> None:
        """`command` through the runtime API; ReloadFailed when HAProxy did not do it (an answer
        holding `fine` is no refusal)."""
        answer = await self.runtime(command)
        if any(word in answer for word in _CERTIFICATE_REFUSALS) and not (fine and fine in answer):
            said, what = " ".join(answer.split())[:300], command.split(" <<", maxsplit=1)[0]
            raise ReloadFailed(f"haproxy refused the certificate of {host} ({what}): {said}")

    async def update_targets(self, targets: str, targets_id: str) -> None:
        """Move tasks without a reload: fill, change or empty server slots of the running
        HAProxy through its runtime API (`haproxy_slot_moves`: tasks keep their slots, and a
        slot takes another task only once no request uses it), and write them into the live
        file too (`with_targets`), for a restart. The configuration's id is unchanged, so every
        backend has the slots it had; anything the API refuses is a ReloadFailed (the agent then
        reloads with the whole configuration). Many moves at once go as several command lines,
        each within HAProxy's line buffer."""
        if not self.running:
            raise ReloadFailed("haproxy is not running")
        try:
            moves = haproxy_slot_moves.plan(self.targets_text, targets)
        except ValueError as exc:
            raise ReloadFailed(f"targets {targets_id} not usable at run time: {exc}") from exc
        try:
            await haproxy_slot_moves.apply(moves, self.runtime)
        except ReloadFailed as exc:
            raise ReloadFailed(f"targets {targets_id}: {exc}") from exc
        self.targets_id, self.targets_text = targets_id, moves.placed
        self.target_updates += 1
        # The live file follows, so an HAProxy that restarts serves these servers, not the last
        # reload's; in a thread (about 0.1 s at 10,000 hosts), off the agent's event loop.
        await asyncio.to_thread(self._keep_targets, moves.placed)

    def _keep_targets(self, targets: str) -> None:
        if self.live.exists():
            candidate = self.live.with_name(self.live.name + ".next")
            candidate.write_text(with_targets(self.live.read_text(), targets))
            os.replace(candidate, self.live)

    async def poll_traffic(self, meter: TrafficMeter) -> None:
        """Read HAProxy's own counters (`show stat` on its runtime API)."""
        await meter.poll_haproxy(self.runtime)

    async def runtime(self, command: str) -> str:
        """One command line to the runtime API; its whole answer."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.admin_socket)), 5)
            writer.write(command.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), self.confirm_timeout)
            writer.close()
        except (OSError, TimeoutError) as exc:
            raise ReloadFailed(f"haproxy's runtime API did not answer: {exc!r}") from exc
        return answer.decode(errors="replace")

    async def start(self) -> None:
        await self.proxy.start(env=admin_env(self.secrets_dir), log_file=self.log)

    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None:
        """Graceful stop (QUIT): the requests in flight finish, then HAProxy stops. Not HAProxy's
        soft stop: with `idle-close-on-response` (which spares a reload's kept-alive clients a
        closed connection) a soft-stopping HAProxy keeps every idle connection open until its
        next request, so a drained proxy, which gets none, waited for Swarm to kill it."""
        if sig != signal.SIGQUIT or not self.running:
            await self.proxy.stop(sig, timeout)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline, said = started + timeout, started + 1.0
        while loop.time() < deadline and (in_flight := await self._requests_in_flight()):
            if loop.time() > said:
                # Why a stop takes long (Swarm kills after ProxyStopGracePeriod): which streams.
                log.info("stopping: %d requests still in flight: %s", len(in_flight), " | ".join(in_flight[:3]))
                said = loop.time() + 1.0
            await asyncio.sleep(0.05)
        log.info("stopping: no request in flight after %.1fs; HAProxy stops (TERM)", loop.time() - started)
        await self.proxy.stop(signal.SIGTERM, max(1.0, deadline - loop.time()))

    async def _requests_in_flight(self) -> list[str]:
        """`requests_in_flight` of HAProxy now; none when it does not answer."""
        try:
            return requests_in_flight(await self.runtime("show sess"))
        except ReloadFailed:
            return []
