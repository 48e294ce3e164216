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
export FERROKUBE_CONTROLLER_MANAGER_PORT=0 FERROKUBE_SCHEDULER_PORT=0
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
kubectl create deployment smoke -n smoke --image=busybox >/dev/null
kubectl wait --for=jsonpath='{.status.replicas}'=1 deployment/smoke -n smoke --timeout=120s >/dev/null
# The scheduler is running: with a Node object (no kubelet yet) the pod gets bound to it.
kubectl create -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata: {name: smoke-node, labels: {kubernetes.io/hostname: smoke-node}}
EOF
kubectl patch node smoke-node --subresource=status --type=merge \
  -p '{"status":{"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True"}]}}' >/dev/null
kubectl wait --for=jsonpath='{.spec.nodeName}'=smoke-node pod -l app=smoke -n smoke --timeout=120s >/dev/null
FERROKUBE_PROFILE=dev hack/cluster.sh down
trap - EXIT
echo "cluster round trip: 1 passed, 0 failed"
