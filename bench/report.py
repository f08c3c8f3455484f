"""Run the benchmarks and write docs/BENCHMARKS.md with the machine, the date and the figures."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

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


def run_json(script: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(proc.stdout))


def render_section(result: dict[str, object]) -> str:
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


def main() -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [render_section(run_json("render_10k.py"))]
    text = (
        "# Benchmarks\n\nWritten by `bench/run`; do not edit by hand. Machines here are noisy: compare the\n"
        "ratios to the baselines measured in the same run, not absolute times across runs.\n\n"
        f"- Machine: {machine()}\n- Date: {now}\n\n" + "\n".join(sections)
    )
    (ROOT / "docs" / "BENCHMARKS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
