"""`interlock render` and `interlock labels`: what a user sees on stdout, stderr and in $?."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.cli import labels_markdown, main
from interlock.testing.swarm_json import swarm_json

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    services = [
        {"name": "web", "networks": ["n"], "labels": {"com.docker.lb.hosts": "web.local", "com.docker.lb.port": "80"}},
        {"name": "bad", "networks": ["n"], "labels": {"com.docker.lb.hosts": "bad;host", "com.docker.lb.port": "80"}},
    ]
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(swarm_json({"services": services})))
    return path


def test_render_prints_config_and_problems(snapshot_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--snapshot", str(snapshot_file), "--targets"]) == 0
    out, err = capsys.readouterr()
    assert "host web.local 0 0" in out, "run-time routing: the hosts are in the targets document"
    assert "bad;host" not in out
    assert "error: service bad: com.docker.lb.hosts='bad;host'" in err


def test_render_targets_prints_the_servers_of_each_upstream(
    snapshot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dynamic.toml"
    config.write_text("[Extensions.default]\n[Extensions.default.Config]\nDynamicUpstreams = true\n")
    assert main(["render", "--snapshot", str(snapshot_file), "-c", str(config), "--targets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("interlock targets 1 ")
    assert "upstream web.local round_robin - web" in lines
    assert any(line.startswith("server ") for line in lines)


def test_render_json(snapshot_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--snapshot", str(snapshot_file), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["cluster"] == ""
    assert len(document["digest"]) == 64
    assert "\nhost web.local 0 0\n" in document["targets"], "run-time routing (the default): hosts in the targets"
    assert document["problems"][0] | {"reason": ""} == {
        "service": "bad",
        "label": "com.docker.lb.hosts",
        "value": "bad;host",
        "reason": "",
        "severity": "error",
    }


def test_render_selects_cluster(snapshot_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[Extensions.a]\nServiceCluster='east'\n[Extensions.b]\nPublishedPort=81\nPublishedSSLPort=444\n")
    assert main(["render", "--snapshot", str(snapshot_file), "-c", str(config), "--cluster", "", "--targets"]) == 0
    assert "host web.local 0 0" in capsys.readouterr().out
    assert main(["render", "--snapshot", str(snapshot_file), "-c", str(config), "--cluster", "west"]) == 2
    assert "--cluster 'west' is not configured; configured clusters: 'east', ''" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config_text", "snapshot_text", "message"),
    [
        ("[Extensions.d]\nPublishMode='x'", None, "Extensions.d.PublishMode = 'x'"),
        (None, "{not json", "Expecting property name"),
        (None, '{"services": 1}', "not in the Docker Engine API's shape"),
    ],
)
def test_bad_input_exits_2_with_one_message(
    tmp_path: Path,
    snapshot_file: Path,
    capsys: pytest.CaptureFixture[str],
    config_text: str | None,
    snapshot_text: str | None,
    message: str,
) -> None:
    args = ["render", "--snapshot", str(snapshot_file)]
    if config_text is not None:
        (tmp_path / "c.toml").write_text(config_text)
        args += ["-c", str(tmp_path / "c.toml")]
    if snapshot_text is not None:
        snapshot_file.write_text(snapshot_text)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_readme_label_reference_is_generated_from_the_table() -> None:
    assert labels_markdown() in README.read_text(), "regenerate with: interlock labels --markdown"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["problems", "--json"], []),
        (["routes", "--json"], []),
        (
            ["status", "--json"],
            {
                "ready": True,
                "core": {"service": "interlock", "epoch": "e", "listen_addr": ":8090"},
                "clusters": [],
                "images": {"interlock": "interlock:0.1.0@sha256:abc"},
            },
        ),
    ],
)
def test_operator_views_print_what_the_core_says_even_when_empty(
    command: list[str], expected: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from interlock import operator
    from interlock.wire.status import CoreInfo, CoreStatus

    monkeypatch.setattr(operator, "core_status", lambda: CoreStatus(True, CoreInfo("interlock", "e", ":8090")))
    monkeypatch.setattr(operator, "role_images", lambda: {"interlock": "interlock:0.1.0@sha256:abc"})
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out) == expected


def test_a_reader_that_goes_away_ends_the_cli_quietly() -> None:
    """`interlock ... | head`: no BrokenPipeError traceback, the shell's code for SIGPIPE. The
    reader here is `true`, gone before Python has started, so every write finds no reader."""
    command = f"{sys.executable} -m interlock labels --markdown | true"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stderr == "" and done.returncode == 141, (done.returncode, done.stderr)
