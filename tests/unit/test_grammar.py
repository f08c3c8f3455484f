"""The label grammars accept what users write and nothing else."""

from __future__ import annotations

import pytest

from interlock.errors import GrammarError
from interlock.model import grammar


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("demo.local", "demo.local"),
        ("Demo.Local.", "demo.local"),
        ("localhost", "localhost"),
        ("a-b.example.com", "a-b.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("STRASSE.example", "strasse.example"),
        ("x" * 63 + ".com", "x" * 63 + ".com"),
    ],
)
def test_hostname_accepts_and_normalises(raw: str, expected: str) -> None:
    assert grammar.hostname(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-a.com",
        "a-.com",
        "a..com",
        "a_b.com",
        "x" * 64 + ".com",
        ("a" * 60 + ".") * 5,
        "a b.com",
        "a;b",
        "a{b",
        "a\nb",
        "*.example.com",
        "exa$mple.com",
        "a/b",
        "a:80",
    ],
)
def test_hostname_rejects(raw: str) -> None:
    with pytest.raises(GrammarError):
        grammar.hostname(raw)


def test_hostname_list_trims_and_deduplicates() -> None:
    assert grammar.hostname_list(" a.com, B.com ,a.com,") == ("a.com", "b.com")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/app", "/app"), ("/app/", "/app"), ("/", "/"), ("/a/b-c/d_e/f~g.h", "/a/b-c/d_e/f~g.h")],
)
def test_path_accepts(raw: str, expected: str) -> None:
    assert grammar.url_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "app",
        "//app",
        "/app//x",
        "/../etc",
        "/a/./b",
        "/a b",
        "/a;b",
        "/a$x",
        "/a?x=1",
        "/a#x",
        "/a%2f",
    ],
)
def test_path_rejects(raw: str) -> None:
    with pytest.raises(GrammarError):
        grammar.url_path(raw)


@pytest.mark.parametrize("raw", ["0", "65536", "-1", "80a", "", "８０", "1e3"])
def test_port_rejects(raw: str) -> None:
    with pytest.raises(GrammarError, match="1 to 65535"):
        grammar.port(raw)


def test_boolean_is_strict() -> None:
    assert grammar.boolean(" TRUE ") is True
    assert grammar.boolean("false") is False
    for raw in ("yes", "1", "on", ""):
        with pytest.raises(GrammarError, match="true or false"):
            grammar.boolean(raw)


def test_url_parts() -> None:
    url = grammar.url("https://New.Example.com:8443/path/", require_scheme=True)
    assert url == grammar.Url("https", "new.example.com", 8443, "/path/")
    assert url.text() == "https://new.example.com:8443/path/"
    assert grammar.url("old.example.com", require_scheme=False).scheme == ""
    with pytest.raises(GrammarError):
        grammar.url("old.example.com", require_scheme=True)
    with pytest.raises(GrammarError):
        grammar.url("javascript://x", require_scheme=True)


def test_over_long_values_are_refused_before_parsing() -> None:
    with pytest.raises(GrammarError, match="at most 2048"):
        grammar.hostname_list("a," * 2000)
