"""The renderer of each proxy kind, by the extension's `Kind`: the one table the roles look a
kind's renderer up in (no branch on the kind elsewhere). Pure; render layer."""

from __future__ import annotations

from collections.abc import Callable

from interlock.config.schema import ExtensionConfig
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx

RENDERERS: dict[str, Callable[[Routing, ExtensionConfig], RenderedConfig]] = {
    "nginx": render_nginx,
    "haproxy": render_haproxy,
}


def render_proxy(routing: Routing, ext: ExtensionConfig) -> RenderedConfig:
    """The configuration of `ext`'s proxy for `routing`, in its kind's language."""
    return RENDERERS[ext.kind](routing, ext)
