"""What the proxy kinds' offline checks share: the result of a check, running a proxy's own
check command under VALIDATION_TIMEOUT, and the throwaway certificate (and DH parameters) that
stand in for real keys, which the validating process must never hold. Wraps openssl; imports
no proxy kind.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from interlock import constants


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    output: str


PASSED = CheckResult(True, "")


def run_check(command: list[str], what: str) -> CheckResult:
    """A proxy's own configuration check; one that does not finish within VALIDATION_TIMEOUT
    is a refusal."""
    timeout = constants.VALIDATION_TIMEOUT
    try:
        proc = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"{what} did not finish within {timeout:.0f} s; refused")
    return CheckResult(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


@cache
def stand_in_pem() -> str:
    """A throwaway self-signed certificate and its key, in one PEM, made once per process. EC
    P-256: made in milliseconds, where an RSA key (with the DH parameters, which a proxy does
    not need) cost a starting proxy agent whole seconds on a busy node, before it served. The
    files openssl writes are removed at once."""
    with tempfile.TemporaryDirectory(prefix="interlock-stand-in-") as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-nodes", "-days", "3650"),
                *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
                *("-subj", "/CN=interlock-validation", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return cert.read_text() + key.read_text()


@cache
def stand_in_dhparam() -> Path:
    """A DH-parameters file for `nginx -t` where the configuration names one (made once per
    process; the validating extension's only)."""
    dhparam = Path(tempfile.mkdtemp(prefix="interlock-stand-ins-")) / "dhparam.pem"
    subprocess.run(
        ["openssl", "dhparam", "-dsaparam", "-out", str(dhparam), "2048"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return dhparam
