"""Validate a rendered nginx configuration with a real `nginx -t`, away from any live proxy,
and say in one line why nginx refused one.

The check renders into a private directory where the fallback certificate nginx.conf names is a
throwaway self-signed pair; no real certificate is ever in nginx.conf (they are served at run
time by SNI, and the core checks each pair: edges/certificates.py). The proxy agent runs its own
`nginx -t` before it swaps. `nginx -t` does not bind
the listen sockets, so nothing served is touched. Wraps nginx only; imports no other kind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from interlock.config.schema import ExtensionConfig
from interlock.edges.offline_check import CheckResult, run_check, stand_in_dhparam, stand_in_pem
from interlock.edges.template_guard import render_with_limits
from interlock.model.routing import Routing
from interlock.render.nginx import render_nginx
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def check_text(text: str, *, workdir: Path, nginx: str | None = None) -> CheckResult:
    """Run `nginx -t` on `text` written into `workdir`."""
    binary = nginx or nginx_binary()
    if binary is None:
        return CheckResult(False, "nginx is not installed")
    path = workdir / "nginx.conf"
    path.write_text(text)
    return run_check([binary, "-t", "-q", "-p", str(workdir), "-c", str(path)], "nginx -t")


def check_rendered(
    text: str, routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, nginx: str | None = None
) -> CheckResult:
    """`nginx -t` of `text`, the configuration as it is served, in a private directory with a
    stand-in fallback certificate beside it. The one change: the DH-params file of the proxy's
    image is stood in for there, so what is checked is what the proxy gets."""
    with tempfile.TemporaryDirectory(prefix="interlock-check-") as scratch:
        base = Path(workdir or scratch)
        base.mkdir(parents=True, exist_ok=True)
        (base / FALLBACK_CERTIFICATE).write_text(stand_in_pem())
        checked = text
        if ext.nginx.ssl_default_dh_param_path:
            checked = checked.replace(ext.nginx.ssl_default_dh_param_path, str(stand_in_dhparam()))
        return check_text(checked, workdir=base, nginx=nginx)


def check_routing(
    routing: Routing, ext: ExtensionConfig, *, workdir: Path | None = None, nginx: str | None = None
) -> CheckResult:
    """Render `routing` as it would be served (an operator's template under the guard's limits)
    and `check_rendered` it."""
    return check_rendered(
        render_with_limits(render_nginx, routing, ext).text, routing, ext, workdir=workdir, nginx=nginx
    )


def nginx_complaint(output: str) -> str:
    """nginx's reason in one line, without the scratch file's path: `duplicate location "/x"`."""
    lines = [line for line in output.splitlines() if line.strip()]
    line = next((x for x in lines if "[emerg]" in x), lines[0] if lines else "refused")
    reason = re.sub(r"^\d+#\d+: ", "", line.split("] ", 1)[-1])
    return reason.rsplit(" in /", 1)[0][:300]
