#!/usr/bin/env bash
# The whole test suite: formatting and lints, then unit, property, store-conformance and
# end-to-end tests (the e2e tests start the real binary, including a benchmark smoke run).
# Installs whatever the tests need that the Rust toolchain does not bring: Debian's etcd-server
# (the pool tests start a local etcd cluster), when it is missing and apt-get can install it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing etcd-server (needed by the pool tests)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
        # The package starts a system etcd on the default ports; the tests use their own.
        (command -v systemctl >/dev/null 2>&1 && systemctl stop etcd >/dev/null 2>&1) || true
    else
        echo "warning: etcd is not installed and cannot be installed here; the pool tests will fail" >&2
    fi
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
# The API, bad-input and conformance end-to-end tests once more against a DSS whose record is in
# etcd (a pool instance must behave exactly as the embedded store).
if [ "$#" -eq 0 ]; then
    DECONFLICT_E2E_STORE=etcd cargo test --locked --test e2e -- input:: api:: conformance:: 2>&1 | tee -a "$log" || status=$?
fi
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } END { print n + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) n += $i } END { print n + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
