"""Validation for an extension's kind: `nginx -t` (nginx_check) or `haproxy -c` (haproxy_check),
and the bisection that finds the services making a configuration fail (render/culprits.py), each
step a real check of that kind. Wraps the two checks only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from interlock.config.schema import ExtensionConfig
from interlock.edges.haproxy_check import check_haproxy_rendered, check_haproxy_routing
from interlock.edges.nginx_check import CheckResult, check_rendered, check_routing
from interlock.model.routing import Routing
from interlock.render.culprits import culprits
from interlock.render.targets import check_targets


def _targets_grammar(targets: str) -> CheckResult:
    """nginx's run-time document against its grammar, with no `nginx -t`."""
    try:
        check_targets(targets)
    except ValueError as exc:
        return CheckResult(False, f"targets document: {exc}")
    return CheckResult(True, "")


def _taken_at_run_time(targets: str) -> CheckResult:
    """HAProxy's server slots: its runtime API checks them as it takes them."""
    return CheckResult(True, "")


@dataclass(frozen=True, slots=True)
class KindChecks:
    """How one proxy kind checks a configuration: rendered from a routing, as text about to be
    served, and its run-time document alone."""

    routing: Callable[[Routing, ExtensionConfig], CheckResult]
    rendered: Callable[[str, Routing, ExtensionConfig], CheckResult]
    targets: Callable[[str], CheckResult]


CHECKS = {
    "nginx": KindChecks(check_routing, check_rendered, _targets_grammar),
    "haproxy": KindChecks(check_haproxy_routing, check_haproxy_rendered, _taken_at_run_time),
}
"""The checks of each proxy kind, by the extension's `Kind`."""


def check_proxy_routing(routing: Routing, ext: ExtensionConfig) -> CheckResult:
    """Render `routing` for `ext`'s kind as it would be served and check it with that proxy."""
    return CHECKS[ext.kind].routing(routing, ext)


def check_proxy_rendered(text: str, routing: Routing, ext: ExtensionConfig) -> CheckResult:
    """Check `text`, rendered from `routing` for `ext`'s kind, exactly as it will be served
    (certificates stood in for)."""
    return CHECKS[ext.kind].rendered(text, routing, ext)


def check_proxy_targets(targets: str, ext: ExtensionConfig) -> CheckResult:
    """Check a run-time document alone (the configuration's text passed already)."""
    return CHECKS[ext.kind].targets(targets) if targets else CheckResult(True, "")


def failing_services(routing: Routing, ext: ExtensionConfig, failed: CheckResult) -> dict[str, str] | None:
    """Service -> the proxy's complaint, for the services without which `routing` (which failed
    its check with `failed`) passes; None when the failure is no service's (the operator's
    settings or template), or the search took too many checks."""

    def check_without(services: frozenset[str]) -> tuple[bool, str]:
        result = check_proxy_routing(routing.without(services), ext)
        return result.ok, result.output

    return culprits(routing.services_oldest_first(), check_without, failed.output)
