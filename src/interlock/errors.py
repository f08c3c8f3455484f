"""Operational failures (as opposed to user-input problems, see `problems`).

DockerUnavailable   the Docker API did not answer or refused a call
PeerUnavailable     another role (core, extension) did not answer
ConfigRejected      nginx refused a configuration (`nginx -t` failed)
ReloadFailed        nginx did not confirm a new configuration after a reload
"""

from __future__ import annotations


class InterlockError(Exception):
    """Root of the operational errors."""


class DockerUnavailable(InterlockError):
    pass


class PeerUnavailable(InterlockError):
    pass


class ConfigRejected(InterlockError):
    pass


class ReloadFailed(InterlockError):
    pass
