#!/usr/bin/env bash
# One command from a fresh Debian machine (as root) to a running Berth: installs what is
# needed, builds, installs the binaries, starts berthd, makes the busybox base image and runs
# a container that prints "hello".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release --locked -p berth
install -m 0755 target/release/berth target/release/berthd target/release/berth-shim \
  target/release/berth-shim-runtime /usr/local/bin/
sock=/run/berth/berth.sock
if ! berth -H "unix://$sock" version >/dev/null 2>&1; then
  mkdir -p /var/log
  (setsid berthd -H "unix://$sock" >>/var/log/berthd.log 2>&1 &)
  for _ in $(seq 100); do berth -H "unix://$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
berth -H "unix://$sock" version >/dev/null || { echo "berthd did not start: see /var/log/berthd.log" >&2; exit 1; }
if ! berth -H "unix://$sock" image inspect busybox >/dev/null 2>&1; then
  scripts/mkrootfs-busybox.sh | berth -H "unix://$sock" import - busybox:latest
fi
berth -H "unix://$sock" run --rm busybox echo hello
