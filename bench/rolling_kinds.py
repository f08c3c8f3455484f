"""Rolling updates on nginx and HAProxy side by side: `bench/rolling.py` on the three clusters of
tests/e2e/interlock.toml (default: nginx with run-time routing; east: nginx with a server block
per host; hap: the HAProxy kind) in one run, so the kinds are compared on the same machine
state, with a client that never retries (`--no-retry`): a request that fails on a reused
keep-alive connection is a failed request, as for Python's http.client.

Usage: python bench/rolling_kinds.py [--rate 1000] [--seconds 170] [--operations 100]
"""

from __future__ import annotations

import sys

import rolling

if __name__ == "__main__":
    defaults = ["--rate", "1000", "--seconds", "170", "--operations", "100"]
    sys.argv = [sys.argv[0], *defaults, *sys.argv[1:], "--clusters", "default", "east", "hap", "--no-retry"]
    rolling.main()
