"""Benchmark: build + render a synthetic snapshot of 10,000 services x 3 tasks.

Each measurement runs in a fresh Python process (so peak RSS is its own) and is repeated; the
median is reported. A baseline is measured in the same run: `json.loads` of the same snapshot
file, i.e. the unavoidable cost of reading the input. Ratios hold across noisy machines;
absolute times drift. Prints one JSON object; `bench/run` writes docs/BENCHMARKS.md from it.

Usage: python bench/render_10k.py [--services N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from interlock.testing.swarm_json import swarm_json

CHILD = r"""
import gc, json, resource, sys, time
mode, path, gc_mode = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
text = open(path).read()
document = json.loads(text)
loaded = time.perf_counter()
result = {"load_s": loaded - start}
if mode == "pipeline":
    from interlock.config import default_config
    from interlock.model.build import build
    from interlock.model.docker_json import snapshot_from_api
    from interlock.render.nginx import render_nginx
    ext = default_config().extensions["default"]
    if gc_mode == "quiet":
        gc.disable()  # what interlock.roles.runtime.quiet_gc does around each rebuild
    t0 = time.perf_counter()
    snapshot = snapshot_from_api(document)
    t1 = time.perf_counter()
    built = build(snapshot)
    t2 = time.perf_counter()
    rendered = render_nginx(built.routings[""], ext)
    t3 = time.perf_counter()
    result.update(convert_s=t1 - t0, build_s=t2 - t1, render_s=t3 - t2, pipeline_s=t3 - t0,
                  config_bytes=len(rendered.text), hosts=len(built.routings[""].hosts),
                  problems=len(built.problems))
result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def synthetic(services: int) -> dict[str, list[dict[str, object]]]:
    described = []
    for i in range(services):
        labels = {"com.docker.lb.hosts": f"app{i}.example.com", "com.docker.lb.port": "8080"}
        if i % 10 == 1:
            labels["com.docker.lb.ssl_cert"] = f"app{i}.cert"
            labels["com.docker.lb.ssl_key"] = f"app{i}.key"
        if i % 10 == 2:
            labels["com.docker.lb.context_root"] = "/api"
            labels["com.docker.lb.context_root_rewrite"] = "true"
        if i % 10 == 3:
            labels["com.docker.lb.sticky_session_cookie"] = "session"
        if i % 10 == 4:
            labels["com.docker.lb.websocket_endpoints"] = "/ws"
        if i % 25 == 5:
            labels["com.docker.lb.ssl_passthrough"] = "true"
        described.append({"name": f"app{i}", "networks": [f"net{i % 20}"], "replicas": 3, "labels": labels})
    return swarm_json({"services": described})


def run_child(mode: str, path: Path, gc_mode: str = "quiet") -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), gc_mode], capture_output=True, text=True, check=True
    )
    return dict(json.loads(proc.stdout))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.json"
        path.write_text(json.dumps(synthetic(args.services)))
        runs = {mode: [run_child(mode, path) for _ in range(args.repeat)] for mode in ("baseline", "pipeline")}
        runs["pipeline_gc_on"] = [run_child("pipeline", path, "on") for _ in range(args.repeat)]
        snapshot_mb = round(path.stat().st_size / 1e6, 1)
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    pipeline, baseline = med["pipeline"], med["baseline"]
    print(
        json.dumps(
            {
                "services": args.services,
                "tasks": args.services * 3,
                "snapshot_mb": snapshot_mb,
                "repeat": args.repeat,
                "pipeline": pipeline,
                "pipeline_gc_on": med["pipeline_gc_on"],
                "baseline_json_load": baseline,
                "ratio_pipeline_to_json_load": pipeline["pipeline_s"] / baseline["load_s"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
