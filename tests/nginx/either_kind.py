"""A real proxy of either kind (nginx or HAProxy) serving a routing model on loopback, through the
proxy agent's own controller: what the tests that hold for both kinds install their routes with."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from interlock.config import default_config
from interlock.edges.certificates import CertificateShelf
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx
from interlock.testing.swarm_json import swarm_json
from interlock.wire.certificates import CertificateBundle, bundle_for

Controller = NginxController | HAProxyController
"""A real proxy of either kind, as the agent runs it."""

HTTP, HTTPS = 18180, 18543
KINDS = ["nginx", "haproxy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackTLS(http.client.HTTPSConnection):
    """HTTPS to the proxy's TLS listener on 127.0.0.1 that names `host` in its TLS hello (SNI),
    as a browser would."""

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", HTTPS), timeout=self.timeout)
        self.sock = ssl._create_unverified_context().wrap_socket(sock, server_hostname=self.host)


def workers(controller: Controller) -> set[int]:
    """The worker processes of the controller's running nginx (a reload starts new ones)."""
    assert controller.process is not None
    children = Path(f"/proc/{controller.process.pid}/task/{controller.process.pid}/children").read_text()
    return {int(pid) for pid in children.split()}


def start_backend(name: str, status: int = 200, **env: str) -> tuple[int, subprocess.Popen[bytes]]:
    """A test backend on a free port; `status`: what it answers every request with; `env`: more
    of its settings (BACKEND_AUTH_TOKEN makes it an auth service)."""
    port = free_port()
    env = {**os.environ, "BACKEND_NAME": name, "BACKEND_STATUS": str(status), **env}
    proc = subprocess.Popen([sys.executable, "-m", "interlock.testing.backend", "--port", str(port)], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return port, proc


def loopback_routing(services: dict[str, dict[str, str]]) -> Routing:
    """The routing model of `services` (name -> its `com.docker.lb.*` labels, without the
    prefix), one task each, every task on 127.0.0.1 (where the test's backends listen)."""
    specs = [
        {"name": name, "networks": ["n"], "labels": {f"com.docker.lb.{k}": v for k, v in labels.items()}}
        for name, labels in services.items()
    ]
    document = swarm_json({"services": specs})
    for task in document["tasks"]:
        task["NetworksAttachments"][0]["Addresses"] = ["127.0.0.1/8"]
    return build(snapshot_from_api(document)).routings[""]


async def serve(
    kind: str,
    binary: str,
    routing: Routing,
    tmp_path: Path,
    secrets: Path,
    *,
    control: Controller | None = None,
    **config: Any,
) -> Controller:
    """Start a proxy of `kind` on HTTP/HTTPS serving `routing` (or reload `control`, one this
    started, with it), with the certificates of its TLS hosts read from `secrets` (as the core
    reads them) and handed to the proxy as the agent does; `config` adds keys of the extension's
    Config table."""
    settings = {"PidPath": str(tmp_path / "proxy.pid"), **config}
    if kind == "nginx":
        ext = default_config(TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions["default"]
        control = control or NginxController(tmp_path / "work", nginx=binary, confirm_timeout=10)
        rendered = render_nginx(routing, ext)
    else:
        ext = default_config(Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions[
            "default"
        ]
        certificates = tmp_path / "certs"
        control = control or HAProxyController(
            tmp_path / "work", haproxy=binary, secrets_dir=secrets, certificates_dir=certificates
        )
        rendered = render_haproxy(routing, ext, certificates_dir=str(certificates))
    await control.update_certificates(certificates_of(routing, secrets))
    await control.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)
    return control


def certificates_of(routing: Routing, secrets: Path, previous: CertificateBundle | None = None) -> CertificateBundle:
    """The certificates the core would send for `routing`, its secrets read from `secrets`."""
    shelf = CertificateShelf(secrets)
    shelf.read(routing.terminated_pairs().values())
    return bundle_for(routing, shelf.loaded, previous)


class LoopbackProxy:
    """A proxy of one kind on loopback, changed as the agent changes it."""

    def __init__(self, kind: str, binary: str, tmp_path: Path) -> None:
        self.kind, self.tmp_path = kind, tmp_path
        settings = {"PidPath": str(tmp_path / "proxy.pid")}
        if kind == "nginx":
            self.ext = default_config(TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions["default"]
            self.control: Controller = NginxController(tmp_path / "work", nginx=binary, confirm_timeout=10)
        else:
            self.ext = default_config(Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions[
                "default"
            ]
            self.control = HAProxyController(tmp_path / "work", haproxy=binary, certificates_dir=tmp_path / "certs")

    async def route(self, routing: Routing) -> None:
        """Install `routing` (without a reload when only the targets changed)."""
        if self.kind == "nginx":
            rendered = render_nginx(routing, self.ext)
        else:
            rendered = render_haproxy(routing, self.ext, certificates_dir=str(self.tmp_path / "certs"))
        if rendered.config_id == self.control.config_id:
            await self.control.update_targets(rendered.targets, rendered.targets_id)
        else:
            await self.control.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)

    @property
    def pid(self) -> int:
        assert self.control.process is not None
        return self.control.process.pid
