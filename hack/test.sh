#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, unit and integration
# tests of every crate (the storage suite against a real etcd, the apiserver against the real
# kubectl), and a hack/cluster.sh up/down round trip (pods, and a Service through kube-lb).
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
export FERROKUBE_KUBE_LB_PORT=0
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
# kube-lb is running: a Service's ClusterIP reaches one of its pods. Two busybox httpd
# replicas answer with their host names (the pod names).
kubectl create deployment web -n smoke --replicas=2 --port=8080 \
  --image=registry.k8s.io/e2e-test-images/busybox:1.36.1-1 \
  -- sh -c 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www' >/dev/null
kubectl expose deployment web -n smoke --port 80 --target-port 8080 >/dev/null
kubectl rollout status deployment/web -n smoke >/dev/null
cluster_ip=$(kubectl get service web -n smoke -o jsonpath='{.spec.clusterIP}')
web_pods=$(kubectl get pods -n smoke -l app=web -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
# kube-lb logs every Service it writes once its first sync is done; the request goes once the
# Service is in its maps with both pods (the wait ends, failing, if kube-lb exits).
kube_lb_log=$FERROKUBE_HOME/kube-lb.log
if ! grep -q -m1 -F "synced smoke/web $cluster_ip:80/tcp=2" \
    <(tail -n +1 -F --pid="$(cat "$FERROKUBE_HOME/kube-lb.pid")" "$kube_lb_log" 2>/dev/null); then
  echo "kube-lb exited before writing smoke/web" >&2
  tail -n 30 "$kube_lb_log" >&2
  exit 1
fi
answer=$(kubectl exec -n smoke "$pod" -- wget -qO- "http://$cluster_ip/")
if ! grep -qxF -- "$answer" <<<"$web_pods"; then
  echo "http://$cluster_ip/ answered '$answer', not one of: $web_pods" >&2
  tail -n 30 "$kube_lb_log" >&2
  exit 1
fi
FERROKUBE_PROFILE=dev hack/cluster.sh down
trap - EXIT
echo "cluster round trip: 1 passed, 0 failed"
