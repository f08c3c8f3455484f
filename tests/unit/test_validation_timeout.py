"""An `nginx -t` that does not finish is a refused configuration, not a dead extension loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock import constants
from interlock.edges import nginx_check


def test_a_validation_that_runs_out_of_time_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "nginx"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(constants, "VALIDATION_TIMEOUT", 0.3)
    result = nginx_check.check_text("events {}\n", workdir=tmp_path, nginx=str(slow))
    assert not result.ok
    assert "did not finish within" in result.output


async def test_the_proxy_agents_own_check_that_runs_out_of_time_is_a_refusal_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """The agent checks again before it swaps: a check that hangs is killed and the live
    configuration stays as it was."""
    from interlock.edges.nginx_control import NginxController
    from interlock.errors import ConfigRejected

    slow = tmp_path / "nginx"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    controller = NginxController(tmp_path / "work", nginx=str(slow), check_timeout=0.3)
    with pytest.raises(ConfigRejected, match=r"did not finish within 0\.3 s"):
        await controller.install("events {}\n", "cfg1")
    assert not controller.live.exists()
    assert controller.config_id == "" and controller.reloads == 0
