"""What the proxy agent needs of the proxy it runs (`ProxyControl`): the agent holds "the proxy"
and never asks which kind it is (`proxy_controllers.new_controller` makes it). Imports no kind; no
Docker socket.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from interlock.edges.traffic_meter import TrafficMeter
    from interlock.wire.certificates import CertificateBundle


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

    async def install(self, text: str, config_id: str, targets: str = "", targets_id: str = "") -> None: ...
    async def update_targets(self, targets: str, targets_id: str) -> None: ...
    async def update_certificates(self, bundle: CertificateBundle) -> None:
        """Serve `bundle` from the next handshake on, with no reload or restart; kept (on a 0400
        file in the proxy's tmpfs) for the proxy's next start. ReloadFailed when the running
        proxy refuses it (it keeps the certificates it had)."""
        ...

    async def set_draining(self, draining: bool) -> None:
        """Fail the proxy's health check (`/_interlock/health`: 503) while it keeps serving,
        before it stops; or pass it again (`draining` False). ReloadFailed when the proxy did
        not take it."""
        ...

    async def poll_traffic(self, meter: TrafficMeter) -> None: ...
    async def start(self) -> None: ...
    async def stop(self, sig: signal.Signals = signal.SIGQUIT, timeout: float = 30.0) -> None: ...
