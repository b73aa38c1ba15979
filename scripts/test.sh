#!/usr/bin/env bash
# Runs Berth's whole test suite (as root: the tests run real containers). Each test starts its
# own berthd on its own socket and state directories, and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# docker-compose 1.29: a real client the suite drives (tests/compose.rs).
scripts/deps.sh docker-compose
cargo build --locked --workspace --all-targets
cargo test --locked --workspace -- --test-threads=4
