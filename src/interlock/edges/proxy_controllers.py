"""The proxy agent's registry of proxy kinds: the controller each `Kind` runs with, by name.

Apart from `proxy_kinds` (the extension's registry: renderers, offline checks) so that a proxy
agent starting in a replaced task loads the controllers and nothing else: no settings schema,
no renderer, no template engine. Every import here is time a new proxy is not serving yet.
Both registries name the same kinds (tests/unit/test_proxy_kinds.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.edges.proxy_control import ProxyControl

CONTROLLERS: dict[str, Callable[[Path, Path], ProxyControl]] = {
    "nginx": lambda workdir, secrets_dir: NginxController(workdir / "nginx"),
    "haproxy": lambda workdir, secrets_dir: HAProxyController(workdir / "haproxy", secrets_dir=secrets_dir),
}
"""`Kind` -> the controller, from the agent's work directory and the secrets directory."""


def new_controller(kind: str, workdir: Path, secrets_dir: Path) -> ProxyControl:
    """The controller of a proxy of `kind` (the extension's `Kind`)."""
    try:
        make = CONTROLLERS[kind]
    except KeyError:
        raise ValueError(f"no proxy kind {kind!r}; known: {', '.join(sorted(CONTROLLERS))}") from None
    return make(workdir, secrets_dir)
