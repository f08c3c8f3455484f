"""Validate a rendered nginx configuration with a real `nginx -t`, away from any live proxy.

The check renders into a private directory where every certificate secret is stood in for by
a throwaway self-signed pair (the validating process must never hold real keys), so it tests
syntax, directives and modules, not the real certificates; the proxy agent checks those
(edges/certificates.py) and runs its own `nginx -t` before it swaps. `nginx -t` does not bind
the listen sockets, so nothing served is touched. Wraps nginx and openssl only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from interlock.config.schema import ExtensionConfig
from interlock.edges.template_guard import render_with_limits
from interlock.model.routing import Routing
from interlock.render.nginx import DEFAULT_SECRETS_DIR


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    output: str


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


@cache
def _stand_ins() -> tuple[str, Path]:
    """A throwaway self-signed cert+key PEM and a DH-params file, made once per process."""
    directory = Path(tempfile.mkdtemp(prefix="interlock-stand-ins-"))
    cert, key, dhparam = directory / "cert.pem", directory / "key.pem", directory / "dhparam.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=interlock-validation",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["openssl", "dhparam", "-dsaparam", "-out", str(dhparam), "2048"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert.read_text() + key.read_text(), dhparam


def stand_in_pem() -> str:
    """A throwaway self-signed certificate and its key, in one PEM (made once per process)."""
    return _stand_ins()[0]


VALIDATION_TIMEOUT = 120.0


def check_text(text: str, *, workdir: Path, nginx: str | None = None) -> CheckResult:
    """Run `nginx -t` on `text` written into `workdir`."""
    binary = nginx or nginx_binary()
    if binary is None:
        return CheckResult(False, "nginx is not installed")
    path = workdir / "nginx.conf"
    path.write_text(text)
    return run_check([binary, "-t", "-q", "-p", str(workdir), "-c", str(path)], "nginx -t")


def run_check(command: list[str], what: str) -> CheckResult:
    """A proxy's own configuration check; one that does not finish within VALIDATION_TIMEOUT
    is a refusal (a configuration the proxy cannot even check in that time would not load in
    time either)."""
    try:
        proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=VALIDATION_TIMEOUT)
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"{what} did not finish within {VALIDATION_TIMEOUT:.0f} s; refused")
    return CheckResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def check_rendered(
    text: str, routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, nginx: str | None = None
) -> CheckResult:
    """`nginx -t` of `text`, the configuration as it is served, in a private directory. The one
    change: the certificate secrets it loads from /run/secrets, and the DH-params file of the
    proxy's image, are stood in for there, so what is checked is what the proxy gets."""
    with tempfile.TemporaryDirectory(prefix="interlock-check-") as scratch:
        base = Path(workdir or scratch)
        secrets = base / "secrets"
        secrets.mkdir(parents=True, exist_ok=True)
        pem, dhparam = _stand_ins()
        for name in routing.secrets:
            # Cert and key labels point at files named after the secrets; a combined cert+key
            # PEM stands in for either.
            (secrets / name).write_text(pem)
        checked = text.replace(f"{DEFAULT_SECRETS_DIR}/", f"{secrets}/")
        if ext.nginx.ssl_default_dh_param_path:
            checked = checked.replace(ext.nginx.ssl_default_dh_param_path, str(dhparam))
        return check_text(checked, workdir=base, nginx=nginx)


def check_routing(
    routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, nginx: str | None = None
) -> CheckResult:
    """Render `routing` as it would be served (an operator's template under the guard's limits)
    and `check_rendered` it."""
    return check_rendered(render_with_limits(routing, ext).text, routing, ext, workdir=workdir, nginx=nginx)
