"""Validate a rendered HAProxy configuration with a real `haproxy -c`, away from any live proxy.

Like `nginx_check`: the configuration is rendered into a private directory whose certificates
directory holds one throwaway combined PEM (the validating process never holds real keys), so
it tests syntax, keywords and what this HAProxy build supports, not the real certificates (the
proxy agent checks those before its own `haproxy -c`). `haproxy -c` binds nothing. Wraps
haproxy only; imports no other kind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from interlock.config.schema import ExtensionConfig
from interlock.edges.offline_check import CheckResult, run_check, stand_in_pem
from interlock.edges.template_guard import render_with_limits
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy
from interlock.render.haproxy_certificates import (
    ACME_MAP,
    CERTIFICATES_DIR,
    CRT_LIST,
    FALLBACK_PEM,
    STATE_MAP,
    crt_list,
)


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


def check_haproxy_text(text: str, *, workdir: Path, haproxy: str | None = None) -> CheckResult:
    """Run `haproxy -c` on `text` written into `workdir`."""
    binary = haproxy or haproxy_binary()
    if binary is None:
        return CheckResult(False, "haproxy is not installed")
    path = workdir / "haproxy.cfg"
    path.write_text(text)
    return run_check([binary, "-c", "-f", str(path)], "haproxy -c")


def check_haproxy_rendered(
    text: str, routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, haproxy: str | None = None
) -> CheckResult:
    """`haproxy -c` of `text`, the configuration as it is served, with its certificates directory
    (the one change) pointed at a private one holding a stand-in certificate."""
    with tempfile.TemporaryDirectory(prefix="interlock-check-") as scratch:
        base = Path(workdir or scratch)
        certificates = base / "certs"
        certificates.mkdir(parents=True, exist_ok=True)
        (certificates / FALLBACK_PEM).write_text(stand_in_pem())
        (certificates / CRT_LIST).write_text(crt_list(None, str(certificates)))
        (certificates / ACME_MAP).write_text("")
        (certificates / STATE_MAP).write_text("")
        return check_haproxy_text(text.replace(CERTIFICATES_DIR, str(certificates)), workdir=base, haproxy=haproxy)


def check_haproxy_routing(
    routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, haproxy: str | None = None
) -> CheckResult:
    """Render `routing` as it would be served and `check_haproxy_rendered` it."""
    return check_haproxy_rendered(
        render_with_limits(render_haproxy, routing, ext).text, routing, ext, workdir=workdir, haproxy=haproxy
    )


def haproxy_complaint(output: str) -> str:
    """HAProxy's reason in one line, without its process number or the scratch file's path:
    `'server' : unknown keyword 'bogus'`."""
    lines = [line for line in output.splitlines() if line.strip()]
    line = next((x for x in lines if "[ALERT]" in x), lines[0] if lines else "refused")
    reason = re.sub(r"^\[[A-Z]+\]\s*\(\d+\)\s*:\s*(config\s*:\s*)?", "", line)
    reason = re.sub(r"^parsing \[[^]]*\]\s*:\s*", "", reason)
    return reason[:300]
