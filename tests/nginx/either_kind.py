"""A real proxy of either kind (nginx or HAProxy) serving a routing model on loopback, through the
proxy agent's own controller: what the tests that hold for both kinds install their routes with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interlock.config import default_config
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx

HTTP, HTTPS = 18180, 18543
KINDS = ["nginx", "haproxy"]


async def serve(
    kind: str, binary: str, routing: Routing, tmp_path: Path, secrets: Path, **config: Any
) -> NginxController:
    """Start (or reload) a proxy of `kind` on HTTP/HTTPS serving `routing`, its certificate
    secrets read from `secrets`; `config` adds keys of the extension's Config table."""
    settings = {"PidPath": str(tmp_path / "proxy.pid"), **config}
    control: NginxController
    if kind == "nginx":
        ext = default_config(TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions["default"]
        control = NginxController(tmp_path / "work", nginx=binary, confirm_timeout=10)
        rendered = render_nginx(routing, ext, secrets_dir=str(secrets))
    else:
        ext = default_config(Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions[
            "default"
        ]
        certificates = tmp_path / "certs"
        control = HAProxyController(
            tmp_path / "work", haproxy=binary, secrets_dir=secrets, certificates_dir=certificates
        )
        rendered = render_haproxy(routing, ext, certificates_dir=str(certificates))
    await control.install(
        rendered.text, rendered.config_id, rendered.targets, rendered.targets_id, routing.certificate_pairs()
    )
    return control
