"""Allow-list grammars for label values.

Each function takes the raw text and returns the normalised value, or raises `GrammarError`
whose message says what is allowed. Nothing here is a block-list: a value is accepted only when
it matches the grammar in full. Pure; must not import anything above the model layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import idna

from interlock.errors import GrammarError

MAX_VALUE_LENGTH = 2048

_HOST_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ASCII_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)+/?$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_NETWORK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_COOKIE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_CLUSTER_NAME = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,62})?$")
_NGINX_TIME = re.compile(r"^(?:0|[1-9][0-9]{0,5})(?:ms|s|m|h)?$")
_URL = re.compile(r"^(?:(?P<scheme>https?)://)?(?P<host>[^/:]+)(?::(?P<port>[0-9]{1,5}))?(?P<path>/.*)?$")


def _check_length(raw: str) -> None:
    if len(raw) > MAX_VALUE_LENGTH:
        raise GrammarError(f"value is {len(raw)} characters long; at most {MAX_VALUE_LENGTH} are allowed")


def hostname(raw: str) -> str:
    """An RFC 1123 host name; unicode names become IDNA A-labels (UTS 46), lower case."""
    _check_length(raw)
    text = raw.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise GrammarError("empty host name; allowed: a DNS name such as app.example.com")
    if not _ASCII_HOST.fullmatch(text):
        if text.isascii() and text.isprintable() and " " not in text:
            bad = next(ch for ch in text if not _ASCII_HOST.fullmatch(ch))
            raise GrammarError(f"{bad!r} is not allowed in a host name; allowed: a-z, 0-9, '-' and '.' between parts")
        if not all(ch.isprintable() and not ch.isspace() for ch in text):
            raise GrammarError("host names may not contain spaces or control characters")
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise GrammarError(f"not a valid internationalised host name ({exc})") from exc
    text = text.lower()
    if len(text) > 253:
        raise GrammarError(f"host name is {len(text)} characters long; at most 253 are allowed")
    for label in text.split("."):
        if not _HOST_LABEL.fullmatch(label):
            raise GrammarError(
                f"host name part {label!r} is not allowed; each dot-separated part is 1-63 of "
                "a-z, 0-9 and '-', not starting or ending with '-'"
            )
    return text


def hostname_list(raw: str) -> tuple[str, ...]:
    """Comma-separated host names, whitespace around items ignored, duplicates dropped."""
    _check_length(raw)
    items = [item for item in (part.strip() for part in raw.split(",")) if item]
    if not items:
        raise GrammarError("no host name given; allowed: comma-separated DNS names")
    return tuple(dict.fromkeys(hostname(item) for item in items))


def url_path(raw: str) -> str:
    """An absolute URL path of plain segments (`/app`, `/api/v1`); a trailing slash is dropped."""
    _check_length(raw)
    text = raw.strip()
    if text == "/":
        return "/"
    if not _PATH.fullmatch(text):
        raise GrammarError(
            "not an absolute path of plain segments; allowed: '/' followed by segments of "
            "A-Z a-z 0-9 . _ ~ - separated by single '/'"
        )
    segments = text.strip("/").split("/")
    if any(seg in (".", "..") for seg in segments):
        raise GrammarError("path segments '.' and '..' are not allowed")
    return "/" + "/".join(segments)


def path_list(raw: str) -> tuple[str, ...]:
    _check_length(raw)
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise GrammarError("no path given; allowed: comma-separated absolute paths such as /ws")
    return tuple(dict.fromkeys(url_path(item) for item in items))


def port(raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise GrammarError("not a port; allowed: a whole number from 1 to 65535")
    return int(text)


def boolean(raw: str) -> bool:
    text = raw.strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    raise GrammarError("allowed: true or false")


def one_of(*choices: str) -> Callable[[str], str]:
    """A grammar accepting exactly one of `choices` (case-insensitive)."""

    def parse(raw: str) -> str:
        text = raw.strip().lower()
        if text not in choices:
            raise GrammarError("allowed: " + ", ".join(choices))
        return text

    return parse


def secret_name(raw: str) -> str:
    text = raw.strip()
    if not _SECRET_NAME.fullmatch(text):
        raise GrammarError(
            "not a Docker secret name; allowed: 1-64 of A-Z a-z 0-9 _ . -, starting and ending with a letter or digit"
        )
    return text


def network_name(raw: str) -> str:
    text = raw.strip()
    if not _NETWORK_NAME.fullmatch(text):
        raise GrammarError("not a Docker network name; allowed: A-Z a-z 0-9 _ . -, starting with a letter or digit")
    return text


def cookie_name(raw: str) -> str:
    text = raw.strip()
    if not _COOKIE_NAME.fullmatch(text):
        raise GrammarError("not a cookie name; allowed: a letter, then up to 63 of A-Z a-z 0-9 _")
    return text


def cluster_name(raw: str) -> str:
    text = raw.strip()
    if not _CLUSTER_NAME.fullmatch(text):
        raise GrammarError(
            "not a service cluster name; allowed: up to 63 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
        )
    return text


_UNIT_MS = {"ms": 1, "s": 1000, "": 1000, "m": 60_000, "h": 3_600_000}


def is_service_name(text: str) -> bool:
    """Docker's own rule for service names: what Interlock prints (in comments) and reports."""
    return bool(_SERVICE_NAME.fullmatch(text))


def nginx_seconds(raw: str) -> str:
    """A time as whole seconds ("10s"): nginx reads an upstream server's times in seconds only
    and refuses "500ms", which would fail the whole cluster's configuration. A time under a
    second that is not 0 counts as 1s."""
    text = raw.strip()
    match = _NGINX_TIME.fullmatch(text)
    if not match:
        raise GrammarError("not a time; allowed: a whole number with an optional unit ms, s, m or h (e.g. 10s)")
    number = text.rstrip("mhs")
    milliseconds = int(number) * _UNIT_MS[text[len(number) :]]
    return f"{-(-milliseconds // 1000)}s"


def small_count(raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 3 or int(text) > 100:
        raise GrammarError("allowed: a whole number from 0 to 100")
    return int(text)


@dataclass(frozen=True, slots=True, order=True)
class Url:
    """An absolute http(s) URL split into parts; `scheme` is empty for a bare host source."""

    scheme: str
    host: str
    port: int | None
    path: str

    def text(self) -> str:
        port_part = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.host}{port_part}{self.path}"


def url(raw: str, *, require_scheme: bool) -> Url:
    """`http(s)://host[:port][/path]` with the host and path grammars above."""
    text = raw.strip()
    match = _URL.fullmatch(text)
    if not match or (require_scheme and not match.group("scheme")):
        raise GrammarError("not a URL; allowed: http://host[:port][/path] or https://host[:port][/path]")
    path = match.group("path") or ""
    if path and path != "/":
        trailing = path.endswith("/")
        path = url_path(path) + ("/" if trailing else "")
    return Url(
        scheme=match.group("scheme") or "",
        host=hostname(match.group("host")),
        port=port(match.group("port")) if match.group("port") else None,
        path=path.rstrip("/") if path == "/" else path,
    )
