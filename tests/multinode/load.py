"""A bounded load generator for the multi-node tests: a few threads, each on its own keep-alive
connection to one proxy, until stopped or until the time or request budget runs out. It counts
every answer that is not a 200 (and every client error) as a failed request; it never retries."""

from __future__ import annotations

import threading
import time
from collections import Counter

import requests


class Load:
    def __init__(
        self, address: str, host: str, *, threads: int = 6, max_seconds: float = 120, max_requests: int = 200_000
    ) -> None:
        self.url = f"http://{address}:8080/"
        self.host = host
        self.deadline = time.monotonic() + max_seconds
        self.budget = max_requests
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0
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
                try:
                    outcome = str(session.get(self.url, headers={"Host": self.host}, timeout=20).status_code)
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                took = time.monotonic() - started
                with self._lock:
                    self.outcomes[outcome] += 1
                    self.slowest = max(self.slowest, took)
                    if self.total >= self.budget:
                        self._stop.set()
