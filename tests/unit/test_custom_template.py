"""An extension's `Template`: extending the built-in one through its hook blocks, the same
printing rules in Jinja2's sandbox, and a bad template never producing a configuration."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.config import default_config, load_config
from interlock.config.schema import ExtensionConfig
from interlock.edges import template_guard
from interlock.errors import ConfigError, TemplateFailed
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing
from interlock.render.nginx import render_nginx
from interlock.testing.swarm_json import swarm_json

HOOKS = """{% extends "nginx.conf.j2" %}
{% block main %}
# main hook
{% endblock %}
{% block http %}
    add_header X-Interlock-Template yes always;
{% endblock %}
{% block http_server %}
        # plain server for {{ host.name|q }}
{% endblock %}
{% block tls_server %}
        # tls server for {{ host.name|q }}
{% endblock %}
{% block stream %}
    # stream hook
{% endblock %}
"""


def ext_with(template: str, **config: object) -> ExtensionConfig:
    return default_config(Template=template, Config=config).extensions["default"]


def routing() -> Routing:
    services: list[dict[str, Any]] = [
        {"name": "web", "networks": ["n"], "labels": {"com.docker.lb.hosts": "web.local", "com.docker.lb.port": "80"}},
        {
            "name": "tls",
            "networks": ["n"],
            "labels": {
                "com.docker.lb.hosts": "tls.local",
                "com.docker.lb.port": "80",
                "com.docker.lb.ssl_cert": "tls.crt",
                "com.docker.lb.ssl_key": "tls.key",
                "com.docker.lb.context_root": "/app",
            },
        },
    ]
    return build(snapshot_from_api(swarm_json({"services": services}))).routings[""]


def test_extending_without_overriding_anything_prints_the_built_in_configuration() -> None:
    plain = default_config().extensions["default"]
    extended = ext_with('{% extends "nginx.conf.j2" %}')
    assert render_nginx(routing(), extended).text == render_nginx(routing(), plain).text


def test_hook_blocks_add_lines_where_they_belong() -> None:
    # A server block per host: without run-time routing.
    text = render_nginx(routing(), ext_with(HOOKS, RuntimeRouting=False)).text
    main, rest = text.split("events {", 1)
    http, stream = rest.split("\nstream {", 1)
    assert "# main hook" in main
    assert "    add_header X-Interlock-Template yes always;" in http
    assert "        # plain server for web.local" in http and "        # plain server for tls.local" in http
    assert "        # tls server for tls.local" in http and "tls server for web.local" not in http
    assert "    # stream hook" in stream


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # A label value printed without |q: the same guard as the built-in template.
        (
            '{% extends "nginx.conf.j2" %}{% block http_server %}# {{ host.name }}{% endblock %}',
            "printed a value that is not quoted",
        ),
        ('{% extends "nginx.conf.j2" %}{% block http %}{{ view.__class__ }}{% endblock %}', "SecurityError"),
        # Jinja2's own ways to mark a value safe are no quoting for nginx.
        *(
            (
                '{% extends "nginx.conf.j2" %}{% block http_server %}# {{ host.name' + how + " }}{% endblock %}",
                "marks it safe for HTML",
            )
            for how in ("|safe", "|e", "|forceescape", "|tojson", "|string|safe")
        ),
        ('{% extends "nginx.conf.j2" %}{% block http %}{{ nothing.here }}{% endblock %}', "UndefinedError"),
        ('{% extends "no-such.j2" %}', "TemplateNotFound"),
        ("events {}\nhttp {}\n", "does not print {{ view.config_id }}"),
    ],
)
def test_a_template_that_cannot_render_safely_produces_no_configuration(template: str, expected: str) -> None:
    with pytest.raises(TemplateFailed, match="Template") as caught:
        render_nginx(routing(), ext_with(template, RuntimeRouting=False))
    assert expected in str(caught.value)


def test_with_run_time_routing_the_server_hooks_are_in_the_catch_all_servers() -> None:
    hooks = HOOKS.replace("plain server for {{ host.name|q }}", "catch-all {{ view.http_port }}")
    hooks = hooks.replace("tls server for {{ host.name|q }}", "tls catch-all")
    text = render_nginx(routing(), ext_with(hooks)).text
    http = text.split("events {", 1)[1].split("\nstream {", 1)[0]
    assert http.count("        # catch-all 80") == 1
    assert http.count("        # tls catch-all") == 1, "one TLS server: certificates by SNI, routes by the router"


def test_a_template_that_does_not_parse_is_refused_with_the_configuration() -> None:
    with pytest.raises(
        ConfigError, match=r"Extensions.default.Template = .*not a Jinja2 template: line 1: Unexpected end"
    ):
        load_config('[Extensions.default]\nTemplate = """\n{% block http %}\n"""\n')


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            '{% extends "nginx.conf.j2" %}{% block http %}{% for a in range(99999) %}{% for b in range(99999) %}'
            "{% endfor %}{% endfor %}{% endblock %}",
            "did not render within",
        ),
        (
            '{% extends "nginx.conf.j2" %}{% block http %}{% set s = [0] * 3000000000 %}{% endblock %}',
            "ran out of memory",
        ),
        ('{% extends "nginx.conf.j2" %}{% block http %}{{ nothing.here }}{% endblock %}', "UndefinedError"),
    ],
)
def test_a_template_that_loops_or_grows_costs_its_configuration_not_the_extension(
    template: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template_guard, "TIME_LIMIT", 2.0)
    with pytest.raises(TemplateFailed) as caught:
        template_guard.render_with_limits(render_nginx, routing(), ext_with(template))
    assert expected in str(caught.value)
    # The same process renders the next configuration as before.
    assert "# Generated by Interlock" in template_guard.render_with_limits(render_nginx, routing(), ext_with("")).text


def test_an_haproxy_template_extends_the_built_in_one_through_its_hooks() -> None:
    from interlock.render.haproxy import render_haproxy

    template = """{% extends "haproxy.cfg.j2" %}
{% block global %}
    # global hook
{% endblock %}
{% block http_frontend %}
    http-response set-header X-Interlock-Template yes
{% endblock %}
"""
    ext = default_config(Kind="haproxy", Template=template).extensions["default"]
    plain = default_config(Kind="haproxy").extensions["default"]
    text = render_haproxy(routing(), ext).text
    assert "    # global hook" in text.split("defaults", 1)[0]
    assert "    http-response set-header X-Interlock-Template yes" in text.split("frontend interlock_http", 1)[1]
    bare = default_config(Kind="haproxy", Template='{% extends "haproxy.cfg.j2" %}').extensions["default"]
    assert render_haproxy(routing(), bare).text == render_haproxy(routing(), plain).text
    with pytest.raises(TemplateFailed, match="printed a value that is not quoted"):
        bad = '{% extends "haproxy.cfg.j2" %}{% block http_frontend %}# {{ view.http_hosts[0].name }}{% endblock %}'
        render_haproxy(routing(), default_config(Kind="haproxy", Template=bad).extensions["default"])


def test_a_template_that_needs_a_server_per_host_is_told_to_turn_run_time_routing_off() -> None:
    template = '{% extends "nginx.conf.j2" %}{% block http_server %}        # {{ host.name|q }}\n{% endblock %}'
    with pytest.raises(TemplateFailed, match="set RuntimeRouting = false for a server block per host"):
        render_nginx(routing(), ext_with(template))
    text = render_nginx(routing(), ext_with(template, RuntimeRouting=False)).text
    assert "        # web.local\n" in text
