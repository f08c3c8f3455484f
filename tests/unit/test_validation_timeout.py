"""An `nginx -t` that does not finish is a refused configuration, not a dead extension loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.edges import nginx_check


def test_a_validation_that_runs_out_of_time_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "nginx"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(nginx_check, "VALIDATION_TIMEOUT", 0.3)
    result = nginx_check.check_text("events {}\n", workdir=tmp_path, nginx=str(slow))
    assert not result.ok
    assert "did not finish within" in result.output
