"""What the proxy agent needs of the proxy it runs (`ProxyControl`), and the one place that
names the controllers of the proxy kinds (`new_controller`): the agent holds "the proxy" and
never asks which kind it is. Imports the kinds' controllers; no Docker socket.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.edges.traffic_meter import TrafficMeter


class ProxyControl(Protocol):
    """A proxy process the agent runs: `NginxController` or `HAProxyController` in production,
    a recording fake (`interlock.testing.fakes.FakeNginx`) in tests."""

    kind: str
    """The proxy's name in messages: `nginx`, `HAProxy`."""
    config_id: str
    targets_id: str
    reloads: int
    target_updates: int

    @property
    def running(self) -> bool: ...

    @property
    def exited(self) -> bool: ...

    async def install(
        self,
        text: str,
        config_id: str,
        targets: str = "",
        targets_id: str = "",
        certificates: tuple[tuple[str, str], ...] = (),
    ) -> None: ...
    async def update_targets(self, targets: str, targets_id: str) -> None: ...
    async def poll_traffic(self, meter: TrafficMeter) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None: ...


def _nginx(workdir: Path, secrets_dir: Path) -> ProxyControl:
    return NginxController(workdir / "nginx")


def _haproxy(workdir: Path, secrets_dir: Path) -> ProxyControl:
    return HAProxyController(workdir / "haproxy", secrets_dir=secrets_dir)


CONTROLLERS: dict[str, Callable[[Path, Path], ProxyControl]] = {"nginx": _nginx, "haproxy": _haproxy}
"""The controller of each proxy kind (the extension's `Kind`), by name."""


def new_controller(kind: str, workdir: Path, secrets_dir: Path) -> ProxyControl:
    try:
        make = CONTROLLERS[kind]
    except KeyError:
        raise ValueError(f"no proxy kind {kind!r}; known: {', '.join(sorted(CONTROLLERS))}") from None
    return make(workdir, secrets_dir)
