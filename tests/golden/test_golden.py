"""Every golden case renders exactly its expected problems and nginx.conf, and nginx accepts it.

Regenerate deliberately with `pytest tests/golden --update-golden`, then read the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.edges.nginx_check import check_routing
from tests.golden.cases import all_cases, load_case

CASE_PATHS = all_cases()


@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_golden_output(path: Path, update_golden: bool) -> None:
    case = load_case(path)
    actual = case.actual()
    if update_golden:
        path.write_text(actual)
    assert actual == path.read_text(), f"{path.name} differs; rerun with --update-golden and read the diff"


@pytest.mark.nginx
@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_nginx_accepts_golden(path: Path, nginx: str, tmp_path: Path) -> None:
    case = load_case(path)
    result = check_routing(case.routing, case.extension, workdir=tmp_path, nginx=nginx)
    assert result.ok, (
        f"nginx -t rejected {path.name}:\n{result.output}\n--- config ---\n{(tmp_path / 'nginx.conf').read_text()}"
    )


def test_there_are_golden_cases() -> None:
    assert len(CASE_PATHS) >= 20
