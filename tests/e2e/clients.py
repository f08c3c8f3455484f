"""Clients that never retry, as many SDKs and Python's own http.client do: requests one after
the other on a kept-alive connection, every error or non-200 counted with when and how. Bounded
in time and in count. Loopback only."""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl
import threading
import time
from collections import Counter

import requests

from tests.e2e.swarm import get


class NeverRetrying:
    """The loop; a subclass says how one request is made and which errors are the client's."""

    errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, seconds: float, limit: int) -> None:
        self.seconds, self.limit = seconds, limit
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        """When each failed request failed (UTC, ms) and how, to set beside the proxy's log."""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def request(self) -> int:
        """One request; its status."""
        raise NotImplementedError

    def failed(self) -> None:
        """After a failure (a connection to drop, say)."""

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self.stop.is_set() and time.monotonic() < deadline and sum(self.outcomes.values()) < self.limit:
            try:
                self.outcomes[str(self.request())] += 1
            except self.errors as exc:
                self.outcomes[type(exc).__name__] += 1
                self.failures.append(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {exc!r}")
                self.failed()
        self.done()

    def done(self) -> None:
        """When the loop ends."""

    def __enter__(self) -> NeverRetrying:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


class NeverRetryingHTTP(NeverRetrying):
    """GETs with Host `host` on plain HTTP through one `requests` session (it keeps the
    connection alive and retries nothing)."""

    errors = (requests.RequestException,)

    def __init__(self, host: str, port: int, *, seconds: float, limit: int) -> None:
        super().__init__(seconds, limit)
        self.host, self.port = host, port
        self.session = requests.Session()

    def request(self) -> int:
        return get(self.host, port=self.port, session=self.session).status_code

    def done(self) -> None:
        self.session.close()


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:`port` that names `sni` in its TLS hello, as a browser would."""

    def __init__(self, sni: str, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=10)
        self.sni = sni

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock = ssl._create_unverified_context().wrap_socket(sock, server_hostname=self.sni)


class NeverRetryingTLS(NeverRetrying):
    """GETs with SNI and Host `host` on one kept-alive TLS connection (http.client)."""

    errors = (OSError, http.client.HTTPException)

    def __init__(self, host: str, port: int, *, seconds: float, limit: int) -> None:
        super().__init__(seconds, limit)
        self.host = host
        self.connection = SNIConnection(host, port)

    def request(self) -> int:
        self.connection.request("GET", "/", headers={"Host": self.host})
        response = self.connection.getresponse()
        response.read()
        if response.getheader("connection", "").lower() == "close":
            self.connection.close()
        return response.status

    def failed(self) -> None:
        self.connection.close()


def served_fingerprint(host: str, port: int) -> str | None:
    """The SHA-256 of the certificate the proxy presents for SNI `host` ('' when it refuses the
    handshake; None when the port does not answer)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError:
        return ""
    except OSError:
        return None
    return hashlib.sha256(der or b"").hexdigest()
