"""The deployment's fixed names and numbers, in one place: ports, the control network, token
secrets and where secrets are mounted, the labels Interlock puts on what it creates.

Every role, the operator and the spec builders read these from here, so a name cannot drift
between the side that creates a thing and the side that looks for it. Bottom layer: imports
nothing of ours.
"""

from __future__ import annotations

# -- services and the control network ---------------------------------------------------------
CORE_SERVICE = "interlock"
"""The core's service name (`interlock up` deploys it under this name)."""
CONTROL_NETWORK = "interlock"
"""The overlay the core, the extensions and the proxies talk on."""
CORE_PORT = 8080
"""The core's default API port (its `ListenAddr` may change it)."""
EXTENSION_PORT = 8080

# -- secrets ----------------------------------------------------------------------------------
SECRETS_DIR = "/run/secrets"
EXTENSION_TOKEN = "interlock-extension-token"
"""Signs core <-> extension calls. Each extension has its own (`extension_token_secret`); in the
extension's container it is mounted under this file name."""
PROXY_TOKEN = "interlock-proxy-token"
"""Signs extension <-> proxy calls, one per extension (`proxy_token_secret`); mounted under this
file name in the extension and its proxies."""
OPERATOR_TOKEN = "interlock-operator-token"
"""Signs the operator's status calls to the core; only the core and status probes hold it."""
DOCKER_SOCKET = "/var/run/docker.sock"
SERVER_TLS = "interlock-tls.pem"
"""File name, in a server role (the core, an extension), of its TLS key and certificate."""
PEER_CERT = "interlock-peer-cert.pem"
"""File name, in a client role, of the certificate the server it calls must present."""
PROXY_WORKDIR = "/var/lib/interlock"
"""The proxy container's work directory (a tmpfs): its configuration, certificates and keys."""
CERTIFICATES_MOUNT = "certificates"
"""Where, under SECRETS_DIR, the core mounts the certificate and key secrets that labels name
(each under its own name); nowhere else mounts them."""
TLS_SECRET_PREFIX = "interlock-tls-"
ACME_SECRET_PREFIX = "interlock-acme-"
"""The ACME account key and the certificates the core ordered, each a secret it made."""
"""Secrets `interlock-tls-<fingerprint>-key` (key and certificate) and `-cert` (certificate)."""
CORE_IDENTITY = "core"
"""The TLS identity (`LABEL_TLS`) of the core; an extension's is `extension_identity(NAME)`."""

# -- ports inside a proxy container -----------------------------------------------------------
STATUS_PORT = 20080
"""127.0.0.1 only: the loaded configuration's id, and the targets control endpoint."""
VALIDATION_TIMEOUT = 120.0
"""Seconds a proxy's own configuration check (`nginx -t`, `haproxy -c`) may take: one that does
not finish in time is a refusal (a configuration the proxy cannot even check in that time would
not load in time either)."""
TERMINATOR_PORT = 20443
"""127.0.0.1 only: TLS termination behind the SNI router (PROXY protocol)."""
PASSTHROUGH_PORT = 20444
"""127.0.0.1 only: TLS passthrough behind the SNI router."""
METRICS_PORT = 9180
"""Every role serves Prometheus text here, plain HTTP, /metrics only: for a Prometheus on the
monitoring network (`MonitoringNetwork`), never published."""
INTERNAL_PORTS = (TERMINATOR_PORT, PASSTHROUGH_PORT, STATUS_PORT, METRICS_PORT)

# -- how both proxy kinds retry -----------------------------------------------------------------
CONNECT_TRIES = 6
"""The tasks a request may try when the tries before failed at connect (refused, unreachable, a
connect timeout: nothing was sent). Such tries do not count against the route's retries, but
a task this node cannot reach may cost the connect timeout each, so they are bounded."""


# -- labels on what Interlock creates ---------------------------------------------------------
LABEL_OWNER = "com.docker.interlock.owner"
"""The core service that created (and may update or remove) an object."""
LABEL_ROLE = "com.docker.interlock.role"
LABEL_EXTENSION = "com.docker.interlock.extension"
LABEL_SPEC = "com.docker.interlock.spec"
"""Hash of a service spec: reconciling is "update when the hash differs"."""
LABEL_MANAGED = "com.docker.interlock.managed-by"
MANAGED_BY_UP = "interlock-up"
"""LABEL_MANAGED's value on what `interlock up` created."""
LABEL_CLUSTER = "com.docker.interlock.cluster"
LABEL_TLS = "com.docker.interlock.tls"
"""On a TLS secret: whose it is (`CORE_IDENTITY`, `extension_identity(NAME)`)."""
LABEL_TLS_PART = "com.docker.interlock.tls-part"
"""On a TLS secret: `key` (key and certificate, for the server) or `cert` (for its clients)."""
LABEL_TLS_FINGERPRINT = "com.docker.interlock.tls-fingerprint"
LABEL_ACME = "com.docker.interlock.acme"
"""On a secret the core made for ACME: `account` (its account key), or the host names of the
certificate (comma-separated) whose `cert` or `key` (LABEL_ACME_PART) it holds."""
LABEL_ACME_PART = "com.docker.interlock.acme-part"
LABEL_ACME_NOT_AFTER = "com.docker.interlock.acme-not-after"
"""On an ACME certificate's secrets: when it expires (seconds since the epoch)."""
PROXY_TYPE = "com.docker.interlock.core.proxy"
EXTENSION_TYPE = "com.docker.interlock.core.extension"
SWARM_SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
"""Set by Swarm on every task container."""

MANAGER_CONSTRAINT = "node.role==manager"
"""The core's placement constraint, always: only a manager's API lists and changes services."""


def extension_token_secret(extension: str) -> str:
    """The secret holding extension `extension`'s token: its cluster's only, so a cluster's
    extension cannot act for another."""
    return f"{EXTENSION_TOKEN}-{extension}"


def proxy_token_secret(extension: str) -> str:
    """The secret holding the token of extension `extension`'s proxies."""
    return f"{PROXY_TOKEN}-{extension}"


def is_interlocks_secret_name(name: str) -> bool:
    """Interlock's own secrets by name (any cluster's tokens, the operator's): no label may name
    them, whether the swarm lists them or not."""
    return name == OPERATOR_TOKEN or name.startswith(
        (EXTENSION_TOKEN, PROXY_TOKEN, TLS_SECRET_PREFIX, ACME_SECRET_PREFIX)
    )


def extension_identity(extension: str) -> str:
    return f"extension-{extension}"


CONTROL_SUBNETS = "INTERLOCK_CONTROL_SUBNETS"
"""Environment: the control network's subnets, where a role's API and metrics listen."""
MONITORING_SUBNETS = "INTERLOCK_MONITORING_SUBNETS"
"""Environment: the monitoring network's subnets, where a role's metrics also listen."""
ADMIN_PASS_FILE = "interlock-admin-pass"
"""Where a proxy finds `AdminPassSecret` (under SECRETS_DIR): the HAProxy stats page's password."""
ADMIN_PASS_ENV = "INTERLOCK_ADMIN_PASS"
"""The environment variable the agent hands that password to HAProxy in; haproxy.cfg names it."""
