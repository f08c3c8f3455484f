"""`interlock up`, `down`, `status`, `routes` and `problems`: Interlock as an operator drives it,
one job a module: `deploy` (up, down and the waits between), `status_client` (asking the running
core: `docker exec` or a probe job), `offline` (the swarm's snapshot, and routes and problems
computed here when the core cannot be asked).

These run where the Docker CLI would (a manager, or DOCKER_HOST); they import no role.
"""

from interlock.errors import OperatorError
from interlock.operator.deploy import down, up, wait_until
from interlock.operator.offline import capture_snapshot, core_config, local_status
from interlock.operator.status_client import core_status, follow_status, role_images

__all__ = [
    "OperatorError",
    "capture_snapshot",
    "core_config",
    "core_status",
    "down",
    "follow_status",
    "local_status",
    "role_images",
    "up",
    "wait_until",
]
