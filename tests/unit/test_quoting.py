"""The quote-or-reject helper: one test per character that could change nginx's parse."""

from __future__ import annotations

import pytest

from interlock.errors import UnsafeValue
from interlock.render.quoting import (
    Token,
    finalize,
    operator_line,
    operator_string,
    user_token,
)


@pytest.mark.parametrize("char", [*" \t\n\r;{}\"'#$\\`\x00\u2028", "${x}"])
def test_user_token_refuses_syntax_characters(char: str) -> None:
    with pytest.raises(UnsafeValue):
        user_token(f"a{char}b")


def test_user_token_passes_plain_words() -> None:
    assert user_token("demo.local") == "demo.local"
    assert isinstance(user_token("x"), Token)


@pytest.mark.parametrize("char", ["'", "\\", "\n", "\r", "\x00"])
def test_operator_string_refuses_quote_breaking(char: str) -> None:
    with pytest.raises(UnsafeValue):
        operator_string(f"a{char}b")


def test_operator_string_quotes_only_when_needed() -> None:
    assert operator_string("/dev/stdout") == "/dev/stdout"
    assert operator_string('$remote_addr "$request"') == "'$remote_addr \"$request\"'"


def test_operator_line_is_one_line() -> None:
    assert operator_line(" gzip on; ") == "gzip on;"
    with pytest.raises(UnsafeValue):
        operator_line("gzip on;\ninclude /etc/passwd;")


def test_finalize_refuses_plain_strings_and_booleans() -> None:
    assert finalize(Token("x")) == "x"
    assert finalize(8080) == "8080"
    for value in ("x", True, 1.5, None):
        with pytest.raises(UnsafeValue):
            finalize(value)


def test_the_render_environment_refuses_raw_strings() -> None:
    from interlock.render.templating import environment as _environment

    environment = _environment()
    assert environment.from_string("listen {{ port }};").render(port=80) == "listen 80;"
    assert environment.from_string("server_name {{ name|q }};").render(name="a.local") == "server_name a.local;"
    with pytest.raises(UnsafeValue):
        environment.from_string("server_name {{ name }};").render(name="a.local")
    with pytest.raises(UnsafeValue):
        environment.from_string("server_name {{ name|q }};").render(name="a; include /etc/passwd")


@pytest.mark.parametrize("make", [user_token, operator_string])
def test_a_trailing_newline_is_refused_not_printed(make: object) -> None:
    """`$` also matches before a final newline: the helpers match the whole value."""
    with pytest.raises(UnsafeValue):
        make("example.com\n")  # type: ignore[operator]
