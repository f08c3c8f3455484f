"""A Unix-socket forwarder in front of the Docker API that a test can cut, stall and restore.

`cut()` closes every connection and refuses new ones (dockerd gone); `stall()` keeps
connections open but forwards nothing either way (a silent network stall); `restore()` goes
back to forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


class DockerSocketForwarder:
    def __init__(self, listen: Path, target: str = "/var/run/docker.sock") -> None:
        self.listen = listen
        self.target = target
        self.server: asyncio.AbstractServer | None = None
        self.stalled = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()
        self.server = await asyncio.start_unix_server(self._client, path=str(self.listen))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while self.stalled:
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()

    def stall(self) -> None:
        self.stalled = True

    async def restore(self) -> None:
        self.stalled = False
        if self.server is None:
            await self.start()
