"""The Docker service specs the core and `interlock up` deploy."""

from __future__ import annotations

import http.server
import socketserver
import subprocess
import threading
from dataclasses import replace
from typing import Any

import pytest

from interlock.config import load_config
from interlock.constants import LABEL_SPEC
from interlock.errors import ConfigError
from interlock.swarm.records import Ref
from interlock.swarm.specs import (
    ClusterRefs,
    TLSPair,
    core_spec,
    extension_spec,
    http_check,
    proxy_spec,
    spec_hash,
    status_probe_spec,
)

CONFIG = load_config("""
[Extensions.east]
ServiceCluster = "east"
ServiceName = "ext-east"
ProxyServiceName = "proxy-east"
ProxyReplicas = 3
ProxyStopSignal = "SIGTERM"
ProxyStopGracePeriod = "7s"
ProxyUpdateDelay = "2s"
ProxyConstraints = ["node.labels.nodetype==loadbalancer"]
ProxyPlacementPreferences = ["spread=node.labels.zone"]
PublishMode = "host"
PublishedPort = 80
PublishedSSLPort = 443
Args = ["-D"]
ProxyArgs = ["--debug", ""]
[Extensions.east.Labels]
ext_region = "east"
[Extensions.east.ProxyLabels]
proxy_region = "east"
[Extensions.east.ProxyContainerLabels]
task_label = "yes"
""")
REFS = ClusterRefs(
    control_network=Ref("ctl", "interlock"),
    extension_token=Ref("et", "interlock-extension-token-east"),
    proxy_token=Ref("pt", "interlock-proxy-token-east"),
    core_url="http://tasks.interlock:8080",
    app_networks=(Ref("n2", "zeta"), Ref("n1", "alpha")),
)


def test_proxy_spec_follows_the_config() -> None:
    spec = proxy_spec(CONFIG, "east", REFS)
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Name"] == "proxy-east"
    assert spec["Labels"]["type"] == "com.docker.interlock.core.proxy"
    assert spec["Labels"]["proxy_region"] == "east"
    assert container["Labels"] == {"task_label": "yes"}
    assert spec["Mode"] == {"Replicated": {"Replicas": 3}}
    assert container["StopSignal"] == "SIGTERM" and container["StopGracePeriod"] == 7_000_000_000
    assert container["Args"] == ["-D", "proxy"]
    assert spec["UpdateConfig"]["Delay"] == 2_000_000_000 and spec["UpdateConfig"]["FailureAction"] == "rollback"
    assert spec["UpdateConfig"]["Parallelism"] == 1
    placement = spec["TaskTemplate"]["Placement"]
    assert placement["Constraints"] == ["node.labels.nodetype==loadbalancer"]
    assert placement["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
    assert [p["PublishedPort"] for p in spec["EndpointSpec"]["Ports"]] == [80, 443]
    assert {p["PublishMode"] for p in spec["EndpointSpec"]["Ports"]} == {"host"}
    assert [n["Target"] for n in spec["TaskTemplate"]["Networks"]] == ["ctl", "n1", "n2"]
    # Its token only: no certificate secret (they come from the core), no Docker socket.
    assert [(s["SecretName"], s["File"]["Name"]) for s in container["Secrets"]] == [
        ("interlock-proxy-token-east", "interlock-proxy-token"),
    ]
    assert "INTERLOCK_EXTENSION_URL=http://tasks.ext-east:8080" in container["Env"]
    # Its work files (certificates and keys among them) in memory only.
    assert container["Mounts"] == [{"Type": "tmpfs", "Target": "/var/lib/interlock", "TmpfsOptions": {"Mode": 0o700}}]


def test_extension_spec_has_no_socket_and_the_extension_settings() -> None:
    spec = extension_spec(CONFIG, "east", REFS)
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert spec["Name"] == "ext-east"
    assert spec["Labels"]["ext_region"] == "east"
    assert container["Args"] == ["-D", "extension"]
    assert "Mounts" not in container
    assert "INTERLOCK_CORE_URL=http://tasks.interlock:8080" in container["Env"]


def a_core_spec(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "name": "interlock",
        "image": "interlock:x",
        "config": Ref("c", "cfg"),
        "control_network": Ref("n", "interlock"),
        "operator_token": Ref("o", "interlock-operator-token"),
        "extension_tokens": [Ref("e2", "interlock-extension-token-west"), Ref("e1", "interlock-extension-token-east")],
    }
    return core_spec(**(arguments | overrides))


def test_only_the_core_mounts_the_socket_on_a_manager() -> None:
    spec = a_core_spec()
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Mounts"] == [{"Type": "bind", "Source": "/var/run/docker.sock", "Target": "/var/run/docker.sock"}]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==manager"]
    assert container["Args"] == ["run", "-c", "/config.toml"]


def test_core_constraints_narrow_the_managers_and_keep_the_manager_constraint() -> None:
    def placed(constraints: list[str]) -> list[str]:
        return list(a_core_spec(constraints=constraints)["TaskTemplate"]["Placement"]["Constraints"])

    assert placed(["node.labels.core==yes"]) == ["node.role==manager", "node.labels.core==yes"]
    assert placed(["node.role==manager"]) == ["node.role==manager"]


def test_a_status_probe_is_a_one_shot_job_on_this_node_with_the_operator_token_only() -> None:
    spec = status_probe_spec(
        name="interlock-status-1",
        image="interlock:x",
        control_network=Ref("n", "interlock"),
        operator_token=Ref("o", "interlock-operator-token"),
        core_address="10.0.9.3:8080",
        node_id="node-a",
    )
    template = spec["TaskTemplate"]
    assert spec["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert template["ContainerSpec"]["Args"] == ["inspect", "--core", "10.0.9.3:8080"]
    assert [s["SecretName"] for s in template["ContainerSpec"]["Secrets"]] == ["interlock-operator-token"]
    assert "Mounts" not in template["ContainerSpec"]
    assert template["Placement"]["Constraints"] == ["node.id==node-a"]
    assert template["Networks"] == [{"Target": "n"}]
    assert spec["Labels"]["com.docker.interlock.role"] == "status-probe"


def test_spec_hash_is_stable_and_follows_changes() -> None:
    first, again = proxy_spec(CONFIG, "east", REFS), proxy_spec(CONFIG, "east", REFS)
    assert spec_hash(first) == spec_hash(again) != ""
    more = proxy_spec(CONFIG, "east", replace(REFS, app_networks=(*REFS.app_networks, Ref("n3", "beta"))))
    assert spec_hash(more) != spec_hash(first)
    assert LABEL_SPEC in first["Labels"]


def test_a_new_image_under_the_same_tag_changes_every_role_spec() -> None:
    image = CONFIG.extensions["east"].image
    old, new = replace(REFS, image_ids={image: "sha256:old"}), replace(REFS, image_ids={image: "sha256:new"})
    for make in (proxy_spec, extension_spec):
        before, after = make(CONFIG, "east", old), make(CONFIG, "east", new)
        assert spec_hash(before) != spec_hash(after)
        assert "INTERLOCK_IMAGE_ID=sha256:new" in after["TaskTemplate"]["ContainerSpec"]["Env"]
    core = [
        core_spec(
            name="interlock",
            image=image,
            config=Ref("c", "cfg"),
            control_network=Ref("n", "i"),
            operator_token=Ref("o", "o"),
            extension_tokens=[Ref("e", "e")],
            image_id=i,
        )
        for i in "ab"
    ]
    assert spec_hash(core[0]) != spec_hash(core[1])


def test_interlock_style_args_make_a_command_line_the_roles_accept() -> None:
    """Interlock's configs set `Args = ["-D"]`; it must mean debug logging, not a crash loop."""
    from interlock.cli import parser

    refs = ClusterRefs(Ref("n", "interlock"), Ref("e", "e"), Ref("p", "p"), "http://tasks.interlock:8080")
    for spec in (extension_spec(CONFIG, "east", refs), proxy_spec(CONFIG, "east", refs)):
        args = parser().parse_args(spec["TaskTemplate"]["ContainerSpec"]["Args"])
        assert args.debug is True
        assert args.command in ("extension", "proxy")


def test_args_without_a_meaning_for_the_roles_are_refused_with_what_is_allowed() -> None:
    import pytest

    from interlock.errors import ConfigError

    with pytest.raises(ConfigError, match=r"Extensions.a.ProxyArgs.*'--extra' is not allowed; allowed: -D or --debug"):
        load_config('[Extensions.a]\nProxyArgs = ["--extra"]\n')


def test_each_role_holds_its_own_tls_key_and_only_the_certificate_of_the_server_it_calls() -> None:
    refs = replace(
        REFS,
        core_cert=Ref("cc", "interlock-tls-c0-cert"),
        extension_tls=TLSPair(Ref("ek", "x-key"), Ref("ec", "x-cert")),
    )
    extension = extension_spec(CONFIG, "east", refs)["TaskTemplate"]["ContainerSpec"]["Secrets"]
    proxy = proxy_spec(CONFIG, "east", refs)["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert [(s["SecretName"], s["File"]["Name"]) for s in extension] == [
        ("interlock-extension-token-east", "interlock-extension-token"),
        ("interlock-proxy-token-east", "interlock-proxy-token"),
        ("interlock-tls-c0-cert", "interlock-peer-cert.pem"),
        ("x-key", "interlock-tls.pem"),
    ]
    assert [(s["SecretName"], s["File"]["Name"]) for s in proxy][:2] == [
        ("interlock-proxy-token-east", "interlock-proxy-token"),
        ("x-cert", "interlock-peer-cert.pem"),
    ]
    assert "x-key" not in {s["SecretName"] for s in proxy}
    core = a_core_spec(tls=Ref("k", "interlock-tls-c0-key"))["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert ("interlock-tls-c0-key", "interlock-tls.pem") in [(s["SecretName"], s["File"]["Name"]) for s in core]


def test_the_monitoring_network_is_on_every_role_and_nothing_else_changes() -> None:
    """`MonitoringNetwork`: the core, the extension and the proxy join it beside the control
    network (and the proxy's app networks), so a Prometheus there reaches every role's :9180."""
    monitoring = Ref("mon", "interlock-monitoring")
    refs = replace(REFS, monitoring_network=monitoring)
    networks = {
        role: [n["Target"] for n in spec["TaskTemplate"]["Networks"]]
        for role, spec in (
            ("proxy", proxy_spec(CONFIG, "east", refs)),
            ("extension", extension_spec(CONFIG, "east", refs)),
            ("core", a_core_spec(monitoring_network=monitoring)),
        )
    }
    assert networks == {"proxy": ["ctl", "mon", "n1", "n2"], "extension": ["ctl", "mon"], "core": ["n", "mon"]}
    assert [n["Target"] for n in extension_spec(CONFIG, "east", REFS)["TaskTemplate"]["Networks"]] == ["ctl"]


def test_the_monitoring_network_cannot_be_one_interlock_or_docker_keeps() -> None:
    for name in ("interlock", "ingress", "host"):
        with pytest.raises(ConfigError, match="MonitoringNetwork"):
            load_config(f'MonitoringNetwork = "{name}"\n[Extensions.default]\n')
    assert load_config('MonitoringNetwork = "mon"\n[Extensions.default]\n').monitoring_network == "mon"


def test_the_haproxy_stats_password_secret_is_mounted_into_the_proxy_only() -> None:
    config = load_config(
        '[Extensions.hap]\nKind = "haproxy"\n[Extensions.hap.Config]\nAdminUser = "admin"\nAdminPassSecret = "pw"\n'
    )
    refs = replace(REFS, admin_pass=Ref("s9", "pw"))
    proxy = proxy_spec(config, "hap", refs)["TaskTemplate"]["ContainerSpec"]
    extension = extension_spec(config, "hap", refs)["TaskTemplate"]["ContainerSpec"]
    assert ("pw", "interlock-admin-pass") in [(s["SecretName"], s["File"]["Name"]) for s in proxy["Secrets"]]
    assert "pw" not in [s["SecretName"] for s in extension["Secrets"]]
    with pytest.raises(ConfigError, match="AdminPass and AdminPassSecret both set"):
        load_config(
            '[Extensions.hap]\nKind = "haproxy"\n[Extensions.hap.Config]\nAdminPass = "x"\nAdminPassSecret = "pw"\n'
        )


@pytest.mark.parametrize(("answer", "healthy"), [(200, True), (404, True), (503, False), (None, False)])
def test_the_health_command_passes_below_500_and_fails_without_an_answer(answer: int | None, healthy: bool) -> None:
    """The proxies' health command (bash, no Python started) against a real HTTP server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answer or 200)
            self.end_headers()
            self.wfile.write(b"first line\nlast line")

        def log_message(self, *args: object) -> None:
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as server:
        port = server.server_address[1] if answer else 1
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            ran = subprocess.run(
                http_check(port, "/interlock/config")[1:], capture_output=True, timeout=10, check=False
            )
        finally:
            server.shutdown()
    assert (ran.returncode == 0) is healthy, ran


def test_the_health_command_takes_only_a_plain_path() -> None:
    with pytest.raises(ValueError, match="plain absolute path"):
        http_check(8080, "/x; rm -rf /")
