"""Run nginx beside the proxy agent and change its configuration safely.

`install(text, config_id)`: write the new file beside the live one, `nginx -t` it, swap it in
with an atomic rename, send HUP (nginx keeps its listening sockets and lets old workers finish),
then confirm the new configuration is live by asking nginx's loopback status port for its id.
On any failure the last good file is put back (and reloaded if it had been swapped), so nginx
always serves a configuration that passed `nginx -t`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

import aiohttp

from interlock.errors import ConfigRejected, ReloadFailed
from interlock.render.nginx import STATUS_PORT

log = logging.getLogger("interlock.nginx")


class NginxController:
    def __init__(self, workdir: Path, *, nginx: str = "nginx", confirm_timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.nginx = nginx
        self.confirm_timeout = confirm_timeout
        self.live = workdir / "nginx.conf"
        self.good = workdir / "nginx.conf.good"
        self.process: asyncio.subprocess.Process | None = None
        self.config_id = ""
        self.reloads = 0

    async def _run(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self.nginx, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    async def test(self, path: Path) -> None:
        code, output = await self._run("-t", "-q", "-c", str(path))
        if code != 0:
            raise ConfigRejected(output.strip())

    async def install(self, text: str, config_id: str) -> None:
        """Make `text` the live configuration, or raise with the live one unchanged."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        candidate = self.workdir / "nginx.conf.next"
        candidate.write_text(text)
        await self.test(candidate)
        if self.live.exists():
            os.replace(self.live, self.good)
        os.replace(candidate, self.live)
        try:
            if self.running:
                self._signal(signal.SIGHUP)
            else:
                await self.start()
            await self.confirm(config_id)
        except (ReloadFailed, OSError) as exc:
            await self._restore(exc)
            raise ReloadFailed(str(exc)) from exc
        self.config_id = config_id
        self.reloads += 1

    async def _restore(self, cause: BaseException) -> None:
        log.error("new configuration did not go live (%s); restoring the last good one", cause)
        if self.good.exists():
            os.replace(self.good, self.live)
            if self.running:
                self._signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        # nginx runs in the foreground as our child; its logs go to the container's output.
        self.process = await asyncio.create_subprocess_exec(self.nginx, "-c", str(self.live), "-g", "daemon off;")

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def confirm(self, config_id: str) -> None:
        """Poll nginx's loopback status port until it answers `config_id`."""
        deadline = time.monotonic() + self.confirm_timeout
        url = f"http://127.0.0.1:{STATUS_PORT}/interlock/config"
        seen = ""
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.returncode is not None:
                    raise ReloadFailed(f"nginx exited with status {self.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        seen = (await response.text()).strip()
                        if seen == config_id:
                            return
                await asyncio.sleep(0.02)
        raise ReloadFailed(f"nginx still answers configuration {seen or 'nothing'!r}, not {config_id!r}")

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
