"""The proxy's drain counted from the earliest sign of its stop: Docker taking the task out of
its service's DNS about 2 s ahead of the stop signal, else the signal; a sign with no signal
after it is taken back (fake proxy, fake clock)."""

from __future__ import annotations

import asyncio

from interlock.edges.task_departure import Departure
from interlock.errors import ReloadFailed
from interlock.roles.proxy_drain import ProxyDrain
from interlock.testing.fakes import FakeClock, FakeNginx


async def test_with_no_sign_the_whole_period_follows_the_stop_signal() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 1.5, clock)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(1.4)
    assert proxy.draining and not stopping.done(), "the health check fails, the proxy still serves"
    await clock.advance(0.1)
    assert stopping.done()


async def test_a_drain_begun_on_the_dns_sign_is_over_when_the_signal_comes_2s_later() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 1.5, clock)
    await drain.on_departure(Departure.LEAVING)
    assert proxy.draining
    await clock.advance(2.0)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(0)
    assert stopping.done(), "no more waiting after the signal"
    await stopping


async def test_the_signal_soon_after_the_sign_waits_only_for_the_rest() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 2.0, clock)
    await drain.on_departure(Departure.LEAVING)
    await clock.advance(0.5)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(1.4)
    assert not stopping.done()
    await clock.advance(0.1)
    assert stopping.done()


async def test_a_task_listed_again_passes_its_health_check_again() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 2.0, clock)
    await drain.on_departure(Departure.LEAVING)
    await drain.on_departure(Departure.BACK)
    assert not proxy.draining and drain.since is None
    # A later stop drains for the whole period again.
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(1.9)
    assert proxy.draining and not stopping.done()
    await clock.advance(0.1)
    assert stopping.done()


async def test_a_sign_no_signal_follows_is_taken_back_at_the_limit() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 2.0, clock, limit=10.0)
    await drain.on_departure(Departure.LEAVING)
    await clock.advance(9.9)
    assert proxy.draining
    await clock.advance(0.1)
    assert not proxy.draining, "back in the load balancer's rotation"


async def test_the_stop_signal_cancels_the_limit() -> None:
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 2.0, clock, limit=3.0)
    await drain.on_departure(Departure.LEAVING)
    await clock.advance(1.0)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(1.0)
    assert stopping.done()
    await clock.advance(5.0)
    await drain.on_departure(Departure.BACK)
    assert proxy.draining, "a stopping proxy never passes its health check again"


async def test_no_drain_period_never_fails_the_health_check() -> None:
    """ProxyDrainPeriod = "0s": stops at once, whatever the DNS says."""
    proxy, clock = FakeNginx(), FakeClock()
    drain = ProxyDrain(proxy, 0, clock)
    await drain.on_departure(Departure.LEAVING)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(0)
    assert stopping.done() and not proxy.draining


async def test_a_proxy_that_refuses_the_drain_still_waits_out_the_period() -> None:
    class Refusing(FakeNginx):
        async def set_draining(self, draining: bool) -> None:
            raise ReloadFailed("nginx did not start draining: 500")

    proxy, clock = Refusing(), FakeClock()
    drain = ProxyDrain(proxy, 1.0, clock)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(0.9)
    assert not stopping.done()
    await clock.advance(0.1)
    assert stopping.done()


async def test_the_period_counts_from_when_the_proxy_took_the_drain_not_from_the_sign() -> None:
    """HAProxy takes a run-time change only once a reload under way is confirmed, which took
    2.5 s on a loaded node: the stop signal came first. The drain then runs its whole period
    after that, and is asked for once: a load balancer that never saw a 503 would send requests
    to a proxy that stopped."""

    class Busy(FakeNginx):
        def __init__(self) -> None:
            super().__init__()
            self.reloaded = asyncio.Event()
            self.asked = 0

        async def set_draining(self, draining: bool) -> None:
            self.asked += 1
            await self.reloaded.wait()
            self.draining = draining

    proxy, clock = Busy(), FakeClock()
    drain = ProxyDrain(proxy, 1.0, clock)
    sign = asyncio.create_task(drain.on_departure(Departure.LEAVING))
    await clock.advance(2.0)
    stopping = asyncio.create_task(drain.before_stop())
    await clock.advance(0.5)
    assert not stopping.done() and not proxy.draining, "the proxy is still reloading"
    proxy.reloaded.set()
    await clock.advance(0.9)
    assert proxy.draining and not stopping.done(), "the whole period after the health check failed"
    await clock.advance(0.1)
    assert stopping.done() and sign.done()
    assert proxy.asked == 1
