"""What the proxy controllers share, by composition: a file replaced atomically with its last
good copy kept (`KeptFile`), and the proxy process run as the agent's child (`ProxyProcess`):
its check command under a deadline, start, signals, a graceful stop, the loopback status port
polled for the id it answers, and the install sequence every kind follows (write beside the live
file, check, swap with an atomic rename, make live, confirm; on any failure put the good files
back). Knows no proxy kind: each controller passes its own commands and steps. Imports no
controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from interlock.constants import STATUS_PORT, VALIDATION_TIMEOUT
from interlock.errors import ConfigRejected, ReloadFailed

log = logging.getLogger("interlock.proxy")


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, readable by root alone (the proxy's master reads it),
    atomically: for certificates, keys and the control token."""
    staged = path.with_name(path.name + ".next")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(staged, path)


class KeptFile:
    """A file the proxy reads, replaced with an atomic rename; the content it replaced is kept
    beside it (`NAME.good`) until the replacement is confirmed, to be put back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.good = path.with_name(path.name + ".good")

    def stage(self, text: str) -> Path:
        """`text` written beside the live file, not yet in its place."""
        candidate = self.path.with_name(self.path.name + ".next")
        candidate.write_text(text)
        return candidate

    def take(self, candidate: Path) -> None:
        """Put the staged `candidate` in place, keeping the current file as the good copy."""
        if self.path.exists():
            os.replace(self.path, self.good)
        os.replace(candidate, self.path)

    def replace(self, text: str) -> None:
        self.take(self.stage(text))

    def put_back(self) -> bool:
        """The good copy back in place; False when there is none."""
        if not self.good.exists():
            return False
        os.replace(self.good, self.path)
        return True


@dataclass(frozen=True, slots=True)
class ProxyCommands:
    """How one proxy program is run, checked and signalled."""

    name: str
    """The program's name in messages: `nginx`, `haproxy`."""
    binary: str
    run: Callable[[Path], Sequence[str]]
    """Its arguments to serve the live configuration file in the foreground."""
    check: Callable[[Path], Sequence[str]]
    """Its arguments to check a configuration file and exit."""
    reload: signal.Signals
    stop_signals: Mapping[signal.Signals, signal.Signals] = field(default_factory=dict)
    """The proxy's own signal for each of nginx's (QUIT: graceful, TERM: fast)."""


class ProxyProcess:
    """The proxy program as the agent's child, serving `config.path`."""

    def __init__(
        self,
        commands: ProxyCommands,
        config: KeptFile,
        *,
        confirm_timeout: float = 10.0,
        check_timeout: float = VALIDATION_TIMEOUT,
    ) -> None:
        self.commands = commands
        self.config = config
        self.confirm_timeout = confirm_timeout
        self.check_timeout = check_timeout
        self.process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def exited(self) -> bool:
        """The proxy was started and has exited since (it never should on its own)."""
        return self.process is not None and self.process.returncode is not None

    async def check(self, path: Path) -> None:
        """The proxy's own check of `path`; a configuration it cannot check within
        `check_timeout` would not load in time either, so running over it is a refusal too."""
        arguments = self.commands.check(path)
        proc = await asyncio.create_subprocess_exec(
            self.commands.binary, *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.check_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ConfigRejected(
                f"{self.commands.name} {arguments[0]} did not finish within {self.check_timeout:g} s; refused"
            ) from None
        if proc.returncode:
            raise ConfigRejected(out.decode(errors="replace").strip())

    async def start(self, env: Mapping[str, str] | None = None, log_file: Path | None = None) -> None:
        """Run the proxy in the foreground as our child; its output goes to the agent's (the
        container's log) or is appended to `log_file`."""
        arguments = (self.commands.binary, *self.commands.run(self.config.path))
        if log_file is None:
            self.process = await asyncio.create_subprocess_exec(*arguments, env=env)
            return
        with log_file.open("ab") as output:
            self.process = await asyncio.create_subprocess_exec(*arguments, stdout=output, stderr=output, env=env)

    def send(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    def reload(self) -> None:
        """Tell the running proxy to load the live file."""
        self.send(self.commands.reload)

    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None:
        """Stop with `sig` as nginx names it (QUIT: let requests finish); killed after `timeout`."""
        if not self.running:
            return
        self.send(self.commands.stop_signals.get(sig, sig))
        assert self.process is not None
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.send(signal.SIGKILL)
            await self.process.wait()

    async def poll_status(self, path: str, expected: str) -> str:
        """GET `path` on the loopback status port until it answers `expected` or confirm_timeout
        passes; returns the last answer. Raises ReloadFailed if the proxy exits meanwhile."""
        deadline = time.monotonic() + self.confirm_timeout
        url = f"http://127.0.0.1:{STATUS_PORT}{path}"
        seen = ""
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.exited:
                    assert self.process is not None
                    raise ReloadFailed(f"{self.commands.name} exited with status {self.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        seen = (await response.text()).strip()
                        if seen == expected:
                            return seen
                await asyncio.sleep(0.02)
        return seen

    async def confirm(self, config_id: str) -> None:
        """Poll the status port until the proxy answers `config_id`."""
        seen = await self.poll_status("/interlock/config", config_id)
        if seen != config_id:
            raise ReloadFailed(
                f"{self.commands.name} still answers configuration {seen or 'nothing'!r}, not {config_id!r}"
            )

    async def install(
        self,
        text: str,
        *,
        go_live: Callable[[], Awaitable[None]],
        companions: Sequence[tuple[KeptFile, str]] = (),
    ) -> None:
        """Check `text`, then make it (and each companion file's text) the live files and run
        `go_live` (reload or start, then confirm). On any failure of `go_live` every file is put
        back, the proxy is told to load them again, and ReloadFailed is raised."""
        candidate = self.config.stage(text)
        await self.check(candidate)
        for companion, companion_text in companions:
            companion.replace(companion_text)
        self.config.take(candidate)
        try:
            await go_live()
        except (ReloadFailed, OSError) as exc:
            log.error("new configuration did not go live (%s); restoring the last good one", exc)
            for companion, _ in companions:
                companion.put_back()
            if self.config.put_back() and self.running:
                self.reload()
            raise ReloadFailed(str(exc)) from exc
