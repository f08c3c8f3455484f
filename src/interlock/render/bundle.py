"""A rendered proxy configuration with the identifiers delivery and confirmation rely on. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """The text of a proxy configuration, its digest, and the id the running proxy reports."""

    text: str
    config_id: str
    """Short id printed inside the config; the running nginx answers it on its status port."""
    targets: str = ""
    """The targets document (dynamic upstreams), empty when the servers are in `text`."""
    targets_id: str = ""

    @property
    def digest(self) -> str:
        """sha256 of the text and the targets: what delivery compares and verifies."""
        return hashlib.sha256(self.text.encode() + b"\0" + self.targets.encode()).hexdigest()
