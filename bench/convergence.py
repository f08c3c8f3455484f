"""Convergence on the real swarm: service create -> first 200 through the proxy; scale up -> the
new task receives traffic; remove -> no longer routed. `--trials` of each (default 30).

Times start when the `docker service create/scale/rm` command returns. Each is reported next to
the time Swarm itself took to get the task running (the task's own `running` timestamp), and the
part after the task was running is ours. Backend: interlock-bench-backend (busybox httpd), on a
network the proxy is already on. Requests poll every 10 ms, to 127.0.0.1:8080 only.

Usage: python bench/convergence.py [--trials 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
import urllib.error
import urllib.request
from collections.abc import Set as AbstractSet
from pathlib import Path

from common import create_backend, dump, sh, summary, until

REPO = Path(__file__).resolve().parents[1]


def status(host: str) -> tuple[int, str]:
    request = urllib.request.Request("http://127.0.0.1:8080/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, response.headers.get("x-upstream-addr", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def running_since(service: str, exclude: AbstractSet[str] = frozenset()) -> tuple[float, set[str]]:
    """When the newest running task of `service` started running, and all running task IPs."""
    ids = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", service).split()
    tasks = json.loads(sh("docker", "inspect", *ids))
    newest, addresses = 0.0, set()
    for task in tasks:
        ips = {a.split("/")[0] for att in task.get("NetworksAttachments") or () for a in att["Addresses"]}
        addresses |= ips
        if task["Status"]["State"] == "running" and not ips & exclude:
            stamp = task["Status"]["Timestamp"][:26].rstrip("Z")
            newest = max(newest, datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC).timestamp())
    return newest, addresses


def trial(index: int) -> dict[str, float]:
    name = f"conv-{index}-{int(time.time())}"
    host = f"{name}.local"
    create_backend(name, host)
    t_create = time.time()
    t_200 = until(lambda: status(host)[0] == 200)
    t_running, first_ips = running_since(name)
    sh("docker", "service", "scale", "-d", f"{name}=2")
    t_scale = time.time()
    seen: set[str] = set()

    def new_task_served() -> bool:
        seen.add(status(host)[1].split(":")[0])
        return bool(seen - first_ips - {""})

    t_new = until(new_task_served)
    t_new_running, _ = running_since(name, exclude=first_ips)
    sh("docker", "service", "rm", name)
    t_rm = time.time()
    t_gone = until(lambda: status(host)[0] == 503)
    return {
        "create_to_200": t_200 - t_create,
        "create_swarm_running": t_running - t_create,
        "create_after_running": t_200 - t_running,
        "scale_to_traffic": t_new - t_scale,
        "scale_swarm_running": t_new_running - t_scale,
        "scale_after_running": t_new - t_new_running,
        "rm_to_unrouted": t_gone - t_rm,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    sh(str(REPO / "bench" / "backend" / "build.sh"))
    results = [trial(i) for i in range(args.trials)]
    dump({"trials": args.trials, "seconds": {key: summary([r[key] for r in results]) for key in results[0]}})


if __name__ == "__main__":
    main()
