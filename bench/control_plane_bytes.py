"""Control plane at scale: bytes between the roles and the core's CPU per one-service change, at
1,000 and 10,000 hosts, through the real roles (`interlock.testing.real_roles`: the core on a
swarm in memory, the extension with real `nginx -t`, an agent with real nginx, signed HTTP on
loopback).

Two changes, each repeated: a host added (a new service) and a task added to a service (with
`DynamicUpstreams = true`, a targets-only change). Bytes are the bodies of every call between
the roles while the change converges (the proxy serving it and the core knowing), by message.
Core CPU is the process time of the core's round (list, snapshot, build, publish) plus its
handling of the reports; the baseline, measured in the same run, is `json.loads` of the swarm's
API JSON.

Usage: python bench/control_plane_bytes.py [--hosts 1000,10000] [--changes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import dump
from interlock.config import default_config
from interlock.testing.real_roles import MemorySwarm, real_roles
from interlock.testing.swarm_json import swarm_json
from reload_scale import services as services_of

HTTP, HTTPS = 18480, 18843
MESSAGES = {
    "GET /v1/clusters/default/state": "core -> extension: state",
    "POST /v1/clusters/default/report": "extension -> core: report",
    "POST /v1/clusters/default/traffic": "extension -> core: counts",
    "POST /v1/clusters/default/config": "extension -> core: configuration",
    "GET /v1/config": "extension -> proxy: configuration",
    "POST /v1/report": "proxy -> extension: report",
}


async def measure(hosts: int, changes: int, *, dynamic: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="interlock-bench-"))
    config = default_config(
        TargetPort=HTTP,
        TargetSSLPort=HTTPS,
        Config={"PidPath": str(work / "proxy.pid"), "DynamicUpstreams": dynamic},
    )
    secrets = work / "secrets"
    secrets.mkdir()
    swarm = MemorySwarm(services_of(hosts), distinct=True)
    per_change: list[Counter[str]] = []
    core_cpu: list[float] = []
    baseline: list[float] = []
    try:
        async with real_roles(config, swarm, work / "roles", secrets_dir=secrets, proxy_binary="nginx") as roles:
            board = roles.core.board
            note_report = board.note_report
            report_cpu = [0.0]

            async def timed_note_report(name: str, report: Any) -> None:
                started = time.process_time()
                await note_report(name, report)
                report_cpu[0] += time.process_time() - started

            board.note_report = timed_note_report  # type: ignore[method-assign]
            await roles.served("the first configuration", timeout=600)
            for index in range(changes):
                services = services_of(hosts + index + 1) if not dynamic else services_of(hosts, bump=index)
                text = json.dumps(swarm_json({"services": services}))
                started = time.process_time()
                json.loads(text)
                baseline.append(time.process_time() - started)
                await asyncio.sleep(1.5)  # the reports of the previous change are in
                roles.counts.clear()
                report_cpu[0] = 0.0
                started = time.process_time()
                await roles.change(services)
                round_cpu = time.process_time() - started
                await roles.served(f"change {index}", timeout=600)
                await asyncio.sleep(1.5)  # what the change sets off settles: later reports, counts
                per_change.append(Counter(roles.counts))
                core_cpu.append(round_cpu + report_cpu[0])
            config_bytes = len(roles.extension.current_body)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    messages = {
        MESSAGES.get(key, key): statistics.median(c.get(key, 0) for c in per_change)
        for key in sorted({k for c in per_change for k in c})
    }
    return {
        "hosts": hosts,
        "dynamic": dynamic,
        "changes": changes,
        "config_bytes": config_bytes,
        "bytes_median": messages,
        "between_roles_median": statistics.median(sum(c.values()) for c in per_change),
        "core_between_median": statistics.median(
            sum(n for k, n in c.items() if k.startswith(("GET /v1/clusters", "POST /v1/clusters"))) for c in per_change
        ),
        "core_cpu_ms_median": statistics.median(core_cpu) * 1000,
        "baseline_json_load_cpu_ms_median": statistics.median(baseline) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="1000,10000")
    parser.add_argument("--changes", type=int, default=3)
    args = parser.parse_args()
    # nginx, our child, logs to its standard output: keep it off the JSON this prints.
    json_out = os.dup(1)
    os.dup2(2, 1)
    try:
        results = [
            asyncio.run(measure(int(count), args.changes, dynamic=dynamic))
            for count in args.hosts.split(",")
            for dynamic in (False, True)
        ]
    finally:
        sys.stdout.flush()
        os.dup2(json_out, 1)
    dump({"results": results})


if __name__ == "__main__":
    main()
