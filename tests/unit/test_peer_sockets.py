"""Role-to-role connections notice a vanished peer in seconds (a node cut off sends no reset)."""

from __future__ import annotations

import socket

from interlock.edges.peer_http import peer_socket


def test_peer_sockets_probe_an_idle_connection_and_bound_unacknowledged_data() -> None:
    sock = peer_socket((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 0)))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        probes = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
        interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        # A long-poll to a core on a lost node ends within seconds, not at its 35 s timeout.
        assert idle + probes * interval <= 10
        assert 0 < sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) <= 10_000
    finally:
        sock.close()
