"""A bounded load generator for the multi-node tests: a few threads, each on its own keep-alive
connection to one proxy, until stopped or until the time or request budget runs out. It counts
every answer that is not a 200 (and every client error) as a failed request, with when it came.
The one retry is the one HTTP/1.1 clients make (RFC 9112 9.3.1, as bench/common.py does): a
request on a kept-alive connection that the proxy closed before any byte of an answer (an nginx
worker retiring after a reload) is sent again once on a new connection, and counted apart."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.client import RemoteDisconnected

import requests
import urllib3


class Load:
    def __init__(
        self,
        address: str,
        host: str,
        *,
        port: int = 8080,
        threads: int = 6,
        max_seconds: float = 120,
        max_requests: int = 200_000,
    ) -> None:
        self.url = f"http://{address}:{port}/"
        self.host = host
        self.deadline = time.monotonic() + max_seconds
        self.budget = max_requests
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
        self.stale_retries = 0
        self.failures: list[tuple[float, str]] = []
        """(seconds since the start, outcome and what it looked like) of each failed request."""
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    @property
    def failed(self) -> int:
        return self.total - self.outcomes["200"]

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                started = time.monotonic()
                outcome, stale, detail = self._once(session)
                if stale:
                    outcome, _, detail = self._once(session)
                took = time.monotonic() - started
                with self._lock:
                    self.outcomes[outcome] += 1
                    self.stale_retries += stale
                    self.slowest = max(self.slowest, took)
                    if outcome != "200":
                        self.failures.append((round(started - self.started, 2), f"{outcome} {detail}".strip()))
                    if self.total >= self.budget:
                        self._stop.set()

    def _once(self, session: requests.Session) -> tuple[str, bool, str]:
        """(outcome, whether it was a kept-alive connection closed before any answer, what a
        failure looked like: which task answered and how the answer began, or the error)."""
        try:
            response = session.get(self.url, headers={"Host": self.host}, timeout=20)
        except requests.ConnectionError as exc:
            reason = exc.args[0] if exc.args else None
            closed = isinstance(reason, urllib3.exceptions.ProtocolError) and isinstance(
                reason.args[1] if len(reason.args) > 1 else None, (RemoteDisconnected, ConnectionResetError)
            )
            return type(exc).__name__, closed, str(reason)[:120]
        except requests.RequestException as exc:
            return type(exc).__name__, False, str(exc)[:120]
        if response.status_code == 200:
            return "200", False, ""
        # The task that answered (none: the proxy answered itself) and the answer's first words
        # tell an unknown host from a task's own error.
        body = " ".join(response.text.split())[:80]
        return str(response.status_code), False, f"upstream={response.headers.get('x-upstream-addr', '-')} {body}"
