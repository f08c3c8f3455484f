"""An external load balancer in front of host-mode proxies, as production puts one there
(docs/PRODUCTION.md, Rolling the proxies): a real HAProxy on this machine, round robin over one
proxy port on each node, each health-checked every 0.5 s on `/_interlock/health` (out after one
failed check, back after one good one; a check may take 2 s, as a loaded node's answer can). It
never retries a request (`retries 0`, no redispatch): a request it sends to a proxy that stopped
listening fails, as it would for a client that never retries. Only loopback listens."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.e2e.swarm import poll

CONFIG = """global
    maxconn 500
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
frontend front
    bind 127.0.0.1:{port}
    default_backend proxies
backend proxies
    balance roundrobin
    option httpchk
    http-check send meth GET uri /_interlock/health ver HTTP/1.1 hdr Host lb.check
    default-server inter 500ms fall 1 rise 1
    # A check answered slowly by a busy node is no failure; a draining proxy answers 503 at once.
    timeout check 2s
{servers}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Front:
    """The running load balancer: its port, and its log (server state changes) for messages."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log

    def state_changes(self) -> list[tuple[str, str]]:
        """(proxy, "UP" or "DOWN") each time the balancer changed its mind, in order (a proxy is
        UP from the start). HAProxy writes them to its standard error, which is the log file."""
        return re.findall(r"Server proxies/(p\d+) is (UP|DOWN)", self.log.read_text(errors="replace"))

    def reasons(self) -> list[str]:
        """HAProxy's own line for each change (why: the check's status, answer and time)."""
        return [line[:200] for line in self.log.read_text(errors="replace").splitlines() if "Server proxies/p" in line]

    def all_up(self) -> bool | None:
        """Whether it sends requests to every proxy again (for `poll`)."""
        last = dict(self.state_changes())
        return all(state == "UP" for state in last.values()) or None


@contextmanager
def front(addresses: list[str], proxy_port: int, workdir: Path, host: str) -> Iterator[Front]:
    """HAProxy on a free loopback port in front of `addresses`:`proxy_port`, once it answers a
    request for `host` (every proxy is checked from the start; a proxy counts once UP)."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    # Servers start as up until their first check says otherwise (HAProxy's default); those
    # first transitions are logged like any other.
    servers = "\n".join(f"    server p{i} {address}:{proxy_port} check" for i, address in enumerate(addresses))
    config = workdir / "front.cfg"
    config.write_text(CONFIG.format(port=port, servers=servers))
    log = workdir / "front.log"
    with log.open("wb") as out:
        process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        poll(
            lambda: requests.get(url, headers={"Host": host}, timeout=5).status_code == 200 or None,
            what=f"{host} through the load balancer",
        )
        yield Front(port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
