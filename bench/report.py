"""Run the benchmarks and write docs/BENCHMARKS.md with the machine, the date and the figures."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    return f"{os.cpu_count()} cores ({cpu}), {memory_kb / 1024 / 1024:.0f} GiB, Python {platform.python_version()}"


CACHE = ROOT / "build" / "bench"
ONLY: set[str] = set()


def run_json(script: str, *args: str) -> dict[str, Any]:
    """Run one benchmark, or with `--only` naming others, reuse its last result (dated)."""
    cached = CACHE / f"{script}.json"
    if ONLY and script.removesuffix(".py") not in ONLY:
        if not cached.exists():
            raise SystemExit(f"no earlier result of {script} in {CACHE}; run it (drop --only)")
        print(f"[bench] {script}: reusing {cached}", file=sys.stderr, flush=True)
        return dict(json.loads(cached.read_text()))
    result = _run_json(script, *args)
    result["measured_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def _run_json(script: str, *args: str) -> dict[str, Any]:
    print(f"[bench] {script} {' '.join(args)}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        # The error line comes first and the proxies' configurations after it: show both ends.
        errors = [line for line in proc.stderr.splitlines() if "Error" in line or "timed out" in line][:20]
        raise SystemExit(f"{script} failed:\n" + "\n".join(errors) + f"\n...\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout))


def render_section(result: dict[str, Any]) -> str:
    pipe = result["pipeline"]
    gc_on = result["pipeline_gc_on"]
    base = result["baseline_json_load"]
    assert isinstance(pipe, dict) and isinstance(gc_on, dict) and isinstance(base, dict)
    size_mb, hosts = pipe["config_bytes"] / 1e6, pipe["hosts"]
    return f"""## Render: {result["services"]:,} services x 3 tasks ({result["tasks"]:,} targets)

`bench/render_10k.py`: a synthetic snapshot in the Docker API's JSON shape ({result["snapshot_mb"]} MB; a
tenth of the hosts with TLS, context roots, sticky cookies or websockets, one in 25 passthrough),
each step in a fresh process, median of {result["repeat"]} runs. The baseline is `json.loads` of
the same file in the same run: the unavoidable cost of reading the input.

| step | seconds (collector paused, as the roles run it) | seconds (collector on) |
|---|---|---|
| baseline: `json.loads` of the snapshot | {base["load_s"]:.3f} | |
| API JSON -> snapshot types | {pipe["convert_s"]:.3f} | {gc_on["convert_s"]:.3f} |
| build (labels, targets, routing model) | {pipe["build_s"]:.3f} | {gc_on["build_s"]:.3f} |
| render (nginx.conf, {size_mb:.1f} MB, {hosts:,} hosts) | {pipe["render_s"]:.3f} | {gc_on["render_s"]:.3f} |
| **build + render** | **{pipe["build_s"] + pipe["render_s"]:.3f}** | {gc_on["build_s"] + gc_on["render_s"]:.3f} |
| convert + build + render | {pipe["pipeline_s"]:.3f} | {gc_on["pipeline_s"]:.3f} |

Peak RSS of the whole process (input text and JSON included): **{pipe["max_rss_mb"]:.0f} MB**
(baseline process: {base["max_rss_mb"]:.0f} MB). Ratio of convert+build+render to the JSON
load: {result["ratio_pipeline_to_json_load"]:.2f}.

Target (issue 2): under 1 s and 300 MB for build + render.
"""


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def convergence_section(result: dict[str, Any]) -> str:
    rows = [
        ("create -> first 200 (total)", "create_to_200"),
        ("   of which Swarm: create -> task running", "create_swarm_running"),
        ("   of which Interlock: task running -> first 200", "create_after_running"),
        ("scale up -> new task receives traffic (total)", "scale_to_traffic"),
        ("   of which Swarm: scale -> new task running", "scale_swarm_running"),
        ("   of which Interlock: task running -> traffic", "scale_after_running"),
        ("remove -> no longer routed", "rm_to_unrouted"),
    ]
    lines = [
        f"| {label} | {_ms(result['seconds'][key]['p50'])} | {_ms(result['seconds'][key]['p95'])} | "
        f"{_ms(result['seconds'][key]['p99'])} |"
        for label, key in rows
    ]
    return (
        f"""## Convergence on the swarm ({result["trials"]} trials each)

`bench/convergence.py`: one-node swarm, the default cluster of `tests/e2e/interlock.toml` (proxy
in host mode, `DynamicUpstreams = true`, so a scale-up is a task move without a reload while a
create is a new host and a reload), backend `interlock-bench-backend`
(busybox httpd) on a network the proxy is already on; times from the moment the `docker service
create/scale/rm` command returns; requests poll every 10 ms. Swarm's own part (until the task's
`running` timestamp) is the baseline measured in the same run.

| step | p50 | p95 | p99 |
|---|---|---|---|
"""
        + "\n".join(lines)
        + """

Targets (issue 4): create -> first 200 p50 under 1 s and p99 under 2 s; the part after the task
is running under 300 ms at p50.
"""
    )


ROLLING_COLUMNS = (
    "cluster",
    "rolls",
    "other operations",
    "requests",
    "failed (5xx or socket error)",
    "statuses",
    "socket errors",
    "latency p50 / p99 / max ms",
    "stale keep-alive retries",
    "nginx reloads",
    "task moves without a reload",
)
HEADER = "| " + " | ".join(ROLLING_COLUMNS) + " |\n|" + "---|" * len(ROLLING_COLUMNS)


def rolling_section(result: dict[str, Any]) -> str:
    clusters = result["clusters"]
    modes = {
        "default": "nginx, run-time routing, the default",
        "east": "nginx, `RuntimeRouting = false`, a server block per host",
        "hap": 'HAProxy, `Kind = "haproxy"`',
    }

    def row(name: str) -> str:
        run = clusters[name]
        load, latency = run["load"], run["load"]["latency_ms"]
        rolls = run["rolling_updates"]
        return (
            f"| {name} ({modes[name]}) | {rolls['stop-first']} + {rolls['start-first']} | "
            f"{run['other_service_operations']} ({run.get('operation_errors', 0)} refused) | {load['sent']:,} | "
            f"**{load['failed']}** | {load['statuses']} | {load['socket_errors'] or 'none'} | "
            f"{latency['p50']:.1f} / {latency['p99']:.1f} / {latency['max']:.1f} | "
            f"{stale(load)} | {run['proxy']['reloads']} | {run['proxy']['target_updates']} |"
        )

    retried = result.get("retry", True)

    def stale(load: dict[str, Any]) -> str:
        return str(load["stale_keepalive_retries" if retried else "stale_keepalive_failures"])

    header = HEADER.replace("stale keep-alive retries", "of which on a reused keep-alive connection")
    header = HEADER if retried else header

    return (
        f"""## Rolling updates under load

`bench/rolling.py`, once per cluster of `tests/e2e/interlock.toml`: {result["rate"]:.0f} requests/s for
{result["seconds"]:.0f} s to two 3-replica services through the cluster's proxy (32 connections, half
keep-alive, half a new connection per request) while they were rolled with `docker service update
--force` (stop-first + start-first updates) and create/update/remove operations ran on other
routed services of the same cluster (two at a time; each waits for the new task to run, so each
changes the hosts). "Requests" is what the generator sent; when answers slow down it falls
behind the nominal rate rather than queueing without bound. {CLIENTS[retried]}

{header}
"""
        + "\n".join(row(name) for name in clusters)
        + """

Target (issues 4 and 11): 0 failed in at least 100,000. **Reloads avoided**: the last two
columns. The default cluster (run-time routing) takes host changes and the task moves of the
rolling updates in the running nginx; east (a server block per host) reloads for every change,
as Interlock does.

"""
        + drain_contrast_text(result)
    )


CLIENTS = {
    True: """"Stale keep-alive retries" are requests on keep-alive connections that found the connection
closed by a proxy worker retiring after a reload, before any byte of a response; the client
retried them once on a new connection, as HTTP/1.1 clients may for idempotent requests (RFC 9112
9.3.1); they are that column, not hidden in the counts.""",
    False: """The client never retries (`--no-retry`), like Python's http.client and many SDKs: a request
that fails on a reused keep-alive connection (closed by a proxy worker retiring after a reload,
before any byte of a response) is a failed request, counted in "failed" and shown again in
"of which on a reused keep-alive connection".""",
}


def _rolling_variant(result: dict[str, Any], *, script: str, arguments: str, reloads: str) -> str:
    """`rolling_section` of another run of bench/rolling.py (without the drain contrast and the
    main run's closing paragraph): how it was run and what its reloads column counts."""
    short = {k: v for k, v in result.items() if k != "drain_contrast"}
    _title, rest = rolling_section(short).split("\n", 1)
    rest = rest.replace(
        "`bench/rolling.py`, once per cluster",
        f"`bench/{script}` (`bench/rolling.py {arguments}`), once per cluster",
        1,
    ).replace("| nginx reloads |", f"| {reloads} |")
    return rest.split("\nTarget (issues 4 and 11)")[0]


def rolling_hap_section(result: dict[str, Any]) -> str:
    """The HAProxy cluster alone, long enough for the 100,000 requests of issue 11's target."""
    return (
        "## Rolling updates on HAProxy, 100,000 requests, a client that never retries\n"
        + _rolling_variant(
            result, script="rolling_hap.py", arguments="--clusters hap --no-retry", reloads="HAProxy reloads"
        )
        + """
Target (issue 11): 0 failed in at least 100,000, counted by a client that never retries.
**Reloads avoided**: the last column, task moves HAProxy took through its runtime API; it
reloaded for host changes only (the churn's creates, updates and removes), each time handing its
listening sockets to the new worker while the old one finished its connections and closed idle
keep-alive ones with their next response.
"""
    )


def drain_contrast_text(result: dict[str, Any]) -> str:
    if "drain_contrast" not in result:
        return ""
    return (
        """**What the drain rule is worth.** The same load at half the rate against one 3-replica service
of the default cluster rolled stop-first over and over, once with an app that keeps serving 3 s
after SIGTERM (the README's rule) and once with one that stops at once. "Answered by a second
task" counts requests nginx had to retry on another task because the first one was gone
(`x-upstream-addr` lists two): the GETs here survive that retry, a POST would not.

| app | rolls | requests | failed | answered by a second task | nginx reloads | task moves without a reload |
|---|---|---|---|---|---|---|
"""
        + "\n".join(
            f"| {'keeps serving 3 s after SIGTERM' if image.endswith(':1') else 'stops at once'} | {c['rolls']} | "
            f"{c['load']['sent']:,} | {c['load']['failed']} | {c['load']['answered_by_a_second_task']} | "
            f"{c['proxy']['reloads']} | {c['proxy']['target_updates']} |"
            for image, c in result["drain_contrast"].items()
        )
        + "\n"
    )


def rolling_kinds_section(result: dict[str, Any]) -> str:
    """The same benchmark, shorter, on the nginx and HAProxy clusters in one run (its drain
    contrast, if any, is the main section's)."""
    arguments = "--clusters default east hap" + ("" if result.get("retry", True) else " --no-retry")
    return (
        "## Rolling updates: nginx and HAProxy side by side (one run)\n"
        + _rolling_variant(result, script="rolling_kinds.py", arguments=arguments, reloads="proxy reloads")
        + rolling_kinds_verdict(result)
    )


def rolling_kinds_verdict(result: dict[str, Any]) -> str:
    clusters = result["clusters"]
    lines = [
        f"- {name}: {run['load']['failed']} failed of {run['load']['sent']:,}, {run['proxy']['reloads']} reloads, "
        f"{run['proxy']['target_updates']} run-time changes"
        for name, run in clusters.items()
    ]
    return (
        """
Target (issue 21): 0 failed in at least 100,000 requests of a client that never retries, on both
kinds, through host churn and rolling updates:

"""
        + "\n".join(lines)
        + """

nginx with run-time routing (`default`) is not reloaded by any of it: hosts, routes and task
moves reach the running workers as targets deltas, so no keep-alive connection is closed under
a client. HAProxy (`hap`) takes task moves through its runtime API and reloads for host
changes, in master-worker mode with the listening sockets handed over; its old process closes
an idle keep-alive connection with the next response (`option idle-close-on-response`) instead
of under a request. nginx with a server block per host (`east`) reloads for every change, and a
retiring worker closes its idle keep-alive connections, so such a client can see a request fail
on one.
"""
    )


def dataplane_section(result: dict[str, Any]) -> str:
    rows = [
        f"| {name} | {r['rps']:,.0f} | {r['cpu_us_per_request']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
        f"{', '.join(r['errors'])} |"
        for name, r in result["results"].items()
    ]
    return (
        f"""## Data plane

`bench/dataplane.py`: one backend (nginx answering 200) on loopback, reached directly and through
each proxy, one worker/thread each; `wrk -t1 -c32`, {result["seconds"]} s per measurement,
{result["rounds"]} rounds in alternation, medians.

| target | requests/s | CPU µs per request | p50 ms | p99 ms | socket errors |
|---|---|---|---|---|---|
"""
        + "\n".join(rows)
        + f"""

Interlock's generated configuration / hand-written nginx: **{result["interlock_to_handwritten"]:.2f}**;
/ HAProxy: {result["interlock_to_haproxy"]:.2f}; / Caddy: **{result["interlock_to_caddy"]:.2f}**. With
`DynamicUpstreams = true` (a Lua balancer picks the server of every request) the generated
configuration reaches {result["dynamic_to_handwritten"]:.2f} of the hand-written nginx. Throughput here is
shared with wrk and the backend on the other CPU, so the proxy's own cost shows better in CPU
time per request (its process, all workers): hand-written / generated =
{result["cpu_handwritten_to_interlock"]:.2f} by default and {result["cpu_handwritten_to_dynamic"]:.2f} with
`DynamicUpstreams`. The difference is the Lua balancer's cost per request, what a task move
without a reload is bought with, and why that mode is a choice, not the default.
Target (issue 4): at least 0.9 of the hand-written nginx and ahead of Caddy. The generated
configuration does more per request than the hand-written one: five response headers
(`x-request-id`, `x-proxy-id`, `x-server-info`, `x-upstream-addr`, `x-upstream-response-time`;
`HideInfoHeaders` drops them) and a request id.
"""
        + haproxy_dataplane(result)
    )


def traffic_cost_section(result: dict[str, Any]) -> str:
    cpu, least, best = result["cpu_us_per_request"], result["least_cpu_us_per_request"], result["best_rps"]
    paired, top = result["metered_to_handwritten"], result["best_metered_to_handwritten"]
    met = "met" if top >= 0.9 and paired >= 0.9 else "met by the best rounds" if top >= 0.9 else "**not met**"
    rounds = ", ".join(f"{r:.2f}" for r in result["metered_to_handwritten_rounds"])
    lost = result["sent"] - result["counted"]
    kept = "every one" if lost <= 0 else f"all but {lost:,}"
    own = least["interlock (generated, TrafficMetrics = false)"] - least["nginx (hand-written)"]
    rows = "\n".join(
        f"| {name} | {best[name]:,.0f} | {result['rps'][name]:,.0f} | {least[name]:.1f} | {cpu[name]:.1f} |"
        for name in result["rps"]
    )
    return f"""## Traffic metrics: what counting costs nginx

`bench/traffic_cost.py`: the hand-written nginx, Interlock's generated configuration as by
default (`TrafficMetrics`: each request counted per route in Lua), the same with
`TrafficMetrics = false`, and with counting but `HideInfoHeaders = true`, one worker each on
CPU 1; `wrk -t1 -c32`, {result["seconds"]} s per measurement, {result["rounds"]} rounds, the order
rotating each round. This machine's noise only ever adds time, so the best round of each target
is given beside the median.

| target | requests/s, best round | requests/s, median | CPU µs per request, least | CPU µs per request, median |
|---|---|---|---|---|
{rows}

Generated with counting / hand-written nginx: **{top:.2f}** by the best rounds (without
counting {result["best_unmetered_to_handwritten"]:.2f}; with counting and `HideInfoHeaders`
{result["best_bare_to_handwritten"]:.2f}); {paired:.2f} as the median of each round's ratio (rounds:
{rounds}; without counting {result["unmetered_to_handwritten"]:.2f}). Target (issue 12): at least 0.9,
{met}. Counting costs {result["least_counting_cpu_us"]:+.1f} µs of CPU a request by the least rounds
({result["counting_cpu_us"]:+.1f} µs by the medians); the generated configuration's own
work costs {own:+.1f} µs over the hand-written one by the least rounds (a request id, the
`X-Real-IP`, `X-Forwarded-Proto` and `X-Request-ID` request headers and five response headers:
Interlock's behaviour). The counters held {result["counted"]:,} requests for the {result["sent"]:,}
wrk sent: {kept}. An earlier design sent one syslog datagram a request to the agent (Python, on
the proxy's CPU): it cost about half the throughput and the agent lost more
than half the lines under this load, so counting moved into nginx.
"""


def haproxy_dataplane(result: dict[str, Any]) -> str:
    if "generated_haproxy_to_handwritten_haproxy" not in result:
        return ""
    paired = result.get("paired_generated_haproxy_to_handwritten_haproxy")
    bare = result.get("paired_bare_haproxy_to_handwritten_haproxy")
    met = "met" if paired is not None and paired >= 0.95 else "**not met**"
    per_round = ", ".join(f"{r:.2f}" for r in result.get("paired_ratio_spread", []))
    return f"""
**HAProxy kind** (`Kind = "haproxy"`, issue 11): Interlock's generated HAProxy configuration /
a hand-written HAProxy doing the hand-written nginx's job (routes the host, forwards the client's
address): **{result["generated_haproxy_to_handwritten_haproxy"]:.2f}** by medians,
**{paired or float("nan"):.2f}** as the median of each round's ratio (rounds: {per_round}); CPU per
request, hand-written / generated: {result["cpu_handwritten_haproxy_to_generated"]:.2f}; / Interlock's generated nginx:
{result["generated_haproxy_to_generated_nginx"]:.2f}. With `HideInfoHeaders = true` (no response
headers): {bare or float("nan"):.2f} of the hand-written. Target (issue 11): at least 0.95 of the
hand-written HAProxy, {met}. The generated configuration finds the backend of a whole host by
its name (one `use_backend %[var(txn.host)]` guarded by an ACL of those names; a dynamic name
costs about what a static rule does) and tests host and path only for hosts with context roots.
What it does beyond the hand-written one is what costs: a request id (`unique-id`), the
`X-Real-IP`, `X-Forwarded-Proto` and `X-Request-ID` request headers and the five response
headers (as the nginx kind does). {_spread_note(result)}
"""


def _spread_note(result: dict[str, Any]) -> str:
    """Whether the rounds agree: a ratio whose rounds spread more than its distance from 1 says
    more about this machine than about the configurations."""
    rounds = result.get("paired_ratio_spread", [])
    if not rounds:
        return ""
    spread = max(rounds) - min(rounds)
    distance = abs(1 - statistics.median(rounds))
    if spread > distance:
        return "The rounds spread more than the difference measured: this machine's noise."
    return f"The rounds agree within {spread:.2f}, less than the difference measured."


def control_plane_section(result: dict[str, Any]) -> str:
    modes = result["per_change"]
    change = modes["static"]

    def cells(key: str) -> str:
        return " | ".join(f"{modes[m][kind][key]:.0f}" for m in ("static", "dynamic") for kind in ("task", "host"))

    size_mb = change["config_bytes"] / 1e6
    return f"""## Control plane

`bench/control_plane.py`, per change with {change["services"]:,} routed services, median of
{change["changes"]} changes of each kind, with the real role classes in one process, by default
(static upstreams) and with `DynamicUpstreams = true`:

| work (CPU ms) | static: a service gains a task | static: a host comes or goes | dynamic: a task | dynamic: a host |
|---|---|---|---|---|
| baseline: `json.loads` of the swarm's API JSON | {cells("baseline_json_load_cpu_ms_median")} |
| core: API JSON -> snapshot -> build -> publish | {cells("core_cpu_ms_median")} |
| extension: render, `nginx -t` ({size_mb:.2f} MB) if nginx.conf changed | {cells("extension_cpu_ms_median")} |
| wall time, core + extension | {cells("wall_ms_median")} |

With dynamic upstreams a new task changes only the targets, so the extension renders and skips
`nginx -t` (the nginx.conf is the one it validated), and the proxy takes the change without a
reload; loading the Lua module makes every `nginx -t` slower (next section). Peak RSS of the process
holding both roles: {modes["dynamic"]["process_max_rss_mb"]:.0f} MB. Reload time and memory against
the number of hosts, for both kinds: the next section.
"""


_BYTES_HEADER = (
    "| hosts | change | state (kB) | extension report | proxy config | proxy report | all between roles "
    "| whole config (kB, baseline) | core CPU (ms) | baseline: json.loads (ms) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def control_plane_bytes_section(result: dict[str, Any]) -> str:
    rows = []
    for r in result["results"]:
        change = "a task added (dynamic upstreams)" if r["dynamic"] else "a host added"
        messages = r["bytes_median"]

        def kb(name: str, messages: dict[str, float] = messages) -> str:
            return f"{messages.get(name, 0) / 1000:,.1f}"

        rows.append(
            f"| {r['hosts']:,} | {change} | {kb('core -> extension: state')} | {kb('extension -> core: report')} | "
            f"{kb('extension -> proxy: configuration')} | {kb('proxy -> extension: report')} | "
            f"**{r['between_roles_median'] / 1000:,.1f}** | {r['config_bytes'] / 1000:,.0f} | "
            f"{r['core_cpu_ms_median']:,.0f} | {r['baseline_json_load_cpu_ms_median']:,.0f} |"
        )
    changes = result["results"][0]["changes"]
    return f"""## Control plane at scale: bytes and core CPU per change

`bench/control_plane_bytes.py`, through the real roles in one process (`interlock.testing.real_roles`:
the core on a swarm in memory, the extension with real `nginx -t`, an agent with real nginx;
signed HTTP on loopback), median of {changes} changes. Bytes (kB) are every body the roles sent
each other while one change converged, by message; the baseline is what the same change moved
before this design: the whole configuration to each proxy (column "whole config") plus the whole
state to the extension. Core CPU is its round (list, snapshot, build, publish) and its handling
of the reports, process time; its baseline is `json.loads` of the swarm's API JSON, same run.

{_BYTES_HEADER}
{chr(10).join(rows)}

The state travels as the change from the state the extension holds (226, `ClusterStateDelta`)
and the configuration as the change from the one the proxy serves (226, `ProxyConfigDelta`,
checked against the extension's digest); reports carry ids, digests, counts and refusals, and
the core asks for the whole configuration only when it must store one. The core's CPU per
change is still a full rebuild of every service (about 0.1 ms a service): the 50 ms target at
10,000 hosts needs an incremental build, not done yet.
"""


def hot_path_section(result: dict[str, Any]) -> str:
    rows = [
        f"| {name} | {r['rps']:,} | {r['cpu_us_per_request']} | {r['p99_ms']} | {r['non2xx']} |"
        for name, r in result["results"].items()
    ]
    ratio = result["cpu_headers_to_runtime"]
    return (
        """## Hot path of run-time routing: CPU per request

`bench/hot_path.py`: one host to one backend on loopback, every proxy one worker (Traefik
`GOMAXPROCS=1`) pinned to one CPU while wrk (1 thread, 32 keep-alive connections) and the
backend share the other; """
        + f"{result['rounds']} rounds of {result['seconds']} s, each target in turn, medians. The baseline of the "
        + """target is hand-written nginx setting the same request and response headers as Interlock and
writing its request log line (to /dev/null, as the generated ones here), so the ratio
measures the design (host and route found in Lua, task picked by the Lua balancer, requests
counted per route), not the features.

| target | requests/s | CPU µs per request | p99 ms | non-2xx |
|---|---|---|---|---|
"""
        + "\n".join(rows)
        + f"""

Target (issue 21): run-time routing >= 0.85 of the hand-written nginx with the same headers, in
CPU per request (hand-written's CPU / generated's, median of the rounds' ratios):
**{ratio:.2f}**{" (met)" if ratio >= 0.85 else " (not met)"}. Against the plain hand-written nginx:
{result["cpu_plain_to_runtime"]:.2f}; `RuntimeRouting = false` against the same baseline:
{result["cpu_headers_to_static"]:.2f}; run-time routing without the per-route counting
(`TrafficMetrics = false`, the routing design alone) against the same baseline:
{result.get("cpu_headers_to_uncounted", float("nan")):.2f}; Traefik's CPU per request over run-time routing's:
{result["cpu_traefik_to_runtime"]:.2f} (above 1: Traefik spends more per request).

Where the difference goes (perf, strace and each process's user and system time, in a separate
run on this machine): every target makes the same system calls a request (two `writev`, two
`recvfrom`, a `getsockopt`, the log line's `write`) and spends the same system time within the
noise; the difference is user time in Lua, about 4 to 6 µs a request: the counting in the log
phase (1 to 3 µs, as traffic_cost.py measures it), the router in the access phase and the
balancer (`ngx.ctx`, one Host header read, the Lua balancer's parse of the task's address). An
empty `access_by_lua` costs nothing measurable; a `proxy_pass` with a variable cost a URL parse
and an upstream search a request, and is gone. Rounds on this machine vary by a third, which is
why the ratio moves between runs.
"""
    )


def traefik_swarm_section(result: dict[str, Any]) -> str:
    converge, rolls = result["create_to_first_200"], result["rolling_updates"]

    def ms(who: str) -> str:
        figures = converge[who]
        return f"{figures['p50']:,.0f} | {figures['p95']:,.0f} | {figures['max']:,.0f}"

    def load(who: str) -> str:
        figures = rolls[who]
        how = [f"{n:,} x {code}" for code, n in sorted(figures["statuses"].items()) if not 200 <= int(code) < 300]
        how += [f"{n:,} x {error}" for error, n in sorted(figures["socket_errors"].items())]
        return (
            f"{figures['sent']:,} | {figures['failed']:,} | {', '.join(how) or '-'} | "
            f"{figures['latency_ms']['p99']:,.0f}"
        )

    done = ", ".join(f"{n} {order}" for order, n in sorted(rolls["rolls"].items()))
    return f"""## Traefik beside Interlock on the same swarm

`bench/traefik_swarm.py`: Traefik {result["traefik"]} as a Swarm service the way its docs deploy it
(Swarm provider on the manager's Docker socket, `exposedByDefault=false`, otherwise its defaults:
the provider polls the swarm every 15 s, no retry middleware), host-mode published, beside
Interlock's `default` cluster (nginx, run-time routing). Every app carries both routers' labels,
so each row is the same app through both proxies.

Create -> first 200 ({converge["trials"]} services, one after the other; from the `docker service create`
command's return; Swarm itself had the task running after {converge["swarm_task_running_ms"]["p50"]:,.0f} ms
at the median):

| proxy | p50 ms | p95 ms | max ms |
|---|---|---|---|
| Interlock (nginx) | {ms("interlock_ms")} |
| Traefik | {ms("traefik_ms")} |

Rolling updates of a 3-task app ({done}, one task at a time) while a client that never retries
sends {rolls["rate_per_proxy"]:,.0f} GET/s through each proxy at once ({rolls["seconds"]:,.0f} s; half
keep-alive, half a new connection per request):

| proxy | requests | failed | how (status, or the client's error; a timeout is 10 s without an answer) | p99 ms |
|---|---|---|---|---|
| Interlock (nginx) | {load("interlock")} |
| Traefik | {load("traefik")} |
"""


def certificates_section(result: dict[str, Any]) -> str:
    def row(kind: str) -> str:
        figures = result["kinds"][kind]["summary"]

        def cell(key: str) -> str:
            return f"{figures[key]['p50']:.2f} / {figures[key]['max']:.2f}"

        keys = (
            "create_to_http_200",
            "create_to_handshake",
            "core_start_to_handshake",
            "core_saw_to_handshake",
            "rotate_to_handshake",
            "rotate_core_saw_to_handshake",
            "remove_to_refused",
        )
        return (
            f"| {kind} | " + " | ".join(cell(k) for k in keys) + f" | {result['kinds'][kind]['proxy_tasks_replaced']} |"
        )

    columns = [
        "kind",
        "create -> HTTP 200 (baseline)",
        "create -> handshake with its certificate",
        "core started -> handshake",
        "core saw it -> handshake",
        "label updated -> handshake with the new certificate",
        "core saw it -> handshake (rotation)",
        "removed -> handshake refused",
        "proxy tasks replaced",
    ]
    header = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"
    return f"""## Certificates: from a secret to the first TLS handshake, no proxy restarted

`bench/certificates.py` ({result["trials"]} trials a kind, on the swarm of tests/e2e/interlock.toml): a service
with a new certificate secret is created (its labels name it), then its certificate is rotated (a
new secret, the labels updated), then the service is removed. Seconds, p50 / max. Baseline, in
the same trials: the same service's first 200 over plain HTTP (routing alone). A new certificate
secret makes the core mount it (Swarm replaces the core's task; the proxies mount none): "core
started" is the new core task's `running` timestamp (then Python starts and the core lists the
swarm); "core saw it" is the core's log line publishing the cluster's certificates with it (read
and checked), by Docker's timestamp; from there to the handshake is the certificate's way to
every proxy.

{header}
{row("nginx")}
{row("haproxy")}

Goal (issue 22): no proxy task replaced when a certificate is added, rotated or removed, and the
new certificate served within a second of the core seeing it.
"""


def reload_scale_section(result: dict[str, Any]) -> str:
    def ms(value: float | None, digits: int = 0) -> str:
        return "a reload" if value is None else f"{value * 1000:,.{digits}f}"

    rows = [
        f"| {r['hosts']:,} | {r['kind']} | {r['config_mb']} | {ms(r['check_s'])} | {ms(r['start_s'])} | "
        f"{ms(r['reload_s_median'])} | {ms(r['reload_s_max'])} | {ms(r['reload_settled_s_median'])} | "
        f"{ms(r['task_move_s_median'], 1)} | {ms(r.get('host_add_s_median'), 1)} | {r['pss_mb']:,.0f} | "
        f"{r['rss_mb']:,.0f} |"
        for r in result["rows"]
    ]
    runtime = [r for r in result["rows"] if r["kind"] == "nginx, run-time routing"]
    largest = max(r["hosts"] for r in result["rows"])
    haproxy = next(r for r in result["rows"] if r["hosts"] == largest and r["kind"] == "HAProxy")
    static = next(r for r in result["rows"] if r["hosts"] == largest and r["kind"] == "nginx, static")
    return (
        """## Reload time and memory against the number of hosts

`bench/reload_scale.py`: every host one service with 3 tasks, rendered by Interlock and served by
a real proxy on loopback, through the proxy agent's own controller for HAProxy. Check = the
validation before every change (`nginx -t`, `haproxy -c`; the baseline: reading the text costs
what it costs whichever proxy serves it). Reload = a host added or removed: the signal until the
status port answers the new configuration's id. Old workers off = until the previous workers
stopped taking connections. Task move = one service gains a task: HAProxy through its runtime
API and nginx with run-time routing or `DynamicUpstreams` through the targets delta, no reload;
with static upstreams it is a reload. Host added = with run-time routing, one more host through
the targets delta until nginx answers its id, no reload (for run-time routing the reloads
timed are of the same nginx.conf: what a change of a listener or a certificate costs). Memory of
master + workers after the reloads and changes: PSS (a page shared by master and workers counted
once) and the sum of RSS. Medians of 4:

| hosts | kind | config MB | check ms | start ms | reload ms | reload max ms | old workers off ms \
| task move ms | host added ms | PSS MB | RSS MB |
|---|---|---|---|---|---|---|---|---|---|---|---|
"""
        + "\n".join(rows)
        + f"""

Goal (issue 11): 10,000 hosts under 500 MB and a reload under 1 s. At {largest:,} hosts HAProxy
takes {haproxy["pss_mb"]:,.0f} MB and reloads in {ms(haproxy["reload_s_median"])} ms; nginx with static
upstreams {static["pss_mb"]:,.0f} MB and {ms(static["reload_s_median"])} ms.
"""
        + "".join(
            f"""
Goal (issue 21): nginx at 10,000 hosts under 400 MB and a host added in under 100 ms with no
reload. At {r["hosts"]:,} hosts run-time routing takes {r["pss_mb"]:,.0f} MB (PSS) and adds a host in
{ms(r["host_add_s_median"], 1)} ms (the delta posted until nginx answers; each worker parses the
new host block on its next request to it); nginx.conf is {r["config_mb"]} MB whatever the hosts.
The memory is measured before any request: the hosts and upstreams are then in the shared dict
only, and each worker adds a parsed copy of a host and its upstream on the first request to it.
"""
            for r in runtime
            if r["hosts"] == largest
        )
        + """
What made HAProxy small: a host whose every request goes to the backend named after it is
routed by one `use_backend %[var(txn.host)] if interlock_direct` (the ACL lists those names, so
a Host header cannot name any other backend), not by a rule a host: HAProxy 2.6 spends
O(rules^2) reading rules (`proxy_adjust_all_maxconn`) and walks them on every request. A backend
has the next power of two of server slots (at least 4), about 4 kB each; the old "room to double"
left half of them where no task could ever go. A reload costs about twice the check: HAProxy's
master re-executes, reads the configuration and initialises every proxy and server (HAProxy's
Lua bindings of each among them) before it forks the new worker, which then takes over the
listening sockets.

Loading nginx's Lua module (Debian's lua-nginx-module 0.10.23, `DynamicUpstreams = true`) makes
every location carry its own TLS context for Lua sockets, which is most of the difference in
reload time and memory between nginx's server-block designs. Run-time routing has a few
locations per listener whatever the number of hosts (the hosts are Lua tables in the workers
and entries in a shared dict), so that cost is gone with the server blocks.
"""
    )


def node_loss_section(result: dict[str, Any]) -> str:
    def row(fault: str, what: str) -> str:
        r = result[fault]
        return (
            f"| {what} | {r['requests']:,} | **{r['failed']}** | {r['slowest_s']:.1f} | {r['swarm_down_s']['p50']:.1f} "
            f"| {r['targets_left_after_down_s']['p50']:.1f} | {r['node_ready_s']['p50']:.1f} "
            f"| {r['proxy_back_s']['p50']:.1f} | {r.get('used_again_s', {}).get('p50', float('nan')):.1f} |"
        )

    return f"""## Node loss on a multi-node swarm

`bench/node_loss.py`: a manager and two workers on this machine (`scripts/cluster`), Interlock
from tests/multinode/interlock.toml (default cluster's proxies on the workers, host mode,
`DynamicUpstreams`, the default `ProxySysctls`); an app with a task on each node; 6 client
connections load the proxy on one worker while the other worker is lost (a request is sent again
only when a kept-alive connection was closed before any answer, as HTTP/1.1 clients do);
{result["trials"]} trials per fault, medians. Swarm's own detection time is the baseline: the lost
task cannot leave the targets before Swarm says the node is Down. Times in seconds: "left
targets" is from Swarm marking the node Down (polled through `interlock routes`, about a second
per poll); "back: Ready", "proxy serves" (the returning node's proxy answers the route) and "task
used" (a task on it is a target again) are from the node coming back.

| fault | requests | failed | slowest | Swarm: Down | left targets | back: Ready | proxy serves | task used |
|---|---|---|---|---|---|---|---|---|
{row("link", "link cut (no reset, tasks unreachable)")}
{row("daemon", "daemon killed (its containers keep answering)")}

Target (issue 9): 0 failed requests through the surviving proxies; the returning node's proxy
serving sooner than the 27 s measured before. Without `ProxySysctls` (the kernel's 15
retransmissions, no keepalive), a request written into a kept-alive connection to the cut node
waited for `proxy_read_timeout`: 8 of 20,578 requests failed in the same scenario (client timeout
15 s). With `tcp_retries2 = 3` alone, 1 of 52,507 still did (three trials): a request the task had
acknowledged just before its link went leaves nothing to retransmit, so only keepalive probes
find that connection dead.

The load starts only once the surviving proxy answers the route (0.1-0.2 s after the core's
routes have every task). A try that fails at connect goes on to another task without counting
against the retries (docs/CONFIGURATION.md): in one CI run before that, a request tried two fresh
tasks on other nodes that the proxy's node could not reach yet, and got a 502.
{failover_table(result["failover"]) if "failover" in result else ""}"""


JOIN = ("task running -> every proxy serves it", "removed -> proxies off it")


def proxy_rolls_section(result: dict[str, Any]) -> str:
    def row(key: str, what: str, first: str, second: str) -> str:
        r = result[key]
        served, back = r["served_by_every_proxy_s"], r["rolled_back_s"]
        return (
            f"| {what} | {r['requests']:,} | **{r['failed']}** | {r['slowest_s']:.1f} | {r['taken_out']} "
            f"| {first}: {served['p50']:.1f} (max {served['max']:.1f}) | {second}: {back['p50']:.1f} "
            f"(max {back['max']:.1f}) |"
        )

    return f"""## Rolling the proxies behind a load balancer

`bench/proxy_rolls.py`: the swarm of the node-loss benchmark (a manager and two workers); a real
HAProxy on this machine is the load balancer in front of a cluster's two host-mode proxies (one
on each worker), checking `/_interlock/health` every 0.5 s (out after one failure, back after
one success) and never retrying a request; 3 client connections load it, to a service that
stays. **New network**: a service on a network no proxy is on is deployed to the hap cluster
(HAProxy, no fixed `Networks`): its proxies join the network, replaced one at a time, each
drained first (`ProxyDrainPeriod`, 1 s here); the service is removed and they leave it again.
**Upgrade**: `interlock up` with a new image for every role (the core, the three extensions,
five proxies), then back; the load goes through the default cluster's nginx pair.
{result["trials"]} trials each, seconds. Baseline in the same run: the new-network scenario with
`ProxyDrainPeriod = "0s"` (proxies stop as soon as Swarm says, as before this change).

| scenario | requests | failed | slowest | proxy taken out | first roll | second roll |
|---|---|---|---|---|---|---|
{row("new_network", "new network (drain 1 s)", *JOIN)}
{row("new_network_undrained", "new network, baseline (no drain)", *JOIN)}
{row("upgrade", "upgrade and back (drain 1 s)", "`up` -> every role on the new image", "`up` -> every role back")}

Targets (issue 24): a service on a new network served by every proxy within 15 s of its task
running (72 s measured before; 19.2 s at the first version of the drain, 15.7 s before the two
fixes below), with 0 failed requests
for a client that never retries. Where no proxy should restart at all, list the apps' networks
in `Networks` (docs/PRODUCTION.md).

Where a proxy's turn goes (Docker's events on each node, the agents' logs, new-network scenario,
2026-12-07): about 1.5 s of Swarm's own from the previous proxy's health check passing to this
one leaving its service's DNS; Docker's fixed 2 s wait before the stop signal, during which the
proxy now drains (its agent sees its address leave `tasks.<service>`, so the 1 s drain is over
when the signal comes: `draining: 0.0s more after the stop signal`); 0.3-1 s for the agent and
HAProxy to exit; 1-1.7 s for Docker to remove the old container and start the new one; 1.2-6 s
from the process start to serving, depending on the CPU left on this 2-core machine; then up to a
second until the health check (every second) passes. Two fixes of 2026-12-07 cut the turn: the
drain moved into Docker's wait, and the core, which re-listed the swarm ten times a second
while any task settled (a fifth of a core, and as much of dockerd's, during every roll, on the
CPU the starting proxy needed), re-lists four times a second after the first 2 s. Earlier the
same day the agent's start took 4-7 s (an RSA fallback key and DH parameters made
synchronously, and the settings schema and renderers loaded), and the second proxy to stop was
killed at the end of its grace period about once a run (the core had sent it, while it drained,
a route over a network it was not on). A third fix came from this benchmark's first run after
the drain moved (43 failed requests): a drain begun while HAProxy was reloading reached only its
old worker, and the new one served 200 again (`HAProxyController.changing` now holds run-time
changes until a reload is confirmed, and the drain counts from when HAProxy took it). This
machine was more loaded at this run than at the earlier ones (the baseline took 19.8 s, 12.5 s
earlier the same day): compare the rows with each other.
"""


def failover_table(r: dict[str, Any]) -> str:
    head = (
        "requests",
        "failed",
        "stale keep-alive retries",
        "slowest",
        "Swarm: Down",
        "core runs elsewhere (after Down)",
        "created at the cut: routed (from the cut)",
        "created after: routed",
        "of which Swarm ran its task",
    )
    p50 = [
        (r[k]["p50"], r[k]["max"])
        for k in (
            "swarm_down_s",
            "core_running_after_down_s",
            "created_at_cut_routed_s",
            "created_after_routed_s",
            "created_after_task_running_s",
        )
    ]
    cells = [f"{r['requests']:,}", f"**{r['failed']}**", str(r["stale_retries"]), f"{r['slowest_s']:.1f}"]
    cells += [f"{v:.1f} (max {most:.1f})" for v, most in p50]
    return f"""
**Manager failover.** The same swarm with two more managers (three in all) and the core pinned to
those two (`CoreConstraints`); the manager running the core is cut off (link down) under the same
load, through a worker's proxy, to an app on the workers. A service is created at the cut, another
once the new core runs. Swarm's dispatcher heartbeat is Docker's default 5 s here (2 s in the
other scenarios: see docs/PRODUCTION.md, Layout). Medians of the trials (max in brackets), seconds;
Swarm's detection and its own time to run the new service's task are the baselines; a routed time
minus its baseline is Interlock's part.

| {" | ".join(head)} |
|{"---|" * len(head)}
| {" | ".join(cells)} |
{STALE_CORE if r["failed"] else ""}
Target (issue 9): 0 failed requests while the core is lost and moved; routing resumes once Swarm
runs the core again (the proxies keep serving their last configuration meanwhile).
"""


STALE_CORE = """
**Open defect (2026-12-08).** Two successive failovers: the second trial cut the manager that the
first trial had moved the core to. From about 7.5 s after that cut, the worker's proxy answered
`503` itself (`upstream=-`: no task was tried) until the new core sent its first state, 61 s in
the reproduction (20,604 of 23,650 requests). test_failover runs one trial and has 0 failures.
The cause: the first trial's core, on the manager cut first, was still running once that
manager's link was back, because that dockerd answered "The swarm does not have a leader". It
kept its last routing from before the second trial's app existed. When the second cut took the
current core away, the extension turned to that old core, which answered with a valid signature.
The extension installed the old routing, and the proxies dropped the app's host. Not fixed yet
(issue 24's note has the plan).
"""


def dated(section: Any, result: dict[str, Any]) -> str:
    """The section's text, its title followed by when its figures were measured."""
    title, rest = section(result).split("\n", 1)
    return f"{title}\n\n_Measured {result.get('measured_at', 'in this run')}._\n{rest}"


def kept_section(script: str) -> str:
    """The section of the current docs/BENCHMARKS.md that names `bench/SCRIPT`, as it stands
    (with its own date): what `--only` keeps when no earlier result of SCRIPT is cached."""
    for chunk in (ROOT / "docs" / "BENCHMARKS.md").read_text().split("\n## ")[1:]:
        if f"`bench/{script}`" in chunk:
            return "## " + chunk.rstrip("\n") + "\n"
    raise SystemExit(f"no earlier result of {script}, in {CACHE} or docs/BENCHMARKS.md; run it (drop --only)")


def section(render: Any, script: str, *args: str) -> str:
    """One benchmark's section: measured now, or (with --only naming others) reused."""
    if ONLY and script.removesuffix(".py") not in ONLY and not (CACHE / f"{script}.json").exists():
        print(f"[bench] {script}: keeping its section of docs/BENCHMARKS.md", file=sys.stderr, flush=True)
        return kept_section(script)
    return dated(render, run_json(script, *args))


ACME_HEADER = (
    "| kind | create -> HTTP 200 (baseline) | create -> handshake with the issued certificate "
    "| core issued -> handshake | proxy tasks replaced |\n|---|---|---|---|---|"
)


def acme_section(result: dict[str, Any]) -> str:
    def row(kind: str) -> str:
        figures = result["kinds"][kind]["summary"]
        keys = ("create_to_http_200", "create_to_handshake", "core_issued_to_handshake")
        cells = " | ".join(f"{figures[k]['p50']:.2f} / {figures[k]['max']:.2f}" for k in keys)
        return f"| {kind} | {cells} | {result['kinds'][kind]['proxy_tasks_replaced']} |"

    return f"""## ACME: from `ssl_acme=true` to the first TLS handshake with the issued certificate

`bench/acme_orders.py` ({result["trials"]} trials a kind, on the swarm of tests/e2e/interlock.toml, with Debian's
pebble as the ACME server, tests/e2e/pebble.py): a service labelled `com.docker.lb.ssl_acme=true` is created; pebble's
validation asks the proxy for the HTTP-01 token. Seconds, p50 / max. Baseline, in the same trials: the
same service's first 200 over plain HTTP (routing alone). "core issued -> handshake" starts at the
core's log line saying pebble issued the certificate: from there it is the certificate's way to every
proxy. Before it: the order (the token pushed to every proxy of the cluster, then validated; the
`acme` library polls the order once a second). Each trial starts with the core settled; a core's
very first order also waits for it to mount the CA bundle and the account key (one restart).

{ACME_HEADER}
{row("nginx")}
{row("haproxy")}
"""


def policy_cost_section(result: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {figures['rps']} | {figures['cpu_us_per_request']:.2f} | {figures['non2xx']} |"
        for name, figures in result["results"].items()
    )
    nginx, haproxy = result["nginx_policy_to_none"], result["haproxy_policy_to_none"]
    return f"""## Per-service policies: CPU per request against the same route without them

`bench/policy_cost.py` ({result["rounds"]} rounds of {result["seconds"]} s): one route on loopback, each proxy one
worker or thread pinned to a CPU of its own, with and without a policy of basic authentication (nginx: a
bcrypt user, its credentials in every request, as wrk sends them to all four), an allow-list, a rate limit
(never reached, so every request is counted), a request and a response header, and CORS origins (HAProxy
refuses basic authentication, so its policy has the rest). Medians; the ratio is the median of each
round's ratio of CPU time per request.

| proxy | req/s | CPU µs/request | non-2xx |
|---|---|---|---|
{rows}

CPU per request with the policy / without: **nginx {nginx:.3f}**, **HAProxy {haproxy:.3f}** (target:
below 1.15). The bcrypt check is paid once per worker and client: each worker remembers the
`Authorization` headers that passed. On this VM (a third of the CPU stolen by its host while it
ran) the nginx ratio varies from run to run: 1.19 before workers kept the users parsed, then 1.33 and
1.05 in two runs after; the ratio of the run above is the one in bold.
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials and shorter loads (a smoke run)")
    parser.add_argument("--no-swarm", action="store_true", help="skip the benchmarks that need the swarm")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks to run (e.g. rolling); the others' last results are reused, dated",
    )
    args = parser.parse_args()
    ONLY.update(name for name in args.only.split(",") if name)
    quick = args.quick
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [section(render_section, "render_10k.py", "--repeat", "2" if quick else "5")]
    sections.append(
        section(
            dataplane_section, "dataplane.py", "--seconds", "4" if quick else "8", "--rounds", "1" if quick else "3"
        )
    )
    sections.append(
        section(
            traffic_cost_section,
            "traffic_cost.py",
            "--seconds",
            "3" if quick else "5",
            "--rounds",
            "3" if quick else "9",
        )
    )
    sections.append(
        section(hot_path_section, "hot_path.py", "--seconds", "3" if quick else "4", "--rounds", "1" if quick else "7")
    )
    sections.append(
        section(
            policy_cost_section, "policy_cost.py", "--seconds", "3" if quick else "5", "--rounds", "1" if quick else "7"
        )
    )
    sections.append(section(control_plane_section, "control_plane.py", "--changes", "5" if quick else "20"))
    sections.append(
        section(
            control_plane_bytes_section,
            "control_plane_bytes.py",
            "--hosts",
            "1000,10000",
            "--changes",
            "2" if quick else "3",
        )
    )
    sections.append(
        section(
            reload_scale_section,
            "reload_scale.py",
            "--hosts",
            "100,1000" if quick else "100,1000,10000",
            "--reloads",
            "2" if quick else "4",
        )
    )
    swarm_benchmarks = {
        "acme_orders",
        "convergence",
        "rolling",
        "rolling_kinds",
        "rolling_hap",
        "node_loss",
        "proxy_rolls",
        "traefik_swarm",
        "certificates",
    }
    # The swarm's clusters are brought up only for a swarm benchmark that runs now; the others'
    # sections are reused as they are.
    if not args.no_swarm and (not ONLY or ONLY & swarm_benchmarks):
        for network in ("e2e-a", "e2e-b", "e2e-east"):  # the networks tests/e2e/interlock.toml names
            if subprocess.run(["docker", "network", "inspect", network], capture_output=True, check=False).returncode:
                subprocess.run(
                    ["docker", "network", "create", "-d", "overlay", "--attachable", network],
                    check=True,
                    capture_output=True,
                )
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "interlock"), "up", "-c", str(ROOT / "tests" / "e2e" / "interlock.toml")],
            check=True,
            capture_output=True,
        )
    if not args.no_swarm:
        sections.append(section(convergence_section, "convergence.py", "--trials", "5" if quick else "30"))
        sections.append(section(rolling_section, "rolling.py", "--rate", "1000", "--seconds", "20" if quick else "220"))
        sections.append(section(rolling_kinds_section, "rolling_kinds.py", "--seconds", "20" if quick else "170"))
        sections.append(section(rolling_hap_section, "rolling_hap.py", "--seconds", "20" if quick else "420"))
        sections.append(section(node_loss_section, "node_loss.py", "--trials", "1" if quick else "3"))
        sections.append(section(proxy_rolls_section, "proxy_rolls.py", "--trials", "1" if quick else "2"))
        sections.append(
            section(
                traefik_swarm_section,
                "traefik_swarm.py",
                "--trials",
                "2" if quick else "5",
                "--rolls",
                "2" if quick else "6",
            )
        )
        sections.append(section(certificates_section, "certificates.py", "--trials", "1" if quick else "3"))
        sections.append(section(acme_section, "acme_orders.py", "--trials", "1" if quick else "3"))
    else:
        # Not measured now: the swarm's sections stay as they were, with their own dates.
        sections += [
            kept_section(script)
            for script in (
                "convergence.py",
                "rolling.py",
                "rolling_kinds.py",
                "rolling_hap.py",
                "node_loss.py",
                "proxy_rolls.py",
                "traefik_swarm.py",
                "certificates.py",
                "acme_orders.py",
            )
        ]
    text = (
        "# Benchmarks\n\nWritten by `bench/run`; do not edit by hand. Machines here are noisy: compare the\n"
        "ratios to the baselines measured in the same run, not absolute times across runs.\n\n"
        f"- Machine: {machine()}\n- Date: {now}\n\n" + "\n".join(sections)
    )
    (ROOT / "docs" / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
