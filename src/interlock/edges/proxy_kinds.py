"""The registry of proxy kinds: the one place that names them (`KINDS`, by the extension's
`Kind`) and the one place that branches on the kind. A `ProxyKind` is everything a role needs of
one proxy: its renderer, its offline checks (the configuration, and the run-time document alone),
and its complaint in one line. The extension and the operator's commands ask this module; the
proxy agent asks `proxy_controllers`, the other place that names the kinds (so that it loads no
renderer). Imports each kind's modules; they do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from interlock.config.schema import ExtensionConfig
from interlock.edges.haproxy_check import check_haproxy_rendered, haproxy_complaint
from interlock.edges.nginx_check import check_rendered, nginx_complaint
from interlock.edges.offline_check import PASSED, CheckResult
from interlock.edges.template_guard import Render, render_with_limits
from interlock.model.culprits import culprits
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx
from interlock.render.targets import check_targets


@dataclass(frozen=True, slots=True)
class ProxyKind:
    """One proxy kind, as the roles use it."""

    name: str
    """The extension's `Kind`."""
    render: Render
    check_rendered: Callable[[str, Routing, ExtensionConfig], CheckResult]
    """The proxy's own check of a configuration about to be served (certificates stood in for)."""
    check_targets: Callable[[str], CheckResult]
    """A run-time document alone, when the configuration's text is unchanged."""
    complaint: Callable[[str], str]
    """The proxy's refusal in one line, for a service's problem."""


def _targets_grammar(targets: str) -> CheckResult:
    """nginx's run-time document against its grammar, with no `nginx -t`."""
    try:
        check_targets(targets)
    except ValueError as exc:
        return CheckResult(False, f"targets document: {exc}")
    return PASSED


def _taken_at_run_time(targets: str) -> CheckResult:
    """HAProxy's server slots: its runtime API checks them as it takes them."""
    return PASSED


KINDS: dict[str, ProxyKind] = {
    "nginx": ProxyKind(
        name="nginx",
        render=render_nginx,
        check_rendered=check_rendered,
        check_targets=_targets_grammar,
        complaint=nginx_complaint,
    ),
    "haproxy": ProxyKind(
        name="haproxy",
        render=render_haproxy,
        check_rendered=check_haproxy_rendered,
        check_targets=_taken_at_run_time,
        complaint=haproxy_complaint,
    ),
}


def proxy_kind(name: str) -> ProxyKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"no proxy kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


def render_proxy(routing: Routing, ext: ExtensionConfig) -> RenderedConfig:
    """The configuration of `ext`'s proxy for `routing`, in its kind's language."""
    return proxy_kind(ext.kind).render(routing, ext)


def render_guarded(routing: Routing, ext: ExtensionConfig) -> RenderedConfig:
    """`render_proxy`, with an operator's custom `Template` under the guard's limits."""
    return render_with_limits(proxy_kind(ext.kind).render, routing, ext)


def check_proxy_routing(routing: Routing, ext: ExtensionConfig) -> CheckResult:
    """Render `routing` for `ext`'s kind as it would be served and check it with that proxy."""
    return check_proxy_rendered(render_guarded(routing, ext).text, routing, ext)


def check_proxy_rendered(text: str, routing: Routing, ext: ExtensionConfig) -> CheckResult:
    """Check `text`, rendered from `routing` for `ext`'s kind, exactly as it will be served
    (certificates stood in for)."""
    return proxy_kind(ext.kind).check_rendered(text, routing, ext)


def check_proxy_targets(targets: str, ext: ExtensionConfig) -> CheckResult:
    """Check a run-time document alone (the configuration's text passed already)."""
    return proxy_kind(ext.kind).check_targets(targets) if targets else PASSED


def proxy_complaint(output: str, ext: ExtensionConfig) -> str:
    """The proxy's refusal `output` in one line."""
    return proxy_kind(ext.kind).complaint(output)


def failing_services(routing: Routing, ext: ExtensionConfig, failed: CheckResult) -> dict[str, str] | None:
    """Service -> the proxy's complaint, for the services without which `routing` (which failed
    its check with `failed`) passes; None when the failure is no service's (the operator's
    settings or template), or the search took too many checks."""

    def check_without(services: frozenset[str]) -> tuple[bool, str]:
        result = check_proxy_routing(routing.without(services), ext)
        return result.ok, result.output

    return culprits(routing.services_oldest_first(), check_without, failed.output)
