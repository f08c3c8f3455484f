"""Validate a rendered HAProxy configuration with a real `haproxy -c`, away from any live proxy.

Like `nginx_check`: the configuration is rendered into a private directory whose certificates
directory holds one throwaway combined PEM (the validating process never holds real keys), so
it tests syntax, keywords and what this HAProxy build supports, not the real certificates (the
proxy agent checks those before its own `haproxy -c`). `haproxy -c` binds nothing. Wraps
haproxy only.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from interlock.config.schema import ExtensionConfig
from interlock.edges.nginx_check import CheckResult, run_check, stand_in_pem
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


def check_haproxy_text(text: str, *, workdir: Path, haproxy: str | None = None) -> CheckResult:
    """Run `haproxy -c` on `text` written into `workdir`."""
    binary = haproxy or haproxy_binary()
    if binary is None:
        return CheckResult(False, "haproxy is not installed")
    path = workdir / "haproxy.cfg"
    path.write_text(text)
    return run_check([binary, "-c", "-q", "-f", str(path)], "haproxy -c")


def check_haproxy_routing(
    routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, haproxy: str | None = None
) -> CheckResult:
    """Render `routing` with a stand-in certificate and `haproxy -c` it in a private directory."""
    with tempfile.TemporaryDirectory(prefix="interlock-check-") as scratch:
        base = Path(workdir or scratch)
        certificates = base / "certs"
        certificates.mkdir(parents=True, exist_ok=True)
        (certificates / "stand-in.pem").write_text(stand_in_pem())
        rendered = render_haproxy(routing, ext, certificates_dir=str(certificates))
        return check_haproxy_text(rendered.text, workdir=base, haproxy=haproxy)
