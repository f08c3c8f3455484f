"""Load configuration text into `CoreConfig`, turning every failure into one clear message. Pure."""

from __future__ import annotations

import tomllib

from pydantic import ValidationError

from interlock.config.schema import CoreConfig
from interlock.errors import ConfigError


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [
        str(p)
        for p in loc
        if not str(p).startswith(("function-after", "literal", "int", "str", "tuple", "bool", "union", "model-"))
    ]
    # A Config table is read as its extension's kind: pydantic names the kind after `Config`.
    shown = [p for i, p in enumerate(parts) if not (i and parts[i - 1] == "Config" and p in ("nginx", "haproxy"))]
    return ".".join(shown) or "(top level)"


def load_config(text: str, *, source: str = "config.toml") -> CoreConfig:
    """Parse Interlock's TOML; raises ConfigError with a readable message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return CoreConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            where = _location(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            value = error.get("input")
            shown = "" if isinstance(value, dict) or error["type"] == "missing" else f" = {value!r}"
            lines.append(f"{source}: {where}{shown}: {message}")
        raise ConfigError("\n".join(lines)) from None


def default_config(**extension: object) -> CoreConfig:
    """Interlock's defaults with one `[Extensions.default]` table (keys may override)."""
    return CoreConfig.model_validate({"Extensions": {"default": dict(extension)}})
