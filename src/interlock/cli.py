"""The `interlock` command line: the three roles, the operator commands and offline tools.

Roles: `run -c /config.toml` (core), `extension`, `proxy`. Operators: `up`, `down`, `status`,
`routes`, `problems`. Offline: `render` ("what would the proxy run for this snapshot?") and
`labels` (the label reference). Exit status 2 means bad input (config, snapshot, arguments),
reported as one clear message, never a traceback. This is the top layer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from interlock import __version__
from interlock.constants import OPERATOR_TOKEN, PEER_CERT, SECRETS_DIR, SERVER_TLS
from interlock.errors import BadInput, ConfigError, DockerUnavailable, SnapshotFormatError, TemplateFailed

if TYPE_CHECKING:
    from interlock.config import CoreConfig
    from interlock.wire.status import ClusterStatus, RouteRow

# The settings schema, the renderers and the routing model are imported by the commands that use
# them: the proxy role (`interlock proxy`) starts in every replaced proxy task, and each module it
# loads is time that proxy is not serving.

EXIT_BAD_INPUT = 2
T = TypeVar("T")
EXIT_BROKEN_PIPE = 141
"""What a shell reports for a tool that SIGPIPE ended: the reader of its output went away."""


class UsageError(BadInput):
    """Bad input from the user; the message is shown as it is and the exit status is 2."""


def read_config(path: str | None) -> CoreConfig:
    from interlock.config import default_config, load_config

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


def cmd_render(args: argparse.Namespace) -> int:
    from interlock.edges.proxy_kinds import render_proxy
    from interlock.model.build import build
    from interlock.model.docker_json import snapshot_from_api

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
    result = build(
        snapshot,
        tuple(by_cluster),
        **config.build_options,
    )
    try:
        rendered = render_proxy(result.routings[cluster], config.extensions[by_cluster[cluster]])
    except TemplateFailed as exc:
        raise UsageError(f"extension {by_cluster[cluster]}: {exc}") from exc
    if args.json:
        json.dump(
            {
                "cluster": cluster,
                "config": rendered.text,
                "targets": rendered.targets,
                "digest": rendered.digest,
                "problems": [p.to_json() for p in result.problems],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        sys.stdout.write(rendered.targets if args.targets else rendered.text)
        for problem in result.problems:
            print(problem.describe(), file=sys.stderr)
    return 0


def labels_markdown() -> str:
    """The label reference table, generated from `LABELS`."""
    from interlock.model.labels import LABELS

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
    from interlock.model.labels import LABELS

    if args.markdown:
        sys.stdout.write(labels_markdown())
    else:
        for spec in LABELS:
            print(f"{spec.key}\n    allowed: {spec.allowed}\n    default: {spec.default}\n    {spec.meaning}\n")
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    """The built-in nginx template, for a `Template` that extends or replaces it."""
    directory = resources.files("interlock.render").joinpath("templates")
    sys.stdout.write(directory.joinpath(args.name).read_text())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from interlock.edges.docker_source import DockerSwarmSource
    from interlock.edges.swarm_ops import SwarmOps
    from interlock.roles.core import run_core

    config = read_config(args.config)
    source = DockerSwarmSource.connect(
        config.docker_url,
        tls_ca=config.tls_ca_cert,
        tls_cert=config.tls_cert,
        tls_key=config.tls_key,
        allow_insecure=config.allow_insecure,
    )
    asyncio.run(run_core(config, source=source, ops=SwarmOps(source.client)))
    return 0


def cmd_extension(args: argparse.Namespace) -> int:
    from interlock.roles.extension import run_extension

    asyncio.run(
        run_extension(
            name=args.name or os.environ.get("INTERLOCK_EXTENSION", "default"),
            core_url=args.core or os.environ.get("INTERLOCK_CORE_URL", "http://tasks.interlock:8080"),
        )
    )
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from interlock.roles.agent import run_agent

    asyncio.run(
        run_agent(
            extension_url=args.extension
            or os.environ.get("INTERLOCK_EXTENSION_URL", "http://tasks.interlock-extension:8080"),
            mounted_config=args.config or os.environ.get("INTERLOCK_PROXY_CONFIG", "/etc/nginx/nginx.conf"),
            kind=os.environ.get("INTERLOCK_PROXY_KIND", "nginx"),
            drain_period=float(args.drain if args.drain is not None else os.environ.get("INTERLOCK_PROXY_DRAIN", "0")),
            service=os.environ.get("INTERLOCK_PROXY_SERVICE", ""),
        )
    )
    return 0


def _operator(action: Callable[[], T]) -> T:
    """Operator commands: what the operator must fix (or a Docker that does not answer) is one
    line and exit status 2."""
    try:
        return action()
    except (BadInput, DockerUnavailable) as exc:
        raise UsageError(str(exc)) from exc


def cmd_up(args: argparse.Namespace) -> int:
    from interlock import operator

    def action() -> int:
        operator.up(args.config, debug=args.debug, wait=args.wait)
        return 0

    return _operator(action)


def cmd_down(args: argparse.Namespace) -> int:
    from interlock import operator

    def action() -> int:
        operator.down()
        return 0

    return _operator(action)


def cmd_show(args: argparse.Namespace) -> int:
    import msgspec

    from interlock import operator

    def action() -> int:
        status = operator.core_status()
        if args.json:
            payload: object
            if args.command == "routes":
                payload = status.routes
            elif args.command == "problems":
                payload = status.problems
            else:
                note = {"note": status.note} if status.note else {}
                images = {"images": operator.role_images()}
                payload = {"ready": status.ready, "core": status.core, "clusters": status.clusters, **images, **note}
            json.dump(msgspec.to_builtins(payload), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        if status.note:
            print(f"note: {status.note}", file=sys.stderr)
        if args.command == "routes":
            rows = [{**msgspec.to_builtins(r), **traffic_cells(r)} for r in status.routes]
            columns = ["cluster", "host", "path", "services", "targets", "tls", "policies", "rps", "5xx", "requests"]
            print_table(rows, columns)
        elif args.command == "problems":
            rows = [msgspec.to_builtins(p) for p in status.problems]
            print_table(rows, ["severity", "service", "label", "value", "reason"])
        else:
            print(f"core: {status.core.service} ready={status.ready}")
            for cluster in status.clusters:
                _print_cluster(cluster)
            print("images:")
            print_table([{"service": n, "image": i} for n, i in operator.role_images().items()], ["service", "image"])
        return 0

    return _operator(action)


def traffic_cells(row: RouteRow) -> dict[str, str]:
    """The traffic columns of `interlock routes` (like `kubectl top`): requests a second over
    the last 10 s, the share of them that were 5xx, and requests since the proxies started."""
    if row.path.startswith("("):  # passthrough and redirects: not counted per route
        return {"rps": "-", "5xx": "-", "requests": "-"}
    share = f"{row.share_5xx * 100:.1f}%" if row.rps else "-"
    return {"rps": f"{row.rps:g}", "5xx": share, "requests": str(row.requests)}


def _print_cluster(cluster: ClusterStatus) -> None:
    error = cluster.validation_error
    print(
        f"cluster {cluster.cluster!r} (extension {cluster.extension}): state {cluster.state_version}, "
        f"{cluster.hosts} hosts, validated config {cluster.serving_id}"
        + (f" (validation error: {error[:200]})" if error else "")
    )
    for proxy in cluster.proxies:
        state = "ok" if proxy.ok else f"error: {proxy.error[:200]}"
        print(
            f"  proxy {proxy.proxy}: serving {proxy.serving_id or 'nothing'} ({state}, {proxy.reloads} reloads,"
            f" {proxy.target_updates} run-time changes (no reload), {proxy.active_connections} connections,"
            f" certificates {proxy.certificates or 'none yet'})"
        )


def print_table(rows: list[dict[str, Any]], columns: list[str], out: Any = None) -> None:
    out = out or sys.stdout  # looked up now: a default bound at import misses a redirected stdout
    cells = [
        [", ".join(v) if isinstance(v, list | tuple) else str(v) for v in (row.get(c, "") for c in columns)]
        for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from interlock import operator
    from interlock.dashboard.server import serve

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"--listen {args.listen!r}: give HOST:PORT, such as 127.0.0.1:8500", file=sys.stderr)
        return 2
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: the dashboard has no login; anyone who reaches {host}:{port} sees it", file=sys.stderr)
    try:
        asyncio.run(serve(host, int(port), operator.follow_status))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo_app(args: argparse.Namespace) -> int:
    from interlock.testing.backend import serve

    asyncio.run(serve(args.port, args.tls_cert, args.tls_key, args.drain))
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    """Check stack files offline with the core's own rules, before `docker stack deploy`."""
    import yaml

    from interlock.model.build import build
    from interlock.model.docker_json import snapshot_from_api
    from interlock.model.grammar import is_service_name
    from interlock.problems import sorted_problems
    from interlock.swarm.compose import merged, stack_snapshot

    documents = []
    for path in args.files:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise UsageError(f"{path} is not YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise UsageError(f"{path} is not a stack file (a YAML mapping with services:)")
        documents.append(document)
    compose = merged(documents)
    stack = args.stack or str(compose.get("name") or Path(args.files[0]).resolve().parent.name)
    if not is_service_name(stack):
        raise UsageError(f"{stack!r} is not a stack name; give one with --stack (A-Z a-z 0-9 _ . -)")
    live = None
    if args.against_swarm:
        from interlock.operator import capture_snapshot

        live = _operator(lambda: snapshot_from_api(capture_snapshot()))
    config = read_config(args.config)
    found = stack_snapshot(compose, stack, ", ".join(args.files), live)
    result = build(found.snapshot, tuple(e.service_cluster for e in config.extensions.values()), **config.build_options)
    ours = {s.name for s in found.snapshot.services if s.id.startswith("lint-")}
    problems = sorted_problems([*found.problems, *(p for p in result.problems if p.service in ours)])
    if args.json:
        json.dump([p.to_json() for p in problems], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif problems:
        print_table([p.to_json() for p in problems], ["severity", "service", "label", "value", "reason"])
    else:
        print(f"stack {stack}: {len(ours)} services, no problems")
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from interlock.operator import capture_snapshot

    def action() -> int:
        json.dump(capture_snapshot(), sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0

    return _operator(action)


def cmd_inspect(args: argparse.Namespace) -> int:
    """The core's /v1/status: inside the core's container (`interlock status` runs it with
    docker exec) on the port of the core's `ListenAddr`, or, with --core HOST:PORT, from a status
    probe on the control network (how `interlock status` asks a core on another node)."""
    from interlock.edges.peer_http import local_get, read_token

    secrets = Path(SECRETS_DIR)
    token = read_token(secrets / OPERATOR_TOKEN)
    # A status probe pins the core's certificate; inside the core, its own key pair holds it.
    pinned = next((p for p in (secrets / PEER_CERT, secrets / SERVER_TLS) if p.exists()), None)
    if args.core:
        host, _, port = args.core.rpartition(":")
        # Indented: a log line over 16 KiB would be split by Docker's logging on its way back.
        status = local_get(host, int(port), "/v1/status", token, peer_cert=pinned)
        print(json.dumps(json.loads(status), indent=1))
        return 0
    config = read_config(args.config)
    host = config.listen_host
    address = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if not args.follow:
        sys.stdout.buffer.write(local_get(address, config.listen_port, "/v1/status", token, peer_cert=pinned))
        return 0
    # `interlock dashboard` reads this through one `docker exec`: a line each time the status
    # changes, asked of the core's own API (in its container) a few times a second.
    # Docker keeps an exec running after its client went away, but closes its standard input:
    # that ends this, rather than asking the core for ever.
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    last = b""
    while True:
        status = local_get(address, config.listen_port, "/v1/status", token, peer_cert=pinned)
        if status != last:
            sys.stdout.buffer.write(status.replace(b"\n", b"") + b"\n")
            sys.stdout.flush()
            last = status
        time.sleep(args.follow)


def _exit_when_stdin_closes() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


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
    render.add_argument("--json", action="store_true", help="print config, targets, digest and problems as JSON")
    render.add_argument(
        "--targets",
        action="store_true",
        help="print the targets document (hosts, routes and the servers of their upstreams) instead",
    )
    render.set_defaults(func=cmd_render)

    run = sub.add_parser("run", help="run the core (Docker socket, manager only)")
    run.add_argument("-c", "--config", default="/config.toml", help="Interlock TOML (default /config.toml)")
    run.set_defaults(func=cmd_run)

    extension = sub.add_parser("extension", help="run an extension (no Docker socket)")
    extension.add_argument("--name", help="the [Extensions.NAME] it serves (env INTERLOCK_EXTENSION)")
    extension.add_argument("--core", help="core URL (env INTERLOCK_CORE_URL)")
    extension.set_defaults(func=cmd_extension)

    proxy = sub.add_parser("proxy", help="run nginx and the proxy agent (no Docker socket)")
    proxy.add_argument("--extension", help="extension URL (env INTERLOCK_EXTENSION_URL)")
    proxy.add_argument("--config", help="mounted configuration (env INTERLOCK_PROXY_CONFIG)")
    proxy.add_argument(
        "--drain",
        type=float,
        help="seconds to serve with /_interlock/health at 503 before stopping (env INTERLOCK_PROXY_DRAIN)",
    )
    proxy.set_defaults(func=cmd_proxy)

    up = sub.add_parser("up", help="deploy or update Interlock on the swarm the Docker CLI points at")
    up.add_argument("--config", "-c", help="Interlock TOML (default: Interlock's defaults)")
    up.add_argument("--wait", type=float, default=180.0, help="seconds to wait for a proxy to answer (0: do not wait)")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="remove what `interlock up` and the core created")
    down.set_defaults(func=cmd_down)

    for name, text in (
        ("status", "components and the configuration each proxy serves"),
        ("routes", "the routing table"),
        ("problems", "every label problem"),
    ):
        show = sub.add_parser(name, help=text)
        show.add_argument("--json", action="store_true")
        show.set_defaults(func=cmd_show)

    dashboard = sub.add_parser("dashboard", help="a live web page of clusters, proxies, routes, traffic and problems")
    dashboard.add_argument("--listen", default="127.0.0.1:8500", help="HOST:PORT to serve it on (default %(default)s)")
    dashboard.set_defaults(func=cmd_dashboard)

    demo = sub.add_parser("demo-app", help="a small echo web app for demos and tests (JSON, websockets, TLS)")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--tls-cert")
    demo.add_argument("--tls-key")
    demo.add_argument("--drain", type=float, default=2.0, help="seconds to keep serving after SIGTERM")
    demo.set_defaults(func=cmd_demo_app)

    snapshot = sub.add_parser("snapshot", help="print the swarm as `render --snapshot` reads it (for dry runs)")
    snapshot.set_defaults(func=cmd_snapshot)

    inspect = sub.add_parser("inspect", help=argparse.SUPPRESS)
    inspect.add_argument("-c", "--config", default="/config.toml")
    inspect.add_argument("--core", help="HOST:PORT of a core on the control network (from a status probe)")
    inspect.add_argument(
        "--follow", type=float, default=0.0, help="a line each change, asking every N s, until standard input closes"
    )
    inspect.set_defaults(func=cmd_inspect)

    template = sub.add_parser("template", help="print the built-in nginx template (what a Template extends)")
    template.add_argument("name", nargs="?", default="nginx.conf.j2", choices=("nginx.conf.j2", "server_body.j2"))
    template.set_defaults(func=cmd_template)

    lint = sub.add_parser("lint", help="check stack files offline with the core's rules (exit 1 on errors)")
    lint.add_argument("files", nargs="+", metavar="COMPOSE_FILE", help="stack files, later ones overriding")
    lint.add_argument("--stack", help="the stack name of `docker stack deploy` (default: name:, else the directory)")
    lint.add_argument("--config", "-c", help="Interlock TOML, for its service clusters (default: Interlock's defaults)")
    lint.add_argument("--against-swarm", action="store_true", help="also check against the live swarm's services")
    lint.add_argument("--json", action="store_true")
    lint.set_defaults(func=cmd_lint)

    labels = sub.add_parser("labels", help="print the com.docker.lb.* label reference")
    labels.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")
    labels.set_defaults(func=cmd_labels)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`interlock routes | head`): stop quietly, as other tools do, and
        # keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except (UsageError, BadInput) as exc:
        # Input nothing could make usable (a crash here would be a traceback, not a message).
        print(f"interlock: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
