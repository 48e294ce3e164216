#!/usr/bin/env bash
# Builds the two container images the node side needs as OCI image archives, from what is on
# this machine (nothing is pulled), and optionally imports them into a containerd:
#   registry.k8s.io/pause:3.10                      the project's static `pause` binary
#   registry.k8s.io/e2e-test-images/busybox:1.36.1-1  Debian's busybox-static
#
# usage: hack/images.sh [--import <containerd socket>]
# Archives land in $FERROKUBE_IMAGES (default target/images); their paths are printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"
cd "$root"

socket=""
while [ $# -gt 0 ]; do
  case "$1" in
    --import) socket="$2"; shift 2 ;;
    *) echo "usage: hack/images.sh [--import <containerd socket>]" >&2; exit 2 ;;
  esac
done

ensure_packages "${BUILD_PACKAGES[@]}" busybox-static
out="${FERROKUBE_IMAGES:-$root/target/images}"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A reproducible tar of a directory: sorted, owned by root, dated at the epoch.
tar_dir() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" .
}

# Puts a file into the layout's blob store; prints "<digest> <size>".
add_blob() {
  local layout=$1 file=$2 sum
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  mkdir -p "$layout/blobs/sha256"
  cp "$file" "$layout/blobs/sha256/$sum"
  echo "sha256:$sum $(stat -c %s "$file")"
}

# oci_image <rootfs dir> <image name> <config json fragment> <archive>
oci_image() {
  local rootfs=$1 name=$2 config=$3 archive=$4
  local layout="$work/layout-$(basename "$archive" .tar)"
  rm -rf "$layout" && mkdir -p "$layout"
  tar_dir "$rootfs" "$work/layer.tar"
  read -r layer_digest layer_size < <(add_blob "$layout" "$work/layer.tar")
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$config" "$layer_digest" > "$work/config.json"
  read -r config_digest config_size < <(add_blob "$layout" "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
    "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$work/manifest.json"
  read -r manifest_digest manifest_size < <(add_blob "$layout" "$work/manifest.json")
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$name" "${name##*:}" > "$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  tar_dir "$layout" "$archive"
  echo "$archive"
}

# pause: the static binary alone.
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols -C debuginfo=0" \
  cargo build -q --release -p ferrokube-pause --target x86_64-unknown-linux-gnu
mkdir -p "$work/pause"
install -m 0755 target/x86_64-unknown-linux-gnu/release/pause "$work/pause/pause"
oci_image "$work/pause" registry.k8s.io/pause:3.10 \
  '{"Entrypoint":["/pause"],"User":"65535:65535"}' "$out/pause.tar"

# busybox: the static binary with a link per applet, and the files a shell image carries.
bb="$work/busybox"
mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/root" "$bb/home" "$bb/var" "$bb/proc" "$bb/sys" "$bb/dev"
chmod 1777 "$bb/tmp"
install -m 0755 /bin/busybox "$bb/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$bb/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$bb/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$bb/etc/group"
oci_image "$bb" registry.k8s.io/e2e-test-images/busybox:1.36.1-1 \
  '{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}' \
  "$out/busybox.tar"

if [ -n "$socket" ]; then
  for archive in "$out/pause.tar" "$out/busybox.tar"; do
    ctr --address "$socket" -n k8s.io images import --no-unpack=false "$archive" >/dev/null
  done
fi
