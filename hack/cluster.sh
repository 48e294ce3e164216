#!/usr/bin/env bash
# Brings a local ferrokube cluster up or down.
#
#   hack/cluster.sh up [--store embedded|etcd] [--port N]   start, then print the KUBECONFIG line
#   hack/cluster.sh down                                    stop everything and remove the state
#
# State lives in $FERROKUBE_HOME (default: .cluster in the repository). Binaries are built
# with the cargo profile in $FERROKUBE_PROFILE (default: release).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"

home=${FERROKUBE_HOME:-$root/.cluster}
profile=${FERROKUBE_PROFILE:-release}
store=embedded
port=6443

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

stop_pid() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    # Up to 5 s for a clean exit, then no more waiting.
    timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  stop_pid "$home/kube-scheduler.pid"
  stop_pid "$home/kube-controller-manager.pid"
  stop_pid "$home/kube-apiserver.pid"
  stop_pid "$home/etcd.pid"
  rm -rf "$home"
  echo "cluster removed" >&2
}

# Waits for the apiserver's "serving on" log line, which it writes once its listener is bound
# and its bootstrap is done; fails at once if the apiserver exits first.
wait_ready() {
  local pid log=$home/kube-apiserver.log
  pid=$(cat "$home/kube-apiserver.pid")
  if timeout 120 bash -c 'grep -q -m1 "serving on https://" <(tail -n +1 -F --pid="$1" "$2" 2>/dev/null)' _ "$pid" "$log"; then
    return 0
  fi
  echo "kube-apiserver did not start serving; its log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

up() {
  while [ $# -gt 0 ]; do
    case $1 in
      --store) store=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  case $store in embedded|etcd) ;; *) echo "--store is embedded or etcd" >&2; exit 2 ;; esac
  if [ -f "$home/kube-apiserver.pid" ] && kill -0 "$(cat "$home/kube-apiserver.pid")" 2>/dev/null; then
    echo "a cluster is already running; hack/cluster.sh down first" >&2
    echo "export KUBECONFIG=$home/pki/admin.kubeconfig"
    return 0
  fi
  local pkgs=("${BUILD_PACKAGES[@]}")
  [ "$store" = etcd ] && pkgs+=(etcd-server)
  ensure_packages "${pkgs[@]}"
  command -v kubectl >/dev/null || echo "note: kubectl is not on PATH; install it to use the cluster" >&2

  (cd "$root" && cargo build --profile "$profile" -p kube-apiserver -p kube-controller-manager -p kube-scheduler >&2)
  local dir=$profile; [ "$profile" = dev ] && dir=debug
  local bin="${CARGO_TARGET_DIR:-$root/target}/$dir"

  mkdir -p "$home"
  if [ ! -f "$home/pki/admin.kubeconfig" ]; then
    "$bin/kube-apiserver" pki --dir "$home/pki" --server "https://127.0.0.1:$port"
  fi

  local storage_flags=(--storage-backend embedded --data-dir "$home/data")
  if [ "$store" = etcd ]; then
    local etcd_port=${FERROKUBE_ETCD_PORT:-2379}
    etcd --name ferrokube --data-dir "$home/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
      --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" >"$home/etcd.log" 2>&1 &
    echo $! >"$home/etcd.pid"
    storage_flags=(--storage-backend etcd --etcd-servers "http://127.0.0.1:$etcd_port")
  fi

  NO_COLOR=1 "$bin/kube-apiserver" \
    --secure-port "$port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --tls-cert-file "$home/pki/apiserver.crt" --tls-private-key-file "$home/pki/apiserver.key" \
    --client-ca-file "$home/pki/ca.crt" \
    "${storage_flags[@]}" >"$home/kube-apiserver.log" 2>&1 &
  echo $! >"$home/kube-apiserver.pid"
  wait_ready

  "$bin/kube-controller-manager" \
    --kubeconfig "$home/pki/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "${FERROKUBE_CONTROLLER_MANAGER_PORT:-10257}" \
    --root-ca-file "$home/pki/ca.crt" \
    --cluster-signing-cert-file "$home/pki/ca.crt" --cluster-signing-key-file "$home/pki/ca.key" \
    --cluster-cidr 10.244.0.0/16 >"$home/kube-controller-manager.log" 2>&1 &
  echo $! >"$home/kube-controller-manager.pid"

  "$bin/kube-scheduler" \
    --kubeconfig "$home/pki/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "${FERROKUBE_SCHEDULER_PORT:-10259}" \
    >"$home/kube-scheduler.log" 2>&1 &
  echo $! >"$home/kube-scheduler.pid"
  echo "cluster is up ($store store); logs in $home" >&2
  echo "export KUBECONFIG=$home/pki/admin.kubeconfig"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  *) usage ;;
esac
