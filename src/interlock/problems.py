"""Problems: user-input issues found while reading labels and building routes.

A problem names the service, the label, the value and why it was not accepted. Problems are
collected and returned, never raised, so one bad label excludes one service and never the others.
This module is the bottom layer: it imports nothing from the project.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

SHOWN_VALUE_CHARS = 200
"""A label key or value longer than this is cut when shown (logs, states, status)."""
SHOWN_REASON_CHARS = 1000


def printable(text: str, limit: int = SHOWN_VALUE_CHARS) -> str:
    """`text` safe to print on a terminal or in a log line: control and other non-printable
    characters escaped (an escape sequence in a label key cannot repaint the operator's
    terminal), and cut to `limit` characters with a note of how much was left out."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text[: limit + 1])
    if len(text) > limit:
        return f"{shown[:limit]}...(+{len(text) - limit} chars)"
    return shown


class Severity(enum.StrEnum):
    """How a problem affects routing."""

    ERROR = "error"
    """The service (or the part of it named by the label) is not routed."""
    WARNING = "warning"
    """Routing goes on, but not as the labels may intend (an unknown label, a lost conflict)."""


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One finding about one service's labels."""

    service: str
    """Name of the service the finding is about."""
    label: str
    """Full label name (`com.docker.lb.hosts`), or `-` when no single label is to blame."""
    value: str
    """The value as the user wrote it (or `-`)."""
    reason: str
    """What is wrong and what is allowed instead."""
    severity: Severity = Severity.ERROR
    service_id: str = ""

    def __post_init__(self) -> None:
        # What users wrote (and Docker reported) is shown escaped and cut, wherever it goes.
        for name in ("service", "label", "value"):
            object.__setattr__(self, name, printable(getattr(self, name)))
        object.__setattr__(self, "reason", printable(self.reason, SHOWN_REASON_CHARS))

    def describe(self) -> str:
        """One line for logs and the CLI."""
        if self.label == "-":
            return f"{self.severity}: service {self.service}: {self.reason}"
        shown = "(not set)" if self.value == "-" else f"={self.value!r}"
        return f"{self.severity}: service {self.service}: {self.label}{shown}: {self.reason}"

    def to_json(self) -> dict[str, str]:
        """The one JSON shape of a problem (status, `render --json`, `problems --json`)."""
        return {
            "service": self.service,
            "label": self.label,
            "value": self.value,
            "reason": self.reason,
            "severity": str(self.severity),
        }


def sorted_problems(problems: list[Problem] | tuple[Problem, ...]) -> tuple[Problem, ...]:
    """Problems in a stable order (service, label, value, reason), duplicates dropped."""
    return tuple(sorted(set(problems)))
