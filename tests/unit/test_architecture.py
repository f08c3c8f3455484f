"""The architecture rules hold: one-way layering, a pure middle, a docstring on every module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "interlock"


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=PACKAGE.parents[1], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_the_proxy_role_starts_without_the_schema_the_renderers_or_the_docker_sdk() -> None:
    """A replaced proxy task serves once `interlock proxy` has loaded; under load each of these
    cost it a second. import-linter keeps them out of the agent's imports; this also covers the
    command line's module, which imports them inside the commands that use them."""
    heavy = ("pydantic", "jinja2", "docker", "yaml", "interlock.config", "interlock.render.nginx")
    probe = (
        "import sys; import interlock.cli, interlock.roles.agent; "
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {heavy!r} or m in {heavy!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_every_module_says_what_it_does() -> None:
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert missing == []


def _classes() -> list[tuple[str, ast.ClassDef]]:
    return [
        (str(path.relative_to(PACKAGE)), node)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]


def test_no_class_is_over_250_lines() -> None:
    """Small parts with one job: a class that grows past this wants splitting."""
    big = [f"{where}:{node.name} ({(node.end_lineno or 0) - node.lineno + 1} lines)" for where, node in _classes()]
    assert [b for b in big if int(b.rsplit("(", 1)[1].split()[0]) > 250] == []


def test_every_error_the_package_raises_derives_from_one_root() -> None:
    import importlib
    import pkgutil

    import interlock
    from interlock.errors import InterlockError

    strays = []
    for module in pkgutil.walk_packages(interlock.__path__, "interlock."):
        if module.name.endswith("__main__"):
            continue  # runs the command line when imported
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
                and not issubclass(value, InterlockError)
            ):
                strays.append(f"{module.name}.{name}")
    assert strays == []


def test_only_the_edges_talk_to_docker_and_nothing_reads_the_repository() -> None:
    """The operator and the roles go through `interlock.edges`; the installed package never
    reaches for files of the source checkout (scripts, parents of its own path)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n == "docker" or n.startswith("docker.") for n in names) and where.parts[0] != "edges":
                offenders.append(f"{where}: imports docker")
        if "parents[" in text or "scripts/" in text.replace("(scripts/build-images)", ""):
            offenders.append(f"{where}: refers to the source checkout")
    assert offenders == []
