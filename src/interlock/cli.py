"""The `interlock` command line: offline tools and the entry points of the three roles.

`render` answers "what would the proxy run for this snapshot?" without a swarm; `labels` prints
the label reference from the declarative table. Exit status 2 means bad input (config, snapshot,
arguments), reported as one clear message, never a traceback. This is the top layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from interlock import __version__
from interlock.config import ConfigError, CoreConfig, default_config, load_config
from interlock.model.build import build
from interlock.model.docker_json import SnapshotFormatError, snapshot_from_api
from interlock.model.labels import LABELS
from interlock.problems import Problem
from interlock.render.nginx import render_nginx

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the user; the message is shown as it is and the exit status is 2."""


def read_config(path: str | None) -> CoreConfig:
    if path is None:
        return default_config()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        return load_config(text, source=path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _problem_json(problem: Problem) -> dict[str, str]:
    return {
        "service": problem.service,
        "label": problem.label,
        "value": problem.value,
        "reason": problem.reason,
        "severity": str(problem.severity),
    }


def cmd_render(args: argparse.Namespace) -> int:
    config = read_config(args.config)
    try:
        document = json.loads(Path(args.snapshot).read_text())
        snapshot = snapshot_from_api(document)
    except OSError as exc:
        raise UsageError(f"cannot read snapshot {args.snapshot}: {exc.strerror}") from exc
    except (json.JSONDecodeError, SnapshotFormatError) as exc:
        raise UsageError(f"{args.snapshot}: {exc}") from exc
    by_cluster = {ext.service_cluster: name for name, ext in config.extensions.items()}
    if args.cluster is not None and args.cluster not in by_cluster:
        known = ", ".join(repr(c) for c in by_cluster)
        raise UsageError(f"--cluster {args.cluster!r} is not configured; configured clusters: {known}")
    cluster = args.cluster if args.cluster is not None else next(iter(by_cluster))
    result = build(snapshot, tuple(by_cluster))
    rendered = render_nginx(result.routings[cluster], config.extensions[by_cluster[cluster]])
    if args.json:
        json.dump(
            {
                "cluster": cluster,
                "config": rendered.text,
                "digest": rendered.digest,
                "problems": [_problem_json(p) for p in result.problems],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        sys.stdout.write(rendered.text)
        for problem in result.problems:
            print(problem.describe(), file=sys.stderr)
    return 0


def labels_markdown() -> str:
    """The label reference table, generated from `LABELS`."""
    rows = ["| Label | Allowed values | Default | Meaning |", "|---|---|---|---|"]
    for spec in LABELS:
        cells = [
            f"`{spec.key}`",
            spec.allowed,
            spec.default,
            f"{spec.meaning} Example: `{spec.example}`",
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def cmd_labels(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(labels_markdown())
    else:
        for spec in LABELS:
            print(f"{spec.key}\n    allowed: {spec.allowed}\n    default: {spec.default}\n    {spec.meaning}\n")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="interlock", description="Application routing for Docker Swarm.")
    top.add_argument("--version", action="version", version=f"interlock {__version__}")
    top.add_argument("-D", "--debug", action="store_true", help="debug logging")
    sub = top.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="print the proxy configuration for a snapshot file")
    render.add_argument(
        "--snapshot",
        required=True,
        help="JSON: {services, tasks, networks, nodes} in Docker API shape",
    )
    render.add_argument("--config", "-c", help="Interlock TOML (default: Interlock's defaults)")
    render.add_argument("--cluster", help="service cluster to render (default: the first extension's)")
    render.add_argument("--json", action="store_true", help="print config, digest and problems as one JSON object")
    render.set_defaults(func=cmd_render)

    labels = sub.add_parser("labels", help="print the com.docker.lb.* label reference")
    labels.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")
    labels.set_defaults(func=cmd_labels)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"interlock: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
