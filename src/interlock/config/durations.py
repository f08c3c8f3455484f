"""Go-style duration strings (`3s`, `1m30s`, `500ms`) to seconds. Pure."""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|μs|ms|s|m|h))+$")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration; raises ValueError naming the allowed form."""
    value = text.strip()
    if value == "0":
        return 0.0
    if not _WHOLE.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a duration; allowed: a Go duration such as 3s, 500ms, 1m30s (units ns, us, ms, s, m, h)"
        )
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling of `seconds` (whole milliseconds)."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    return f"{millis // 1000}s"
