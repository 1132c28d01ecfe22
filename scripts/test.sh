#!/usr/bin/env bash
# The whole test suite: unit, property, store conformance and end-to-end tests.
# Installs nothing beyond the Rust toolchain for now; every later prerequisite goes here.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
