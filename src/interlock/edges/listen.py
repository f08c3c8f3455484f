"""Where a role listens: its APIs on its addresses on the control network, its metrics there and
on the monitoring network, loopback for both (health checks, `docker exec` status), and never
on an application network it shares with the apps.

The core writes the subnets of those networks into each role's environment
(`INTERLOCK_CONTROL_SUBNETS`, `INTERLOCK_MONITORING_SUBNETS`; Swarm allocates them when the
network is made); a role finds its own addresses in them among its interfaces. A role run
without them (by hand, in tests) listens on every address, as a plain server would; one whose
subnets match no interface says so in its log and does the same rather than go deaf.

An edge: reads the container's interfaces (ioctl); imports nothing of the roles.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from interlock.constants import CONTROL_SUBNETS, MONITORING_SUBNETS

log = logging.getLogger("interlock.listen")

EVERYWHERE = ("0.0.0.0",)
_SIOCGIFADDR = 0x8915


def local_ipv4_addresses() -> list[str]:
    """The IPv4 address of each of this network namespace's interfaces that has one."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(answer[20:24]))
    return found


def addresses_in(subnets: Iterable[str], addresses: Iterable[str]) -> list[str]:
    """Those of `addresses` inside one of `subnets` (CIDR; bad entries are ignored)."""
    networks = []
    for subnet in subnets:
        try:
            networks.append(ipaddress.ip_network(subnet.strip(), strict=False))
        except ValueError:
            log.warning("ignoring %r: not a subnet", subnet[:64])
    return [a for a in addresses if any(ipaddress.ip_address(a) in n for n in networks)]


@dataclass(frozen=True, slots=True)
class Listeners:
    api: tuple[str, ...]
    """Where the role's authenticated API listens: loopback and the control network."""
    metrics: tuple[str, ...]
    """Where /metrics listens: loopback, the control network and the monitoring network."""


def role_listeners(environ: Mapping[str, str], addresses: Iterable[str] | None = None) -> Listeners:
    """Where this role listens, from the subnets in `environ` and this container's `addresses`."""
    control = [s for s in environ.get(CONTROL_SUBNETS, "").split(",") if s.strip()]
    monitoring = [s for s in environ.get(MONITORING_SUBNETS, "").split(",") if s.strip()]
    if not control:
        return Listeners(EVERYWHERE, EVERYWHERE)
    own = list(local_ipv4_addresses() if addresses is None else addresses)
    on_control = addresses_in(control, own)
    if not on_control:
        log.error(
            "no address of this container (%s) is in the control network's subnets (%s); listening on every address",
            ", ".join(own),
            ", ".join(control),
        )
        return Listeners(EVERYWHERE, EVERYWHERE)
    on_monitoring = addresses_in(monitoring, own) if monitoring else []
    loopback = ["127.0.0.1"]
    api = tuple(dict.fromkeys([*loopback, *on_control]))
    return Listeners(api, tuple(dict.fromkeys([*api, *on_monitoring])))
