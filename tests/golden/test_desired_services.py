"""Every golden case of `desired_services` gives exactly its expected extension and proxy specs.

A case file under services/ is TOML input, then `---------- specs`, then the expected JSON. The
input holds optional `config` (Interlock TOML text), `services`/`networks` in the compact form of
`interlock.testing.swarm_json` (their routing decides which networks and certificate secrets the
proxies get), and `secrets`: the secret names that exist besides Interlock's tokens. IDs are
derived from names. Regenerate deliberately with `pytest tests/golden --update-golden`.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from interlock.config import default_config, load_config
from interlock.constants import CONTROL_NETWORK
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.swarm.desired import SwarmFacts, all_tokens, desired_services, tls_identities
from interlock.swarm.records import Ref
from interlock.swarm.specs import TLSPair
from interlock.testing.swarm_json import fake_id, swarm_json

CASES = sorted((Path(__file__).parent / "services").glob("*.txt"))
MARK = "---------- specs\n"


def actual(path: Path) -> str:
    source = path.read_text().split(MARK, 1)[0]
    spec = tomllib.loads(source)
    config = load_config(spec["config"], source=str(path)) if "config" in spec else default_config()
    snapshot = snapshot_from_api(swarm_json(spec))
    result = build(snapshot, tuple(e.service_cluster for e in config.extensions.values()))
    routings = {name: result.routings[ext.service_cluster] for name, ext in config.extensions.items()}
    secrets = (*all_tokens(config), *spec.get("secrets", ()))
    facts = SwarmFacts(
        control_network=Ref(fake_id("network", CONTROL_NETWORK), CONTROL_NETWORK, ("10.255.0.0/24",)),
        secrets={name: fake_id("secret", name) for name in secrets},
        networks={n.name: n.id for n in snapshot.networks},
        image_ids={"interlock:0.1.0": "sha256:" + "1" * 64},
        tls={
            identity: TLSPair(
                Ref(fake_id("key", identity), f"{identity}-key"), Ref(fake_id("cert", identity), f"{identity}-cert")
            )
            for identity in tls_identities(config)
        },
    )
    desired = desired_services(config, routings, facts)
    document = {
        "missing": desired.missing,
        "notes": list(desired.notes),
        "clusters": {c.name: {"extension": c.extension, "proxy": c.proxy} for c in desired.clusters},
    }
    return source + MARK + json.dumps(document, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_desired_services(path: Path, update_golden: bool) -> None:
    output = actual(path)
    if update_golden:
        path.write_text(output)
    assert output == path.read_text(), f"{path.name} differs; rerun with --update-golden and read the diff"


def test_there_are_desired_service_cases() -> None:
    assert len(CASES) >= 3
