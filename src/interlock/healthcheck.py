"""`python3 -m interlock.healthcheck URL`: exit 0 when URL answers below 500, else 1.

A health command for Docker (`--health-cmd`): it imports only the standard library, so it starts
in a few tens of milliseconds even when run every half second.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else "http://127.0.0.1:8080/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status < 500 else 1
    except urllib.error.HTTPError as exc:
        return 0 if exc.code < 500 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
