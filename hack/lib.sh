# Shared by the hack/ scripts: installing what is missing, and building.

# Installs Debian packages that are not there yet.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# Packages every build needs: etcd-client and k8s-cri compile protobuf definitions, and
# kube-lb compiles its BPF programs with clang against libbpf-dev's headers.
BUILD_PACKAGES=(protobuf-compiler gcc clang libbpf-dev)
# What a node needs: containerd with runc, the CNI plugins, busybox for the test image, and
# ip/iptables for the pod network.
NODE_PACKAGES=(containerd runc containernetworking-plugins busybox-static iproute2 iptables)
# Only the tests need these: a local registry for real image pulls.
TEST_PACKAGES=(docker-registry)
