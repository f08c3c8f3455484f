# ruff: noqa: E501  (stack files written as users write them, one flow mapping a line)
"""`interlock lint`: stack files checked offline with the core's rules, plus what only a file
shows (labels under `labels:`, networks a proxy cannot join, secrets by their file names), with
problems printed as `interlock problems` prints them and exit status 1 on errors."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from interlock.cli import main

GOOD = """
services:
  web:
    image: shop:1
    networks: [apps]
    secrets: [web-cert]
    deploy:
      labels:
        com.docker.lb.hosts: shop.example.com
        com.docker.lb.port: "8080"
        com.docker.lb.ssl_cert: shop_web-cert
  api:
    image: api:1
    networks: [apps]
    deploy:
      labels:
        - com.docker.lb.hosts=shop.example.com
        - com.docker.lb.port=8080
        - com.docker.lb.context_root=/api
        - com.docker.lb.ssl_cert=shop_web-cert
networks:
  apps:
    driver: overlay
secrets:
  web-cert:
    file: ./web.pem
"""


def lint(tmp_path: Path, capfd: pytest.CaptureFixture[str], *texts: str, args: tuple[str, ...] = ()) -> tuple[int, str]:
    files = []
    for index, text in enumerate(texts):
        path = tmp_path / f"stack{index}.yml"
        path.write_text(textwrap.dedent(text))
        files.append(str(path))
    code = main(["lint", "--stack", "shop", *args, *files])
    return code, capfd.readouterr().out


def test_a_good_stack_has_no_problems(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    code, out = lint(tmp_path, capfd, GOOD)
    assert (code, out.strip()) == (0, "stack shop: 2 services, no problems")


@pytest.mark.parametrize(
    ("stack", "label", "said"),
    [
        (
            """
            services:
              web:
                image: x
                labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80"}
            """,
            "com.docker.lb.hosts",
            "is under labels: (the container's), where Interlock does not read it; put it under deploy: labels:",
        ),
        (
            """
            services:
              web:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com}}
            """,
            "com.docker.lb.port",
            "missing; set com.docker.lb.port",
        ),
        (
            """
            services:
              web:
                image: x
                networks: [lan]
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80"}}
            networks:
              lan: {driver: bridge}
            """,
            "-",
            "network lan has driver bridge, which a proxy cannot join",
        ),
        (
            """
            services:
              web:
                image: x
                networks: [nowhere]
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80"}}
            """,
            "-",
            "names a network the file does not declare",
        ),
        (
            """
            services:
              web:
                image: x
                networks: [a, b]
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80"}}
            networks: {a: {}, b: {}}
            """,
            "com.docker.lb.network",
            "on several networks (shop_a, shop_b)",
        ),
        (
            """
            services:
              web:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80", com.docker.lb.auth_basic: users}}
            secrets:
              users: {file: ./users.htpasswd}
            """,
            "com.docker.lb.auth_basic",
            "Swarm creates it as 'shop_users', which is the name the label must give",
        ),
        (
            """
            services:
              web:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80", com.docker.lb.ssl_cert: c}}
            """,
            "com.docker.lb.ssl_cert",
            "no Docker secret named 'c'",
        ),
        (
            """
            services:
              old:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80", com.docker.lb.ssl_only: "true", com.docker.lb.ssl_cert: shop_c}}
              new:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80"}}
            secrets: {c: {external: true, name: shop_c}}
            """,
            "com.docker.lb.hosts",
            "host a.example.com is already routed by service shop_old (older) with other host options",
        ),
        (
            """
            services:
              web:
                image: x
                deploy: {labels: {com.docker.lb.hosts: a.example.com, com.docker.lb.port: "80", com.docker.lb.rate_limit: fast}}
            """,
            "com.docker.lb.rate_limit",
            "not a rate; allowed: N/s or N/m",
        ),
        ("services: {}\n", "-", "no services: mapping; not a stack file"),
    ],
)
def test_each_broken_stack_is_an_error_naming_the_label_and_what_is_allowed(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], stack: str, label: str, said: str
) -> None:
    code, out = lint(tmp_path, capfd, stack, args=("--json",))
    problems = json.loads(out)
    assert code == 1
    assert any(p["label"] == label and said in p["reason"] and p["severity"] == "error" for p in problems), problems


def test_services_sharing_a_host_are_said_and_a_later_file_overrides_an_earlier(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    override = """
    services:
      api:
        deploy:
          labels: ["com.docker.lb.hosts=shop.example.com", "com.docker.lb.port=8080", "com.docker.lb.ssl_cert=shop_web-cert"]
    """
    code, out = lint(tmp_path, capfd, GOOD, override)
    assert code == 0, "a canary is a warning"
    assert "warning" in out and "shares shop.example.com path / with service shop_web (older)" in out


def test_a_file_that_is_not_yaml_is_a_usage_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.yml").write_text("services: [\n")
    assert main(["lint", str(tmp_path / "x.yml")]) == 2
    assert "is not YAML" in capfd.readouterr().err


DOCS_STACKS = Path(__file__).parents[2] / "docs" / "STACKS.md"


@pytest.mark.parametrize("index", range(len(re.findall(r"```yaml\n", DOCS_STACKS.read_text()))))
def test_every_stack_file_of_the_docs_passes_lint(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], index: int
) -> None:
    """With Interlock's defaults and the `east` cluster a file routes through."""
    text = re.findall(r"```yaml\n(.*?)```", DOCS_STACKS.read_text(), re.S)[index]
    config = tmp_path / "interlock.toml"
    config.write_text(
        '[Extensions.default]\n[Extensions.east]\nServiceCluster = "east"\nPublishedPort = 9080\nPublishedSSLPort = 9443\n'
    )
    code, out = lint(tmp_path, capfd, text, args=("--json", "-c", str(config)))
    problems = json.loads(out) if out.strip().startswith("[") else []
    assert code == 0 and not [p for p in problems if p["severity"] == "error"], out


def test_a_network_the_clusters_fixed_networks_leave_out_is_an_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Proxies with `Networks` set join only those: a service on another network is never
    reached, which lint (and `interlock problems`) says, rather than "waiting" for ever."""
    config = tmp_path / "interlock.toml"
    config.write_text('[Extensions.default]\nNetworks = ["edge"]\n')
    code, out = lint(tmp_path, capfd, GOOD, args=("--json", "-c", str(config)))
    problems = json.loads(out)
    assert code == 1
    assert any(
        p["service"] == "shop_web"
        and "network shop_apps, which the proxies of cluster '' never join" in p["reason"]
        and "Networks lists only edge" in p["reason"]
        for p in problems
    ), problems
