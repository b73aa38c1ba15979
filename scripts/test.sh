#!/usr/bin/env bash
# Runs Berth's whole test suite (as root: the tests run real containers). Each test starts its
# own berthd on its own socket and state directories, and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# Real peers the suite drives: docker-compose 1.29 (tests/compose.rs), the distribution 2.8
# registry and skopeo (tests/registry.rs, tests/images.rs, crates/registry/tests), and python3
# for the misbehaving fake registry (tests/fixtures/fake_registry.py); bzip2, xz and zstd make
# the compressed archives `docker cp -` takes (tests/docker_cli.rs).
scripts/deps.sh docker-compose docker-registry skopeo python3 bzip2 xz-utils zstd
cargo build --locked --workspace --all-targets
cargo test --locked --workspace -- --test-threads=4
