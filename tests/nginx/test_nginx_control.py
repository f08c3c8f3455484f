"""The proxy agent's nginx control against a real nginx: validate, swap, reload, confirm, and
keep the last good configuration on failure."""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from interlock.config import default_config
from interlock.constants import STATUS_PORT
from interlock.edges.nginx_control import NginxController
from interlock.errors import ConfigRejected
from interlock.model.routing import Routing
from interlock.render.nginx import render_nginx

pytestmark = pytest.mark.nginx


def config_for(tmp_path: Path, marker: str) -> tuple[str, str]:
    ext = default_config(TargetPort=18080, TargetSSLPort=18443).extensions["default"]
    ext = ext.model_copy(
        update={
            "config": ext.nginx.model_copy(
                update={
                    "pid_path": str(tmp_path / "nginx.pid"),
                    "access_log_path": "/dev/null",
                    "http_options": (f"# {marker};",),
                }
            )
        }
    )
    rendered = render_nginx(Routing(cluster=""), ext)
    return rendered.text, rendered.config_id


@pytest.fixture
async def controller(tmp_path: Path, nginx: str) -> AsyncIterator[NginxController]:
    control = NginxController(tmp_path / "work", nginx=nginx, confirm_timeout=5)
    yield control
    await control.stop(signal.SIGTERM, timeout=10)


def answer() -> int:
    try:
        with urllib.request.urlopen("http://127.0.0.1:18080/", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_install_starts_then_reloads_and_confirms(controller: NginxController, tmp_path: Path) -> None:
    text, config_id = config_for(tmp_path, "first")
    await controller.install(text, config_id)
    assert controller.config_id == config_id and answer() == 503
    first_pid = controller.process.pid if controller.process else None
    text2, config_id2 = config_for(tmp_path, "second")
    await controller.install(text2, config_id2)
    assert controller.config_id == config_id2
    assert controller.process is not None and controller.process.pid == first_pid, "reloaded, not restarted"
    assert controller.reloads == 2


async def test_a_rejected_configuration_leaves_the_live_one(controller: NginxController, tmp_path: Path) -> None:
    text, config_id = config_for(tmp_path, "good")
    await controller.install(text, config_id)
    with pytest.raises(ConfigRejected):
        await controller.install(text.replace("worker_connections", "worker_connectionz"), "bad")
    assert controller.config_id == config_id
    assert (controller.workdir / "nginx.conf").read_text() == text
    assert answer() == 503


def status_answers(count: int) -> set[str]:
    """The configuration ids `count` fresh connections to the status port are answered with."""
    seen = set()
    for _ in range(count):
        with urllib.request.urlopen(f"http://127.0.0.1:{STATUS_PORT}/interlock/config", timeout=2) as response:
            seen.add(response.read().decode())
    return seen


async def test_once_installed_every_new_connection_gets_the_new_configuration(
    controller: NginxController, tmp_path: Path
) -> None:
    # nginx lets the old workers accept for 100 ms after a reload; install() returns only once
    # they stopped, so a route that answered once keeps answering.
    configs = [config_for(tmp_path, marker) for marker in ("first", "second")]
    for round_ in range(6):
        text, config_id = configs[round_ % 2]
        await controller.install(text, config_id)
        assert status_answers(100) == {config_id}
