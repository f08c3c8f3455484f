"""The Jinja2 environment both renderers print through, and an extension's own `Template`.

Templates may print only tokens and integers (`quoting.finalize`); label values go through
`|q`, operator strings `|s`, raw operator lines `|line`. An operator's template renders in
Jinja2's sandbox with the same rules, and must print the configuration's id placeholder, by
which the proxy agent confirms each reload. `ListenerView` is what both renderers' views share.
Pure; render layer.
"""

from __future__ import annotations

from functools import cache

import jinja2
import jinja2.sandbox

from interlock.config.schema import ExtensionConfig
from interlock.errors import TemplateFailed, UnsafeValue
from interlock.model.routing import Routing
from interlock.render.quoting import Token, finalize, operator_line, operator_string, user_token

CONFIG_ID_PLACEHOLDER = "@@interlock-config-id@@"


class ListenerView:
    """What both renderers' views tell their templates about the cluster and its ports."""

    __slots__ = ()
    routing: Routing
    ext: ExtensionConfig

    @property
    def cluster(self) -> Token:
        return user_token(self.routing.cluster) if self.routing.cluster else Token('"" (the default cluster)')

    @property
    def http_port(self) -> int:
        return self.ext.target_port

    @property
    def https_port(self) -> int:
        return self.ext.target_ssl_port

    @property
    def https_port_suffix(self) -> Token:
        port = self.ext.published_ssl_port
        return Token("" if port == 443 else f":{port}")


@cache
def environment(sandboxed: bool = False) -> jinja2.Environment:
    kind = jinja2.sandbox.SandboxedEnvironment if sandboxed else jinja2.Environment
    env = kind(
        loader=jinja2.PackageLoader("interlock.render", "templates"),
        undefined=jinja2.StrictUndefined,
        # `finalize` refuses any printed value that is not a Token or an integer. (No macros:
        # their output would be a plain string; shared blocks are includes, which print directly.)
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    env.filters["q"] = user_token
    env.filters["s"] = operator_string
    env.filters["line"] = operator_line
    return env


@cache
def _custom_template(source: str) -> jinja2.Template:
    return environment(sandboxed=True).from_string(source)


def render_custom(source: str, context: dict[str, object], *, extends: str) -> str:
    """Render an extension's own template, or raise TemplateFailed saying what went wrong;
    `extends` names the built-in template it should extend to keep Interlock's status part."""
    try:
        text = _custom_template(source).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFailed(f"Template line {exc.lineno}: {exc.message}") from exc
    except UnsafeValue as exc:
        raise TemplateFailed(
            f"Template printed a value that is not quoted ({exc}); print label values with |q, "
            "operator strings with |s, raw lines with |line"
        ) from exc
    except jinja2.TemplateError as exc:
        # Undefined names, the sandbox refusing an attribute, a missing include.
        raise TemplateFailed(f"Template: {type(exc).__name__}: {exc}") from exc
    if CONFIG_ID_PLACEHOLDER not in text:
        raise TemplateFailed(
            "Template does not print {{ view.config_id }}: the proxy agent confirms each reload by "
            f"asking the proxy for it (extend {extends} to keep Interlock's status part)"
        )
    return text
