#!/usr/bin/env bash
# Builds interlock-bench-backend:1 from the machine's static busybox.
set -euo pipefail
cd "$(dirname "$0")"
[ -x /bin/busybox ] || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
build() {  # TAG SCRIPT
  docker image inspect "interlock-bench-backend:$1" >/dev/null 2>&1 && return 0
  tmp=$(mktemp -d)
  cp Dockerfile "$tmp"/ && cp "$2" "$tmp"/serve.sh && cp -r www "$tmp"/ && cp /bin/busybox "$tmp"/busybox
  docker build -q -t "interlock-bench-backend:$1" "$tmp" >/dev/null 2>&1
  rm -rf "$tmp"
}
build 1 serve.sh
# For contrast: an app that stops at once on SIGTERM, breaking the README's rule.
build nodrain serve-nodrain.sh
