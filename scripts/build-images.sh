#!/usr/bin/env bash
# Builds the container images of deploy/ from scratch (no registry image is pulled):
#   localhost/deconflict       the static release binary (crt-static) and the development key
#   localhost/deconflict-etcd  Debian's etcd binary and the libraries it links
# with podman, buildah or docker, whichever is here. `--check` only builds the binary and runs
# it alone in an empty root (chroot, as root): no container engine needed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$target" --bin deconflict
bin="${CARGO_TARGET_DIR:-target}/$target/release/deconflict"
if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "error: $bin is not static:" >&2; ldd "$bin" >&2; exit 1
fi
rm -rf deploy/rootfs deploy/rootfs-etcd
mkdir -p deploy/rootfs/data
# Without its debug line tables: the image stays small (the binary in target/ keeps them).
strip -o deploy/rootfs/deconflict "$bin" 2>/dev/null || cp "$bin" deploy/rootfs/deconflict

if [[ "${1:-}" == "--check" ]]; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/data"
    cp "$bin" "$root/deconflict"
    chroot "$root" /deconflict --version
    # A DSS in the empty root: it starts, answers /healthy, stops on SIGTERM.
    chroot "$root" /deconflict dss --insecure-dev-auth --listen 127.0.0.1:0 --data-dir /data >"$root/out" 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do grep -q 'listening on' "$root/out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n 's/.* listening on //p' "$root/out")
    curl -fsS "$url/healthy"; echo " <- $url/healthy from a DSS alone in an empty root"
    kill -TERM "$pid"; wait "$pid" || true
    exit 0
fi

# etcd: the binary and every library it links, at their paths.
mkdir -p deploy/rootfs-etcd/usr/bin deploy/rootfs-etcd/var/lib/etcd
etcd=$(command -v etcd || echo /usr/bin/etcd)
cp "$etcd" deploy/rootfs-etcd/usr/bin/etcd
for lib in $(ldd "$etcd" | grep -o '/[^ ]*'); do
    mkdir -p "deploy/rootfs-etcd$(dirname "$lib")"
    cp -L "$lib" "deploy/rootfs-etcd$lib"
done

engine=$(command -v podman || command -v buildah || command -v docker || true)
if [[ -z "$engine" ]]; then
    echo "no podman, buildah or docker here: the root file systems are in deploy/rootfs*" >&2; exit 1
fi
case "$engine" in
    */buildah) build=("$engine" bud) ;;
    *) build=("$engine" build) ;;
esac
"${build[@]}" -f deploy/Containerfile -t localhost/deconflict:latest .
"${build[@]}" -f deploy/Containerfile.etcd -t localhost/deconflict-etcd:latest .
echo "built localhost/deconflict and localhost/deconflict-etcd; run: $engine compose -f deploy/compose.yaml up"
