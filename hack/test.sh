#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, unit and integration
# tests of every crate (the storage suite against a real etcd, the apiserver against the real
# kubectl), and a hack/cluster.sh up/down round trip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"
cd "$root"

ensure_packages "${BUILD_PACKAGES[@]}" etcd-server

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast

echo "== hack/cluster.sh up/down"
export FERROKUBE_HOME; FERROKUBE_HOME=$(mktemp -d)
trap 'FERROKUBE_PROFILE=dev hack/cluster.sh down >/dev/null 2>&1 || true' EXIT
line=$(FERROKUBE_PROFILE=dev hack/cluster.sh up --port 16443)
eval "$line"
kubectl get namespaces default >/dev/null
kubectl create configmap smoke --from-literal=a=b >/dev/null
kubectl get configmap smoke -o jsonpath='{.data.a}' | grep -qx b
FERROKUBE_PROFILE=dev hack/cluster.sh down
trap - EXIT
echo "cluster round trip: 1 passed, 0 failed"
