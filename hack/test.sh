#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, unit and integration
# tests of every crate (the storage suite against a real etcd, the apiserver against the real
# kubectl), and a hack/cluster.sh up/down round trip.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"
cd "$root"
# Incremental caches would double the target dir for a build that runs once.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

ensure_packages "${BUILD_PACKAGES[@]}" etcd-server "${NODE_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
# The pause and busybox images the kubelet tests import into their containerd.
hack/images.sh >/dev/null

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast

echo "== hack/cluster.sh up/down"
export FERROKUBE_HOME; FERROKUBE_HOME=$(mktemp -d)
trap 'FERROKUBE_PROFILE=dev hack/cluster.sh down >/dev/null 2>&1 || true' EXIT
export FERROKUBE_CONTROLLER_MANAGER_PORT=0 FERROKUBE_SCHEDULER_PORT=0 FERROKUBE_KUBELET_PORT=0
# A free port, so that a cluster already running on this machine is left alone.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
line=$(FERROKUBE_PROFILE=dev hack/cluster.sh up --port "$port")
eval "$line"
kubectl get namespaces default >/dev/null
kubectl create configmap smoke --from-literal=a=b >/dev/null
kubectl get configmap smoke -o jsonpath='{.data.a}' | grep -qx b
# The controller manager is running: a new namespace gets its default ServiceAccount, and a
# Deployment its ReplicaSet and pod (the timeouts only guard against a hang).
kubectl create namespace smoke >/dev/null
kubectl wait --for=create serviceaccount/default -n smoke --timeout=120s >/dev/null
# The scheduler and the kubelet are running: three busybox replicas run to Ready on the node.
kubectl create deployment smoke -n smoke --replicas=3 \
  --image=registry.k8s.io/e2e-test-images/busybox:1.36.1-1 -- sleep 3600 >/dev/null
kubectl wait --for=create node/ferrokube-node --timeout=120s >/dev/null
kubectl wait --for=condition=Ready node/ferrokube-node --timeout=120s >/dev/null
kubectl rollout status deployment/smoke -n smoke --timeout=180s >/dev/null
kubectl get pods -n smoke -l app=smoke -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c Running | grep -qx 3
pod=$(kubectl get pods -n smoke -l app=smoke -o jsonpath='{.items[0].metadata.name}')
kubectl get pod "$pod" -n smoke -o jsonpath='{.status.podIP}' | grep -q '^10\.244\.'
FERROKUBE_PROFILE=dev hack/cluster.sh down
trap - EXIT
echo "cluster round trip: 1 passed, 0 failed"
