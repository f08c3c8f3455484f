"""Run nginx beside the proxy agent and change its configuration safely.

`install(text, config_id)`: write the new file beside the live one, `nginx -t` it, swap it in
with an atomic rename, send HUP (nginx keeps its listening sockets and lets old workers finish),
then confirm the new configuration is live by asking nginx's loopback status port for its id,
and wait until the workers of the old configuration stop accepting connections. (nginx's master
lets old and new workers accept side by side for 100 ms after a reload, so until then a new
route can answer and then not answer.) On any failure the last good file is put back (and
reloaded if it had been swapped), so nginx always serves a configuration that passed `nginx -t`.

With dynamic upstreams the servers are in a separate targets document: `install` writes it
beside nginx.conf (nginx loads it with the configuration), and `update_targets` hands a new one
to the running nginx through the status port, with no reload. nginx runs with the work
directory as its prefix, where the Lua code finds the document and the control token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from interlock.constants import STATUS_PORT
from interlock.edges.nginx_check import VALIDATION_TIMEOUT
from interlock.errors import ConfigRejected, ReloadFailed
from interlock.render.targets import targets_delta

if TYPE_CHECKING:
    from interlock.edges.traffic_meter import TrafficMeter

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


class NginxController:
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
        self.nginx = nginx
        self.confirm_timeout = confirm_timeout
        self.check_timeout = check_timeout
        self.live = workdir / "nginx.conf"
        self.good = workdir / "nginx.conf.good"
        self.targets = workdir / "targets"
        self.good_targets = workdir / "targets.good"
        self.process: asyncio.subprocess.Process | None = None
        self.config_id = ""
        self.targets_id = ""
        self.targets_text = ""
        """The targets document nginx is confirmed to use."""
        self.reloads = 0
        self.target_updates = 0
        """Target-only changes applied without a reload: the reloads avoided."""
        self._token = ""

    @property
    def prefix(self) -> str:
        return f"{self.workdir}/"

    def _prepare(self) -> None:
        """The work directory and the token that authenticates our target updates. nginx's
        master reads the token (root only) when it loads its configuration."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        token_file = self.workdir / "control-token"
        if not self._token:
            self._token = secrets.token_urlsafe(32)
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self._token + "\n")

    async def _run(self, *args: str, timeout: float) -> tuple[int, str]:
        """Run nginx with `args`; killed, and a refusal, if it runs over `timeout` seconds."""
        proc = await asyncio.create_subprocess_exec(
            self.nginx, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ConfigRejected(f"nginx {' '.join(args[:1])} did not finish within {timeout:g} s; refused") from None
        return proc.returncode or 0, out.decode(errors="replace")

    async def test(self, path: Path) -> None:
        """`nginx -t` on `path`; a configuration nginx cannot check within `check_timeout`
        would not load in time either, so running over it is a refusal too."""
        code, output = await self._run(*self._check_arguments(path), timeout=self.check_timeout)
        if code != 0:
            raise ConfigRejected(output.strip())

    def _check_arguments(self, path: Path) -> tuple[str, ...]:
        """The proxy's own check of the configuration file `path`."""
        return ("-t", "-q", "-p", self.prefix, "-c", str(path))

    async def install(
        self,
        text: str,
        config_id: str,
        targets: str = "",
        targets_id: str = "",
        certificates: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Make `text` (and its targets document) live, or raise with the live ones unchanged.
        (nginx reads the `certificates` pairs from the mounted secrets itself.)"""
        self._prepare()
        candidate = self.live.with_name(self.live.name + ".next")
        candidate.write_text(text)
        await self.test(candidate)
        self._swap_targets(targets)
        if self.live.exists():
            os.replace(self.live, self.good)
        os.replace(candidate, self.live)
        try:
            old_workers: set[int] = set()
            if self.running:
                old_workers = self._reload()
            else:
                await self.start()
            await self.confirm(config_id)
            if targets_id:
                await self._confirm_targets(targets_id)
        except (ReloadFailed, OSError) as exc:
            await self._restore(exc)
            raise ReloadFailed(str(exc)) from exc
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
        self._swap_targets(targets)
        url = f"http://127.0.0.1:{STATUS_PORT}/interlock/targets"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    url,
                    data=delta.encode(),
                    headers={"Authorization": f"Bearer {self._token}"},
                    timeout=aiohttp.ClientTimeout(total=self.confirm_timeout),
                ) as response,
            ):
                answer = (await response.text()).strip()
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            answer, status = str(exc), 0
        if status != 200 or answer != targets_id:
            if self.good_targets.exists():
                os.replace(self.good_targets, self.targets)
            raise ReloadFailed(f"nginx did not take targets {targets_id}: {status} {answer[:500]}")
        self.targets_id, self.targets_text = targets_id, targets
        self.target_updates += 1

    def _reload(self) -> set[int]:
        """Tell the running nginx to load the live file; returns the workers that accepted
        connections before (HUP: nginx keeps its sockets, old workers finish their requests)."""
        assert self.process is not None
        old_workers = accepting_workers(self.process.pid)
        self._signal(signal.SIGHUP)
        return old_workers

    def _swap_targets(self, targets: str) -> None:
        """Make `targets` the targets file (atomic rename), keeping the previous as the good one."""
        next_targets = self.workdir / "targets.next"
        next_targets.write_text(targets)
        if self.targets.exists():
            os.replace(self.targets, self.good_targets)
        os.replace(next_targets, self.targets)

    async def _confirm_targets(self, targets_id: str) -> None:
        seen = await self._poll_status("/interlock/targets", targets_id)
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

    async def _restore(self, cause: BaseException) -> None:
        log.error("new configuration did not go live (%s); restoring the last good one", cause)
        if self.good_targets.exists():
            os.replace(self.good_targets, self.targets)
        if self.good.exists():
            os.replace(self.good, self.live)
            if self.running:
                self._reload()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def exited(self) -> bool:
        """nginx was started and has exited since (it never should on its own)."""
        return self.process is not None and self.process.returncode is not None

    async def start(self) -> None:
        # nginx runs in the foreground as our child; its logs go to the container's output.
        self.process = await asyncio.create_subprocess_exec(
            self.nginx, "-p", self.prefix, "-c", str(self.live), "-g", "daemon off;"
        )

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def confirm(self, config_id: str) -> None:
        """Poll nginx's loopback status port until it answers `config_id`."""
        seen = await self._poll_status("/interlock/config", config_id)
        if seen != config_id:
            raise ReloadFailed(f"nginx still answers configuration {seen or 'nothing'!r}, not {config_id!r}")

    async def _poll_status(self, path: str, expected: str) -> str:
        """GET `path` on the loopback status port until it answers `expected` or confirm_timeout
        passes; returns the last answer. Raises ReloadFailed if nginx exits meanwhile."""
        deadline = time.monotonic() + self.confirm_timeout
        url = f"http://127.0.0.1:{STATUS_PORT}{path}"
        seen = ""
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise ReloadFailed(f"nginx exited with status {self.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        seen = (await response.text()).strip()
                        if seen == expected:
                            return seen
                await asyncio.sleep(0.02)
        return seen

    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None:
        """Graceful stop: QUIT lets workers finish their requests."""
        if not self.running:
            return
        self._signal(sig)
        assert self.process is not None
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await self.process.wait()
