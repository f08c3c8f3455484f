"""Every error the package raises, as one tree under `InterlockError`.

InterlockError
  BadInput            the user gave something unusable; the message says what and what is allowed
    ConfigError         Interlock's TOML (config.load)
    SnapshotFormatError a snapshot is not in the Docker Engine API's shape (model.docker_json)
    GrammarError        a label value does not match its grammar (collected as a Problem, never seen)
    UnsafeValue         a value cannot be printed into a configuration safely (render.quoting)
    TemplateFailed      an extension's Template could not render (render.nginx)
    WireError           a message between roles is malformed or of another schema (wire.messages)
    OperatorError       something the operator must fix before `up`/`down`/`status` can go on
  DockerUnavailable   the Docker API did not answer or refused a call
  PeerUnavailable     another role (core, extension) did not answer
  ConfigRejected      the proxy refused a configuration (`nginx -t` or `haproxy -c` failed)
  ReloadFailed        nginx did not confirm a new configuration after a reload

Each role loop catches `InterlockError` at its boundary, reports it and goes on; the CLI turns
`BadInput` and `DockerUnavailable` into one line and exit status 2. The input errors also derive
from ValueError, which is what they are to Python. Bottom layer: imports nothing of ours.
"""

from __future__ import annotations


class InterlockError(Exception):
    """Root of every error the package raises."""


class BadInput(InterlockError, ValueError):
    """Input from a user (configuration, labels, snapshot, template, arguments) is unusable."""


class ConfigError(BadInput):
    """The configuration is unusable; `str()` names the key, the value and what is allowed."""


class SnapshotFormatError(BadInput):
    """The JSON is not in the Docker Engine API's shape."""


class GrammarError(BadInput):
    """A value does not match its grammar; the message says what is allowed."""


class UnsafeValue(BadInput):
    """A value cannot be printed safely; the renderer refuses to produce configuration."""


class TemplateFailed(BadInput):
    """An extension's `Template` could not render a configuration; the message says why."""


class WireError(BadInput):
    """A message is malformed or of another schema version."""


class OperatorError(BadInput):
    """Something the operator must fix; the message says what."""


class DockerUnavailable(InterlockError):
    """The Docker API did not answer, or refused a call (Docker's message is kept)."""


class PeerUnavailable(InterlockError):
    """Another role did not answer."""


class ConfigRejected(InterlockError):
    """The proxy refused a configuration (its check failed)."""


class ReloadFailed(InterlockError):
    """nginx did not confirm a configuration after a reload."""
