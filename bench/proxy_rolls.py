"""Proxies replaced under load on a real multi-node swarm, behind a load balancer that never
retries (tests/multinode/front.py: a real HAProxy checking `/_interlock/health` every 0.5 s): a
service on a network no proxy is on (the hap cluster's two host-mode proxies join it, one at a
time, then leave it when it goes), and an upgrade of every role to a new image and back. Reports
requests and failures through the balancer, how often it took a proxy out, and the times: from
the new service's task running to every proxy serving it (the issue measured 72 s before), and
from `interlock up` to every role on the new image.

Baseline in the same run: the new-network scenario with `ProxyDrainPeriod = "0s"` (the proxies
stop without draining, as before), so that what draining buys is measured, not assumed.

Grows this machine's swarm by two workers (scripts/cluster), deploys Interlock with
tests/multinode/interlock.toml, then removes Interlock and the nodes. Traffic goes only to the
workers' addresses on the private link (own namespaces) and to loopback.

Usage: python bench/proxy_rolls.py [--trials 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.swarm import INTERLOCK, sh  # noqa: E402
from tests.multinode.conftest import CONFIG, deployed  # noqa: E402
from tests.multinode.rolling import RollFigures, new_network, upgrade  # noqa: E402

from common import dump, summary  # noqa: E402

DRAINED = '[Extensions.hap]\nProxyDrainPeriod = "1s"\n'
UNDRAINED = '[Extensions.hap]\nProxyDrainPeriod = "0s"\n'


def totals(trials: Sequence[RollFigures]) -> dict[str, object]:
    for trial in trials:
        print(trial.describe(), file=sys.stderr, flush=True)
    return {
        "requests": sum(t.requests for t in trials),
        "failed": sum(t.failed for t in trials),
        "slowest_s": max(t.slowest_s for t in trials),
        "taken_out": sum(t.taken_out for t in trials),
        "served_by_every_proxy_s": summary([t.served_by_every_proxy_s for t in trials]),
        "rolled_back_s": summary([t.rolled_back_s for t in trials]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    with deployed() as cluster, tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        results: dict[str, object] = {"trials": args.trials}
        results["new_network"] = totals([new_network(cluster, workdir) for _ in range(args.trials)])
        results["upgrade"] = totals([upgrade(cluster, workdir) for _ in range(args.trials)])
        assert DRAINED in CONFIG.read_text(), "tests/multinode/interlock.toml's hap cluster drains for 1 s"
        undrained = workdir / "undrained.toml"
        undrained.write_text(CONFIG.read_text().replace(DRAINED, UNDRAINED))
        sh(INTERLOCK, "up", "-c", str(undrained), "--wait", "240", timeout=400)
        try:
            results["new_network_undrained"] = totals(
                [new_network(cluster, workdir, drained=False) for _ in range(args.trials)]
            )
        finally:
            sh(INTERLOCK, "up", "-c", str(CONFIG), "--wait", "240", timeout=400)
    dump(results)


if __name__ == "__main__":
    main()
