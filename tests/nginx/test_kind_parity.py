"""What the Interlock spec asks of every proxy, on both kinds, through the HTTP port on loopback:
`ClientMaxBodySize` refuses a larger declared body with 413, and `IPHash` keeps a client
address on one task of a round-robin route. And ours: the health check a load balancer reads,
which says when the proxy drains."""

from __future__ import annotations

import asyncio
import http.client
import signal
from pathlib import Path

import pytest

from tests.nginx.either_kind import HTTP, KINDS, loopback_routing, serve

pytestmark = pytest.mark.nginx


def asked(method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    connection.request(method, "/", body=body, headers={"Host": "shop.local"})
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    task = response.getheader("x-backend-task") or ""
    return response.status, task if answer else ""


@pytest.mark.parametrize("kind", KINDS)
async def test_body_limit_and_ip_hash(
    kind: str, nginx: str, haproxy: str, backend: int, second_backend: int, tmp_path: Path
) -> None:
    # Two services on one host and path (a canary): one upstream of two tasks.
    routing = loopback_routing(
        {
            "shop": {"hosts": "shop.local", "port": str(backend)},
            "shop-v2": {"hosts": "shop.local", "port": str(second_backend)},
        }
    )
    binary = haproxy if kind == "haproxy" else nginx
    control = await serve(kind, binary, routing, tmp_path, tmp_path, ClientMaxBodySize="1k", IPHash=True)
    try:
        assert asked("POST", b"x" * 2000)[0] == 413
        assert asked("POST", b"x" * 500)[0] == 200
        tasks = {asked()[1] for _ in range(12)}
        assert len(tasks) == 1 and tasks <= {"first", "second"}, tasks
    finally:
        await control.stop(signal.SIGTERM, timeout=15)


def health(host: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    connection.request("GET", "/_interlock/health", headers={"Host": host})
    response = connection.getresponse()
    answer = response.read().decode().strip()
    connection.close()
    return response.status, answer


@pytest.mark.parametrize("kind", KINDS)
async def test_the_health_check_says_draining_while_every_route_is_still_served(
    kind: str, nginx: str, haproxy: str, backend: int, tmp_path: Path
) -> None:
    """`/_interlock/health` answers a load balancer for any host, the routed one too; once the
    agent drains the proxy (before it stops) it answers 503 and the routes keep serving; taken
    back, 200 again."""
    routing = loopback_routing({"shop": {"hosts": "shop.local", "port": str(backend)}})
    binary = haproxy if kind == "haproxy" else nginx
    control = await serve(kind, binary, routing, tmp_path, tmp_path)
    try:
        assert health("10.0.0.7") == (200, "serving")
        assert health("shop.local") == (200, "serving")
        await control.set_draining(True)
        assert health("10.0.0.7") == (503, "draining")
        assert health("shop.local") == (503, "draining")
        assert asked()[0] == 200, "a draining proxy still serves its routes"
        # A routing change while it drains (the core changes routes while Swarm replaces
        # proxies): applied with a reload, and the proxy still drains.
        changed = loopback_routing(
            {
                "shop": {"hosts": "shop.local", "port": str(backend)},
                "more": {"hosts": "more.local", "port": str(backend)},
            }
        )
        reloads = control.reloads
        await serve(kind, binary, changed, tmp_path, tmp_path, control=control)
        assert control.reloads == reloads + 1
        assert health("10.0.0.7") == (503, "draining"), "a reload keeps the drain"
        assert asked()[0] == 200
        # What looked like a coming stop was not one: back in the load balancer's rotation.
        await control.set_draining(False)
        assert health("10.0.0.7") == (200, "serving")
        await control.set_draining(False)
        assert health("shop.local") == (200, "serving"), "taking back twice is harmless"
    finally:
        await control.stop(signal.SIGTERM, timeout=15)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_drain_begun_while_a_reload_is_under_way_holds_in_the_new_configuration(
    kind: str, nginx: str, haproxy: str, backend: int, tmp_path: Path
) -> None:
    """The agent drains as soon as Docker takes its task out of the service's DNS, which is
    when the core changes routes too: a reload may be under way. HAProxy's new worker reads the
    state map while the old one takes the run-time change, so without care the drain was lost
    and a load balancer sent requests to a proxy about to stop (seen on the multi-node harness)."""
    # Enough hosts that the new configuration takes HAProxy a while to load: the window in
    # which the drain used to be lost.
    many = {f"s{n}": {"hosts": f"s{n}.local", "port": str(backend)} for n in range(1500)}
    routings = [
        loopback_routing(many),
        loopback_routing({**many, "more": {"hosts": "more.local", "port": str(backend)}}),
    ]
    binary = haproxy if kind == "haproxy" else nginx
    control = await serve(kind, binary, routings[0], tmp_path, tmp_path)
    signalled = asyncio.Event()
    send_reload = control.proxy.reload

    def reload_and_say() -> None:
        send_reload()
        signalled.set()

    control.proxy.reload = reload_and_say  # type: ignore[method-assign]
    try:
        for turn, delay in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.02, 0.05)):
            draining = turn % 2 == 0
            signalled.clear()
            reload = asyncio.create_task(
                serve(kind, binary, routings[(turn + 1) % 2], tmp_path, tmp_path, control=control)
            )
            await asyncio.wait_for(signalled.wait(), 30)
            # The proxy is reloading now: the change lands at some point of it.
            await asyncio.sleep(delay)
            await control.set_draining(draining)
            await reload
            expected = (503, "draining") if draining else (200, "serving")
            assert health("10.0.0.7") == expected, f"turn {turn}: draining {draining} after a reload under way"
    finally:
        await control.stop(signal.SIGTERM, timeout=15)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_graceful_stop_finishes_the_request_in_flight_and_waits_for_no_idle_connection(
    kind: str, nginx: str, haproxy: str, backend: int, tmp_path: Path
) -> None:
    """What a proxy does after its drain: the request it is serving gets its answer, and a client's
    idle kept-alive connection does not keep it from stopping (HAProxy's soft stop would keep
    it until its next request, and Swarm kill the proxy at the end of its grace period)."""
    routing = loopback_routing({"shop": {"hosts": "shop.local", "port": str(backend)}})
    binary = haproxy if kind == "haproxy" else nginx
    control = await serve(kind, binary, routing, tmp_path, tmp_path)
    idle = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    idle.request("GET", "/", headers={"Host": "shop.local"})
    assert idle.getresponse().read()
    slow = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=15)
    slow.request("GET", "/?sleep=1.5", headers={"Host": "shop.local"})
    # The stop starts while the slow request is in flight (it sleeps 1.5 s at the task).
    await asyncio.sleep(0.3)
    await control.stop(signal.SIGQUIT, timeout=10)
    answer = slow.getresponse()
    assert answer.status == 200 and answer.read()
    process = control.process
    assert process is not None and process.returncode != -signal.SIGKILL, "stopped, not killed at the timeout"
    idle.close()
    slow.close()
