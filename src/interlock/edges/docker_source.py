"""The Docker API edge: list the swarm in the API's own JSON shape, follow the event stream.

Only the core uses this module (it is the only role with the Docker socket). Results are raw
API JSON; `interlock.model.docker_json` turns them into snapshot types. The event stream runs
in a thread (docker-py is blocking) and hands events to the asyncio loop; `close()` cuts it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Protocol

import docker
import docker.errors
import requests

from interlock.errors import DockerUnavailable

EVENT_TYPES = ("service", "node", "network", "secret", "config", "container")

RawSnapshot = dict[str, list[dict[str, Any]]]


class SwarmSource(Protocol):
    """What the core needs from Docker; tests use a small in-memory fake."""

    def list_swarm(self) -> RawSnapshot:
        """Services, tasks, networks and nodes, as the Engine API lists them."""
        ...

    def list_secrets(self) -> list[dict[str, Any]]:
        """The swarm's secrets (metadata only; the API never returns their data)."""
        ...

    def stream_events(
        self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[[BaseException | None], None]
    ) -> EventStream: ...


class EventStream(Protocol):
    def close(self) -> None: ...


def _unavailable(exc: BaseException) -> DockerUnavailable:
    return DockerUnavailable(f"Docker API: {exc}")


class DockerSwarmSource:
    """docker-py's low-level client against DockerURL (unix socket or tcp with TLS)."""

    def __init__(self, client: docker.APIClient) -> None:
        self.client = client

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
        allow_insecure: bool = False,
        timeout: float = 30.0,
    ) -> DockerSwarmSource:
        tls: docker.tls.TLSConfig | bool = False
        if tls_cert or tls_ca:
            tls = docker.tls.TLSConfig(
                client_cert=(tls_cert, tls_key) if tls_cert else None,
                ca_cert=tls_ca or None,
                verify=not allow_insecure and bool(tls_ca),
            )
        return cls(docker.APIClient(base_url=url, version="auto", timeout=timeout, tls=tls))

    def list_swarm(self) -> RawSnapshot:
        try:
            return {
                "services": self.client.services(),
                "tasks": self.client.tasks(),
                "networks": self.client.networks(),
                "nodes": self.client.nodes(),
            }
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise _unavailable(exc) from exc

    def list_secrets(self) -> list[dict[str, Any]]:
        try:
            return list(self.client.secrets())
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise _unavailable(exc) from exc

    def stream_events(
        self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[[BaseException | None], None]
    ) -> _ThreadedEvents:
        try:
            stream = self.client.events(decode=True, filters={"type": list(EVENT_TYPES)})
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise _unavailable(exc) from exc
        return _ThreadedEvents(stream, on_event, on_end)


class _ThreadedEvents:
    """Reads a blocking docker-py event stream in a daemon thread."""

    def __init__(
        self, stream: Any, on_event: Callable[[dict[str, Any]], None], on_end: Callable[[BaseException | None], None]
    ) -> None:
        self._stream = stream
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(on_event, on_end), daemon=True, name="docker-events")
        self._thread.start()

    def _run(self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[[BaseException | None], None]) -> None:
        error: BaseException | None = None
        try:
            for event in self._stream:
                on_event(event)
        except Exception as exc:  # the stream ends by any transport error; all mean "reconnect"
            error = exc
        if not self._closed:
            on_end(error)

    def close(self) -> None:
        self._closed = True
        try:
            self._stream.close()
        except Exception:  # closing a broken stream may raise; it is gone either way
            pass


def threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., None]) -> Callable[..., None]:
    """Wrap `callback` so a thread can call it; it runs on `loop`."""

    def call(*args: Any) -> None:
        loop.call_soon_threadsafe(callback, *args)

    return call
