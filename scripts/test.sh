#!/usr/bin/env bash
# The whole test suite: formatting and lints, then unit, property, store-conformance and
# end-to-end tests (the e2e tests start the real binary, including a benchmark smoke run).
# Installs whatever the tests need that the Rust toolchain does not bring, when it is missing and
# apt-get can install it: Debian's etcd-server (the pool tests start a local etcd cluster) and
# chromium (the map's browser test); then the map's npm packages from its lock file (`npm ci`).
set -euo pipefail
cd "$(dirname "$0")/.."
apt_updated=
apt_install() { # apt_install <command> <package> <why>
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $2 ($3)"
        [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "warning: $2 is not installed and cannot be installed here; $3 will fail" >&2
    fi
}
if ! command -v etcd >/dev/null 2>&1; then
    apt_install etcd etcd-server "the pool tests"
    # The package starts a system etcd on the default ports; the tests use their own.
    (command -v systemctl >/dev/null 2>&1 && systemctl stop etcd >/dev/null 2>&1) || true
fi
apt_install chromium chromium "the map's browser test"
web=crates/map/web
(cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$web" && npm run --silent lint)
# The map's pure functions (src/view.js), under node's own test runner.
(cd "$web" && npm test --silent)
# The committed map assets must be exactly what the build script makes from the lock file.
built=$(mktemp -d)
(cd "$web" && node build.mjs "$built" >/dev/null)
if ! diff -r "$built" crates/map/assets >/dev/null; then
    echo "crates/map/assets differs from a fresh build: run (cd $web && npm ci && npm run build) and commit" >&2
    rm -rf "$built"
    exit 1
fi
rm -rf "$built"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --lib --bins --tests "$@" 2>&1 | tee "$log" || status=$?
# The API, bad-input, conformance and Remote ID end-to-end tests once more against a DSS whose record is in
# etcd (a pool instance must behave exactly as the embedded store).
if [ "$#" -eq 0 ]; then
    DECONFLICT_E2E_STORE=etcd cargo test --locked --test e2e -- input:: api:: conformance:: rid:: 2>&1 | tee -a "$log" || status=$?
fi
# The container and systemd files against the binary they deploy (flags, variables, files).
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml
python3 scripts/check-deploy.py target/debug/deconflict || status=$?
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i } END { print n + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^failed/) n += $i } END { print n + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
