"""The core's watcher: Docker events -> debounce -> settle -> one complete `Snapshot`.

It subscribes to the event stream first, then lists, so no change falls between the two. After
an event it re-lists every SETTLE_POLL seconds until the tasks settle (the stream has no task
events; a task still starting, or a proxy task still stopping, is not settled): at least MIN_SETTLE, at most
MAX_SETTLE. A full resync runs every `poll_interval`. A
lost stream, a failed call, or a stream that stays connected but silent while a service changes
(its version index grew without a service event) means reconnect with capped backoff and
resync. Secrets are re-listed after a secret event, a reconnect, or a periodic resync, not on
every settle poll. Each snapshot goes to `on_snapshot`; nothing before the first full list.

Time comes from an injected `Clock`, Docker from a `SwarmSource`: both are fakes in unit tests.
Must not import aiohttp or docker (the source is the edge) or the other core parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Histogram

from interlock.edges.clock import Clock, SystemClock
from interlock.edges.debounce import Debouncer
from interlock.edges.docker_source import EventStream, RawSnapshot, SwarmSource, threadsafe
from interlock.errors import DockerUnavailable, InterlockError
from interlock.model.docker_json import snapshot_from_api
from interlock.model.snapshot import Snapshot, Task
from interlock.roles.runtime import quiet_gc

log = logging.getLogger("interlock.core")

Offload = Callable[..., Awaitable[Any]]

SETTLE_POLL = 0.1
"""Seconds between re-lists while tasks settle, in the first MIN_SETTLE seconds after an event."""
LATE_SETTLE_POLL = 0.25
"""Seconds between re-lists while tasks still settle after that: a task waiting for its health
check, or a proxy task through Docker's 2 s wait before its stop signal. Ten lists a second for
all that time cost the manager (and dockerd) a fifth of a core during every roll of the proxies,
on the CPU the starting tasks need."""
MIN_SETTLE = 2.0
"""Keep re-listing at least this long after an event: tasks may not exist yet when it arrives."""
MAX_SETTLE = 60.0
MAX_BACKOFF = 5.0
TRANSITIONAL = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"})
RUNNING_OR_TRANSITIONAL = TRANSITIONAL | {"running"}

SNAPSHOTS = Counter("interlock_core_snapshots_total", "Full lists of the swarm")
EVENTS = Counter("interlock_core_docker_events_total", "Docker events received")
RECONNECTS = Counter("interlock_core_event_stream_reconnects_total", "Event stream (re)connections after a loss")
BUILD_SECONDS = Histogram("interlock_core_build_seconds", "Snapshot conversion and build time")


def _moving(task: Task, snapshot: Snapshot, proxy_ids: frozenset[str]) -> bool:
    """A task on its way up, or a proxy task (of `proxy_ids`, its services) still running while
    it stops: its exit lets a route over a network only its replacement is on be served
    (`build.proxy_attachments`), and the stream has no event for it. Not a task on a node that
    is down (reported running until the node returns); not an app's stopping task (it left the
    targets when Swarm meant it to stop), which would keep the lists going for its whole grace
    period."""
    if task.desired_state == "running":
        return task.state in TRANSITIONAL
    return task.service_id in proxy_ids and task.state in RUNNING_OR_TRANSITIONAL and snapshot.node_ready(task.node_id)


class Watcher:
    def __init__(
        self,
        source: SwarmSource,
        on_snapshot: Callable[[Snapshot], None],
        *,
        poll_interval: float,
        clock: Clock | None = None,
        offload: Offload = asyncio.to_thread,
        proxies: frozenset[str] = frozenset(),
    ) -> None:
        """`offload` runs a blocking Docker call off the event loop (a thread; inline in tests);
        `proxies` names the proxy services, whose stopping tasks are watched until they exit."""
        self.source = source
        self.proxies = proxies
        self.on_snapshot = on_snapshot
        self.poll_interval = poll_interval
        self.clock: Clock = clock or SystemClock()
        self.offload = offload
        self.debouncer = Debouncer(quiet=0.02, max_delay=0.25, clock=self.clock.monotonic, sleep=self.clock.sleep)
        self.ready = False
        """True once a first full list succeeded."""
        self.connected = False
        """True while the last call to Docker succeeded and the event stream is up."""
        self.stream_lost = asyncio.Event()
        self.settle_until = 0.0
        self.min_settle_until = 0.0
        self.tasks_settled = True
        self.secrets: list[dict[str, Any]] | None = None
        self.secrets_stale = True
        self.service_events = 0
        self._seen_service_index = -1
        self._service_events_at_resync = 0
        self._last_resync_at = 0.0

    async def run(self) -> None:
        """Watch until cancelled; every failure of Docker ends in a reconnect, never here."""
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            stream: EventStream | None = None
            self.stream_lost.clear()
            try:
                stream = await self.offload(
                    self.source.stream_events, threadsafe(loop, self.on_event), threadsafe(loop, self.on_stream_end)
                )
                self.secrets_stale = True  # events may have been missed while disconnected
                await self.resync()
                backoff = 0.5
                while True:
                    await self.wait_for_change()
                    await self.resync()
            except DockerUnavailable as exc:
                self.connected = False
                log.warning("Docker API unavailable, retrying in %.1fs: %s", backoff, exc)
            except InterlockError as exc:
                # The loop's boundary: e.g. a Docker answer not in the API's shape. Said, and
                # tried again from a fresh connection; the last published states stay.
                self.connected = False
                log.error("could not use what Docker listed, retrying in %.1fs: %s", backoff, exc)
            finally:
                if stream is not None:
                    stream.close()
            RECONNECTS.inc()
            await self.clock.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def on_event(self, event: dict[str, Any]) -> None:
        EVENTS.inc()
        if event.get("Type") == "container" and str(event.get("Action", "")).startswith("exec_"):
            # A health check (or `docker exec`) in some container: every task with a health
            # check makes these each interval, and they change nothing routed.
            return
        if event.get("Type") == "service":
            self.service_events += 1
        elif event.get("Type") == "secret":
            self.secrets_stale = True
        now = self.clock.monotonic()
        self.min_settle_until = now + MIN_SETTLE
        self.settle_until = now + MAX_SETTLE
        log.debug(
            "event %s %s %s", event.get("Type"), event.get("Action"), (event.get("Actor") or {}).get("ID", "")[:12]
        )
        self.debouncer.poke()

    def on_stream_end(self, error: BaseException | None) -> None:
        self.connected = False
        log.warning("Docker event stream ended (%s); reconnecting and resyncing", error or "closed")
        self.stream_lost.set()
        self.debouncer.poke()

    def settling(self) -> bool:
        now = self.clock.monotonic()
        return now < self.min_settle_until or (now < self.settle_until and not self.tasks_settled)

    async def wait_for_change(self) -> None:
        """Until the next resync is due: a settled burst of events, a settle poll, or the
        periodic resync; raises when the stream was lost meanwhile."""
        now = self.clock.monotonic()
        timeout = self.poll_interval
        if self.settling():
            timeout = SETTLE_POLL if now < self.min_settle_until else LATE_SETTLE_POLL
        if await self.clock.wait(self.debouncer.poked, timeout):
            await self.debouncer.wait()
        if self.stream_lost.is_set():
            raise DockerUnavailable("event stream lost")

    def _stream_missed_a_change(self, raw: RawSnapshot) -> bool:
        """A service changed (its version index grew) while no service event came: the stream
        is connected but silent, which Docker's stream can be after network trouble."""
        index = max((int((s.get("Version") or {}).get("Index", 0)) for s in raw["services"]), default=0)
        now = self.clock.monotonic()
        # Only a periodic resync (a second or more after the last) can tell: right after an
        # event-driven one, the list may see a change whose event is still on its way.
        quiet = self.service_events == self._service_events_at_resync and now - self._last_resync_at >= 1.0
        missed = self._seen_service_index >= 0 and index > self._seen_service_index and quiet
        self._seen_service_index, self._service_events_at_resync = index, self.service_events
        self._last_resync_at = now
        return missed

    async def resync(self) -> Snapshot:
        """List the swarm, hand the snapshot on, and return it."""
        raw = await self.offload(self.source.list_swarm)
        stalled = self._stream_missed_a_change(raw)
        if self.secrets is None or self.secrets_stale or not self.settling():
            # Secrets change only with a secret event; re-listing them on every settle poll
            # (ten a second) would be wasted calls. Periodic resyncs still re-list them.
            self.secrets = await self.offload(self.source.list_secrets)
            self.secrets_stale = False
        SNAPSHOTS.inc()
        started = self.clock.monotonic()
        with quiet_gc():
            snapshot = snapshot_from_api({**raw, "secrets": self.secrets})
            proxy_ids = frozenset(s.id for s in snapshot.services if s.name in self.proxies)
            self.tasks_settled = not any(_moving(t, snapshot, proxy_ids) for t in snapshot.tasks)
            self.on_snapshot(snapshot)
        BUILD_SECONDS.observe(self.clock.monotonic() - started)
        if not self.ready:
            log.info("first full list done: %d services, %d tasks", len(snapshot.services), len(snapshot.tasks))
        self.ready = self.connected = True
        if stalled:
            raise DockerUnavailable("a service changed without an event: the event stream looks stalled")
        return snapshot
