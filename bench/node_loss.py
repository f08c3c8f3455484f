"""Node loss on a real multi-node swarm: a worker cut off (link down) or its daemon killed, under
load through the proxy on the other worker. Reports requests and failures, the slowest request,
and, next to Swarm's own detection time, how long the lost task stayed in the targets after
Swarm marked the node Down, and how soon the node's proxy served again once it was back. Then
manager failover: two more managers, the core moved onto them, the one running it cut off under
load; requests and failures, Swarm's detection, the core running again elsewhere, and how soon a
service created at the cut and one created afterwards are routed.

Grows this machine's swarm by two workers (scripts/cluster), deploys Interlock with
tests/multinode/interlock.toml, runs `--trials` of each fault, then removes Interlock and the
nodes. Traffic goes only to the workers' addresses on the private link (own namespaces).

Usage: python bench/node_loss.py [--trials 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.multinode.conftest import deployed, with_two_more_managers  # noqa: E402
from tests.multinode.failover import lose_the_core_manager  # noqa: E402
from tests.multinode.scenario import lose_a_worker  # noqa: E402

from common import dump, summary  # noqa: E402


def totals(trials: Sequence[Any], *timings: str) -> dict[str, object]:
    """Requests and failures summed over the trials, the slowest request, each timing summarised."""
    return {
        "requests": sum(t.requests for t in trials),
        "failed": sum(t.failed for t in trials),
        "slowest_s": max(t.slowest_s for t in trials),
        **{name: summary([getattr(t, name) for t in trials]) for name in timings},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    with deployed() as cluster:
        results: dict[str, object] = {"trials": args.trials}
        for fault in ("link", "daemon"):
            trials = [lose_a_worker(cluster, fault) for _ in range(args.trials)]
            for trial in trials:
                print(trial.describe(), file=sys.stderr, flush=True)
            results[fault] = totals(
                trials,
                "swarm_down_s",
                "targets_left_after_down_s",
                "node_ready_s",
                "proxy_back_s",
                "used_again_s",
            )
        with tempfile.TemporaryDirectory() as workdir, with_two_more_managers(Path(workdir)) as grown:
            failovers = [lose_the_core_manager(grown) for _ in range(args.trials)]
        for failover in failovers:
            print(failover.describe(), file=sys.stderr, flush=True)
        results["failover"] = totals(
            failovers,
            "swarm_down_s",
            "core_running_after_down_s",
            "created_at_cut_routed_s",
            "created_after_routed_s",
            "created_after_task_running_s",
        ) | {"stale_retries": sum(t.stale_retries for t in failovers)}
    dump(results)


if __name__ == "__main__":
    main()
