#!/usr/bin/env bash
# The whole test suite: formatting and lints, then unit, property, store-conformance and
# end-to-end tests. Installs whatever the tests need that the Rust toolchain does not bring.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
