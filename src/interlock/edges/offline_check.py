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
def stand_ins() -> tuple[str, Path]:
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
    return stand_ins()[0]
