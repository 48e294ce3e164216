#!/usr/bin/env bash
# Benchmarks, each against a reference measured in the same run.
#
#   hack/bench.sh apiserver     create/get/list/watch on both backends vs raw etcd put/range
#   hack/bench.sh controllers   a Deployment 0 -> 5,000 ready replicas vs the same pods created directly
#   hack/bench.sh scheduler     SchedulingBasic (5,000 nodes, 1,000 + 10,000 pods), anti-affinity, spread
#   hack/bench.sh pods          pod startup latency on a real node vs CRI directly; hollow nodes per core
#   hack/bench.sh lb            ClusterIP through kube-lb and through kube-proxy's iptables rules vs the pod IP
#
# The report is printed and recorded in BENCHMARKS.md under the benchmark's heading.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib.sh"
cd "$root"

which=${1:-}
case $which in
  apiserver)
    ensure_packages "${BUILD_PACKAGES[@]}" etcd-server
    report=$(cargo bench -p kube-apiserver --bench apiserver)
    ;;
  controllers)
    ensure_packages "${BUILD_PACKAGES[@]}"
    report=$(cargo bench -p kube-controller-manager --bench controllers)
    ;;
  scheduler)
    ensure_packages "${BUILD_PACKAGES[@]}"
    report=$(cargo bench -p kube-scheduler --bench scheduler)
    ;;
  pods)
    ensure_packages "${BUILD_PACKAGES[@]}" "${NODE_PACKAGES[@]}"
    hack/images.sh >/dev/null
    report=$(cargo bench -p kubelet --bench pods)
    ;;
  lb)
    ensure_packages "${BUILD_PACKAGES[@]}" iproute2 iptables
    report=$(cargo bench -p kube-lb --bench lb)
    ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

echo "$report"
machine="$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r)"
python3 - "$which" "$report" "$machine" <<'PY'
import sys, datetime, re, os
which, report, machine = sys.argv[1], sys.argv[2], sys.argv[3]
path = "BENCHMARKS.md"
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nEvery figure comes from `hack/bench.sh`, with its reference measured in the same run.\n"
section = (f"## {which}\n\nCommand: `hack/bench.sh {which}` ({datetime.date.today()}, {machine})\n\n"
           f"{report.strip()}\n")
pattern = re.compile(rf"^## {re.escape(which)}\n.*?(?=^## |\Z)", re.S | re.M)
text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
