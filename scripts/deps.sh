#!/usr/bin/env bash
# Installs what Berth needs to build and run on Debian (run as root), plus any packages named
# as arguments (the test suite adds its clients). Idempotent.
set -euo pipefail
need=(gcc libseccomp-dev pkg-config busybox-static file procps iproute2 nftables iptables runc "$@")
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: a Rust toolchain (cargo 1.90 or newer) is required" >&2; exit 1; }
