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
node_name=ferrokube-node
cni_bridge=${FERROKUBE_CNI_BRIDGE:-fkcni0}

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

# Containers outlive containerd and its shims: kill them through containerd first, then
# containerd, then what is left (shims, mounts, the pod bridge).
stop_containerd() {
  local sock=$home/containerd/containerd.sock
  if [ -S "$sock" ]; then
    for id in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
      ctr --address "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_pid "$home/containerd.pid"
  pkill -9 -f "containerd-shim.*-address $sock" 2>/dev/null || true
  { grep -o " $home/[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  ip link del "$cni_bridge" 2>/dev/null || true
}

down() {
  stop_pid "$home/kube-lb.pid"
  # Its programs' links closed with the process; its maps stay pinned until removed.
  if [ -f "$home/kube-lb.bpf-dir" ]; then
    local pins; pins=$(cat "$home/kube-lb.bpf-dir")
    case $pins in /sys/fs/bpf/ferrokube-*) rm -rf "$pins" ;; esac
  fi
  stop_pid "$home/kubelet.pid"
  stop_containerd
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
  local pkgs=("${BUILD_PACKAGES[@]}" "${NODE_PACKAGES[@]}")
  [ "$store" = etcd ] && pkgs+=(etcd-server)
  ensure_packages "${pkgs[@]}"
  command -v kubectl >/dev/null || echo "note: kubectl is not on PATH; install it to use the cluster" >&2

  (cd "$root" && cargo build --profile "$profile" -p kube-apiserver -p kube-controller-manager -p kube-scheduler -p kubelet -p kube-lb >&2)
  "$root/hack/images.sh" >/dev/null
  local dir=$profile; [ "$profile" = dev ] && dir=debug
  local bin="${CARGO_TARGET_DIR:-$root/target}/$dir"

  mkdir -p "$home"
  if [ ! -f "$home/pki/admin.kubeconfig" ]; then
    "$bin/kube-apiserver" pki --dir "$home/pki" --server "https://127.0.0.1:$port" --node "$node_name"
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
    --kubelet-client-certificate "$home/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$home/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
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
  start_node "$bin"
  echo "cluster is up ($store store); logs in $home" >&2
  echo "export KUBECONFIG=$home/pki/admin.kubeconfig"
}

# containerd with its own root, state and socket under $home, the project's images imported,
# a kubelet registering $node_name, and kube-lb for its Services.
start_node() {
  local bin=$1 ctd=$home/containerd
  mkdir -p "$ctd/net.d"
  cat >"$ctd/config.toml" <<EOF
version = 2
root = "$ctd/root"
state = "$ctd/state"
[grpc]
  address = "$ctd/containerd.sock"
[ttrpc]
  address = "$ctd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ctd/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
  containerd --config "$ctd/config.toml" >"$home/containerd.log" 2>&1 &
  echo $! >"$home/containerd.pid"
  # containerd logs this line once its plugins are up and its sockets serve.
  local pid; pid=$(cat "$home/containerd.pid")
  if ! timeout 60 bash -c 'grep -q -m1 "containerd successfully booted" <(tail -n +1 -F --pid="$1" "$2" 2>/dev/null)' _ "$pid" "$home/containerd.log"; then
    echo "containerd did not start; its log:" >&2
    tail -n 30 "$home/containerd.log" >&2
    return 1
  fi
  local images=${FERROKUBE_IMAGES:-$root/target/images}
  for archive in "$images/pause.tar" "$images/busybox.tar"; do
    ctr --address "$ctd/containerd.sock" -n k8s.io images import "$archive" >/dev/null
  done
  NO_COLOR=1 "$bin/kubelet" \
    --kubeconfig "$home/pki/kubelet-$node_name.kubeconfig" \
    --client-ca-file "$home/pki/ca.crt" \
    --container-runtime-endpoint "unix://$ctd/containerd.sock" \
    --root-dir "$home/kubelet" --hostname-override "$node_name" --node-ip 127.0.0.1 \
    --port "${FERROKUBE_KUBELET_PORT:-10250}" \
    --cni-conf-dir "$ctd/net.d" --cni-bridge "$cni_bridge" \
    --eviction-hard "${FERROKUBE_EVICTION_HARD:-memory.available<100Mi,nodefs.available<1%}" \
    --cluster-domain cluster.local >"$home/kubelet.log" 2>&1 &
  echo $! >"$home/kubelet.pid"
  start_kube_lb "$bin"
}

# kube-lb in place of kube-proxy: its maps are pinned in a directory of this cluster's own
# (named after $home, so that two clusters on one machine keep apart), recorded for down.
# Waits for its "initial sync done" log line, written once every Service is in the maps;
# fails at once if it exits first (the wait follows its log only while it runs).
start_kube_lb() {
  local bin=$1 pins pid
  pins=/sys/fs/bpf/ferrokube-$(printf %s "$home" | sha256sum | cut -c1-12)
  echo "$pins" >"$home/kube-lb.bpf-dir"
  NO_COLOR=1 "$bin/kube-lb" \
    --kubeconfig "$home/pki/kube-proxy.kubeconfig" \
    --hostname-override "$node_name" --bpf-dir "$pins" \
    --metrics-bind-address "127.0.0.1:${FERROKUBE_KUBE_LB_PORT:-10249}" \
    >"$home/kube-lb.log" 2>&1 &
  pid=$!
  echo "$pid" >"$home/kube-lb.pid"
  if ! grep -q -m1 "initial sync done" <(tail -n +1 -F --pid="$pid" "$home/kube-lb.log" 2>/dev/null); then
    echo "kube-lb did not sync; its log:" >&2
    tail -n 30 "$home/kube-lb.log" >&2
    return 1
  fi
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  *) usage ;;
esac
