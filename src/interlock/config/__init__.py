"""Interlock's TOML configuration: typed, validated, with Interlock's defaults.

Pure: parses text handed to it; reading the file is the caller's job. Must not import edges,
roles or anything that performs I/O.
"""

from interlock.config.load import default_config, load_config
from interlock.config.schema import CoreConfig, ExtensionConfig, NginxConfig
from interlock.errors import ConfigError

__all__ = [
    "ConfigError",
    "CoreConfig",
    "ExtensionConfig",
    "NginxConfig",
    "default_config",
    "load_config",
]
