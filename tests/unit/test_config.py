"""Interlock's TOML: defaults, case-insensitive keys, durations and clear refusals."""

from __future__ import annotations

import re

import pytest

from interlock.config import default_config, load_config
from interlock.config.durations import format_duration, parse_duration
from interlock.errors import ConfigError


def test_defaults_match_interlock() -> None:
    config = load_config("[Extensions.default]\n")
    assert config.listen_addr == ":8080"
    assert config.docker_url == "unix:///var/run/docker.sock"
    assert config.poll_interval_seconds == 3.0
    ext = config.extensions["default"]
    assert (ext.published_port, ext.target_port, ext.published_ssl_port, ext.target_ssl_port) == (
        8080,
        80,
        8443,
        443,
    )
    assert (ext.proxy_replicas, ext.proxy_stop_signal, ext.proxy_stop_grace_period) == (
        2,
        "SIGQUIT",
        "5s",
    )
    assert ext.proxy_config_path == "/etc/nginx/nginx.conf"
    assert ext.publish_mode == "ingress"
    assert ext.nginx.user == "nginx"
    assert ext.nginx.rlimit_nofile == 65535
    assert ext.nginx.ssl_ciphers == "HIGH:!aNULL:!MD5"
    assert config.extension_service_name("default") == "interlock-extension"
    assert config.proxy_service_name("default") == "interlock-proxy"


def test_keys_match_case_insensitively() -> None:
    text = """
    listenaddr = ":9000"
    POLLINTERVAL = "1m30s"
    [extensions.east]
    serviceCluster = "east"
    [extensions.east.config]
    RlimitNoFile = 1000
    rlimitnofile_typo_free = 1
    """
    with pytest.raises(ConfigError, match="unknown key 'rlimitnofile_typo_free'"):
        load_config(text)
    config = load_config(text.replace("rlimitnofile_typo_free = 1", ""))
    assert config.listen_addr == ":9000"
    assert config.poll_interval_seconds == 90.0
    assert config.extensions["east"].nginx.rlimit_nofile == 1000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one extension"),
        (
            "[Extensions.d]\nPublishMode = 'hots'",
            "Extensions.d.PublishMode = 'hots': Input should be 'ingress' or 'host'",
        ),
        (
            "PollInterval = '3 seconds'\n[Extensions.d]",
            "PollInterval = '3 seconds': '3 seconds' is not a duration",
        ),
        ("[Extensions.d]\nProxyReplicas = -1", "Extensions.d.ProxyReplicas = -1"),
        ("[Extensions.d]\nPublishedPort = 70000", "Extensions.d.PublishedPort = 70000"),
        ("[Extensions.d.Config]\nSSLCiphers = 'HIGH; include x'", "Extensions.d.Config.SSLCiphers"),
        (
            "[Extensions.d.Config]\nHTTPVersion = '3'",
            "Extensions.d.Config.HTTPVersion = '3': Input should be '1.0' or '1.1'",
        ),
        ("[Extensions.d.Config]\nHTTPOptions = ['gzip on']", "must end with ';'"),
        ('[Extensions.d.Config]\nGlobalOptions = ["a;\\nb;"]', "single line"),
        ('[Extensions.d.Config]\nMainLogFormat = "it\'s"', "MainLogFormat"),
        ("[Extensions.a]\n[Extensions.b]", "both serve ServiceCluster ''"),
        (
            "[Extensions.a]\nServiceCluster='a'\n[Extensions.b]\nServiceCluster='b'",
            "both publish port 8080 in ingress mode",
        ),
        ("x = [", "not valid TOML"),
        ("[Extensions.d]\nTargetPort = 20080", "TargetPort = 20080 is a port the proxy uses inside its container"),
        ("[Extensions.d]\nTargetSSLPort = 20443", "TargetSSLPort = 20443 is a port the proxy uses"),
        ("CoreConstraints = ['node.role==worker']\n[Extensions.d]", "would place the core on a worker"),
        ("CoreConstraints = ['node.role != manager']\n[Extensions.d]", "can only narrow which manager"),
        ('[Extensions."east coast"]', "[Extensions.east coast]: an extension name is 1 to 38 of A-Z a-z 0-9 _ . -"),
        ("[Extensions." + "e" * 39 + "]", "names the extension's Docker secrets"),
        ("[Extensions.d]\nProxyDrainPeriod = '5s'", "ProxyDrainPeriod = '5s' is not shorter than ProxyStopGracePeriod"),
    ],
)
def test_bad_config_names_key_value_and_allowed(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(text)
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_host_mode_clusters_may_share_ports() -> None:
    text = "\n".join(f"[Extensions.{n}]\nServiceCluster='{n}'\nPublishMode='host'" for n in ("east", "west"))
    assert set(load_config(text).extensions) == {"east", "west"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3s", 3),
        ("500ms", 0.5),
        ("1m30s", 90),
        ("1h", 3600),
        ("0", 0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_format_duration() -> None:
    assert format_duration(5) == "5s"
    assert format_duration(0.25) == "250ms"


def test_default_config_accepts_overrides() -> None:
    assert default_config(PublishMode="host").extensions["default"].publish_mode == "host"


def test_every_key_is_documented() -> None:
    from pathlib import Path

    from interlock.config.schema import CoreConfig, ExtensionConfig, HAProxyConfig, NginxConfig

    doc = (Path(__file__).parents[2] / "docs" / "CONFIGURATION.md").read_text()
    keys = [
        f.alias
        for model in (CoreConfig, ExtensionConfig, NginxConfig, HAProxyConfig)
        for f in model.model_fields.values()
    ]
    assert [k for k in keys if f"`{k}`" not in doc] == []


def test_proxy_sysctls_default_to_failing_fast_on_vanished_peers_and_allow_only_the_containers_own() -> None:
    assert default_config().extensions["default"].proxy_sysctls == {
        "net.ipv4.tcp_retries2": "3",
        "net.ipv4.tcp_keepalive_time": "3",
        "net.ipv4.tcp_keepalive_intvl": "1",
        "net.ipv4.tcp_keepalive_probes": "3",
    }
    assert load_config("[Extensions.a]\nProxySysctls = {}\n").extensions["a"].proxy_sysctls == {}
    for key, value, message in (
        ("kernel.panic", "1", "'kernel.panic' is not allowed; allowed: net.ipv4.*"),
        ("net.core.rmem_max", "1", "'net.core.rmem_max' is not allowed"),
        ("net.ipv4.tcp_retries2", "3; x", "is not allowed; allowed: whole numbers separated by spaces"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(f'[Extensions.a]\nProxySysctls = {{ "{key}" = "{value}" }}\n')


@pytest.mark.parametrize(
    ("listen", "host", "port"), [(":8080", "", 8080), ("10.0.0.5:9000", "10.0.0.5", 9000), ("[::1]:8090", "::1", 8090)]
)
def test_listen_addr_splits_into_host_and_port(listen: str, host: str, port: int) -> None:
    config = load_config(f'ListenAddr = "{listen}"\n[Extensions.a]\n')
    assert (config.listen_host, config.listen_port) == (host, port)
