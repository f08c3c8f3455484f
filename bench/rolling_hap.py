"""The HAProxy cluster's rolling updates with a client that never retries: `bench/rolling.py
--clusters hap --no-retry`, long enough for more than 100,000 requests (issue 11's target). A
request that fails on a reused keep-alive connection is a failed request here, as it is for
Python's http.client and many SDKs.

Usage: python bench/rolling_hap.py [--rate 1000] [--seconds 420] [--operations 300]
"""

from __future__ import annotations

import sys

import rolling

if __name__ == "__main__":
    defaults = ["--rate", "1000", "--seconds", "420", "--operations", "300"]
    sys.argv = [sys.argv[0], *defaults, *sys.argv[1:], "--clusters", "hap", "--no-retry"]
    rolling.main()
