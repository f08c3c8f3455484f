"""The renderer of an extension's kind: nginx (the default) or HAProxy, one entry point for the
roles. Pure; render layer."""

from __future__ import annotations

from interlock.config.schema import ExtensionConfig
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx


def render_proxy(routing: Routing, ext: ExtensionConfig) -> RenderedConfig:
    """The configuration of `ext`'s proxy for `routing`, in its kind's language."""
    return render_haproxy(routing, ext) if ext.kind == "haproxy" else render_nginx(routing, ext)
