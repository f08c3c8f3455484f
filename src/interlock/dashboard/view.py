"""The dashboard's HTML, rendered on the server from a `CoreStatus`: the page, and the fragment
the page swaps in on each update. Every value is HTML-escaped by Jinja2's autoescape (a label
value is anybody's text). Pure: no I/O, no clock (the time is an argument).
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from interlock.wire.status import CoreStatus, RouteRow

_ENV = Environment(
    loader=PackageLoader("interlock.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _rate(row: RouteRow) -> str:
    return f"{row.rps:g}" if not row.path.startswith("(") else "-"


def _share(row: RouteRow) -> str:
    return f"{row.share_5xx * 100:.1f}%" if row.rps else "-"


def target_states(status: CoreStatus) -> dict[str, str]:
    """Cluster -> the state of its routes' targets: "serving" once every proxy of the cluster
    serves its newest configuration, "pending" while one does not yet (a target just added is
    not reached yet, one just removed may still be), "no proxy" before any reported."""
    states = {}
    for cluster in status.clusters:
        if not cluster.proxies:
            states[cluster.cluster] = "no proxy"
        elif all(p.serving_id == cluster.serving_id for p in cluster.proxies):
            states[cluster.cluster] = "serving"
        else:
            states[cluster.cluster] = "pending"
    return states


def fragment(status: CoreStatus | None, *, updated: str, error: str = "") -> str:
    """The live part of the page: core, clusters with their proxies, routes, problems."""
    return _ENV.get_template("status.html.j2").render(
        status=status,
        updated=updated,
        error=error,
        rate=_rate,
        share=_share,
        states=target_states(status) if status else {},
    )


def page(body: str) -> str:
    """The whole page around a `fragment`, with the script that keeps it current."""
    return _ENV.get_template("page.html.j2").render(body=body)


__all__ = ["fragment", "page"]
