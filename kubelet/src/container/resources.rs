//! Container resources as CRI `LinuxContainerResources` (upstream's
//! `kuberuntime_container_linux.go`, `helpers_linux.go`, `cm/helpers_linux.go` and
//! `qos/policy.go`), and the pod cgroup the kubelet puts each pod under.

use std::collections::BTreeMap;

use ferrokube_common::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::qos::{self, parse_quantity};
use crate::runtime::api::{HugepageLimit, LinuxContainerResources};

pub const MIN_SHARES: i64 = 2;
pub const MAX_SHARES: i64 = 262_144;
pub const SHARES_PER_CPU: i64 = 1024;
const MILLI_CPU_TO_CPU: i64 = 1000;
/// 100ms, the CFS period upstream always uses (its custom period is behind an alpha gate).
pub const QUOTA_PERIOD: i64 = 100_000;
/// A quota below 1ms is raised to 1ms.
pub const MIN_QUOTA_PERIOD: i64 = 1000;

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;
/// Priority of the `system-node-critical` and `system-cluster-critical` classes and above.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Upstream's `MilliCPUToShares`: 1024 shares per CPU, clamped to [2, 262144].
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu == 0 {
        // The kernel's own default for an unset weight.
        return MIN_SHARES;
    }
    let shares = milli_cpu.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// Upstream's `milliCPUToQuota`: the CFS quota for a CPU limit over `period` microseconds; 0 (no
/// quota) without a limit.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu == 0 {
        return 0;
    }
    let quota = milli_cpu.saturating_mul(period) / MILLI_CPU_TO_CPU;
    quota.max(MIN_QUOTA_PERIOD)
}

/// The node facts that resource configs depend on.
#[derive(Debug, Clone)]
pub struct NodeResources {
    /// The machine's memory in bytes (cadvisor's `MemoryCapacity`), for burstable OOM scores.
    pub memory_capacity: i64,
    /// `--cpu-cfs-quota` (default true): enforce CPU limits with CFS quota.
    pub cpu_cfs_quota: bool,
    /// The host runs the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// The memory controller exposes swap accounting (`memory.swap.max` on v2,
    /// `memory.memsw.limit_in_bytes` on v1).
    pub swap_controller_available: bool,
    /// `singleProcessOOMKill`; unset means true on cgroup v1 and false on v2, as upstream
    /// defaults it, so that on v2 an OOM kills the whole container.
    pub single_process_oom_kill: Option<bool>,
    /// Huge page sizes the host supports, in upstream's unit form (`2MB`, `1GB`); see
    /// [`hugepage_size_from_sysfs`].
    pub hugepage_sizes: Vec<String>,
}

impl Default for NodeResources {
    fn default() -> Self {
        Self {
            memory_capacity: 0,
            cpu_cfs_quota: true,
            cgroup_v2: true,
            swap_controller_available: false,
            single_process_oom_kill: None,
            hugepage_sizes: Vec::new(),
        }
    }
}

fn quantity_of(list: Option<&BTreeMap<String, ApiQuantity>>, name: &str) -> Option<Quantity> {
    list.and_then(|l| l.get(name)).and_then(parse_quantity)
}

fn requests(r: Option<&ResourceRequirements>) -> Option<&BTreeMap<String, ApiQuantity>> {
    r.and_then(|r| r.requests.as_ref())
}

fn limits(r: Option<&ResourceRequirements>) -> Option<&BTreeMap<String, ApiQuantity>> {
    r.and_then(|r| r.limits.as_ref())
}

/// Upstream's `calculateLinuxResources`. `cpu_request` is `None` when no cpu request is set at
/// all (then shares follow the limit, as the apiserver's defaulting would have made them).
fn linux_resources(
    cpu_request: Option<i64>,
    cpu_limit_milli: i64,
    memory_limit: i64,
    node: &NodeResources,
) -> LinuxContainerResources {
    let mut r = LinuxContainerResources {
        cpu_shares: milli_cpu_to_shares(cpu_request.unwrap_or(cpu_limit_milli)),
        ..Default::default()
    };
    if memory_limit != 0 {
        r.memory_limit_in_bytes = memory_limit;
    }
    if node.cpu_cfs_quota {
        r.cpu_period = QUOTA_PERIOD;
        r.cpu_quota = milli_cpu_to_quota(cpu_limit_milli, QUOTA_PERIOD);
    }
    let single_process = node.single_process_oom_kill.unwrap_or(!node.cgroup_v2);
    if node.cgroup_v2 && !single_process {
        r.unified
            .insert("memory.oom.group".to_string(), "1".to_string());
    }
    r
}

/// The resources of one container (upstream's `generateLinuxContainerResources` with the
/// default feature gates of v1.33: no memory QoS, swap off for every container).
pub fn linux_container_resources(
    pod: &Pod,
    container: &Container,
    node: &NodeResources,
) -> LinuxContainerResources {
    let res = container.resources.as_ref();
    let cpu_request = requests(res)
        .filter(|r| r.contains_key("cpu"))
        .map(|_| quantity_of(requests(res), "cpu").map_or(0, |q| q.milli_value()));
    let cpu_limit = quantity_of(limits(res), "cpu").map_or(0, |q| q.milli_value());
    let memory_limit = quantity_of(limits(res), "memory").map_or(0, |q| q.value());
    let mut r = linux_resources(cpu_request, cpu_limit, memory_limit, node);
    r.oom_score_adj = container_oom_score_adj(pod, container, node.memory_capacity);
    r.hugepage_limits = hugepage_limits(res, &node.hugepage_sizes);
    if node.swap_controller_available {
        // Upstream's NoSwap: the LimitedSwap behaviour needs the NodeSwap gate and a swap
        // configuration this kubelet does not offer.
        if node.cgroup_v2 {
            r.unified
                .insert("memory.swap.max".to_string(), "0".to_string());
        } else {
            r.memory_swap_limit_in_bytes = r.memory_limit_in_bytes;
        }
    }
    r
}

fn is_static_or_mirror(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let source = annotations.and_then(|a| a.get("kubernetes.io/config.source"));
    let mirror = annotations.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    matches!(source, Some(s) if s != "api") || mirror
}

/// Upstream's `IsCriticalPod`: static and mirror pods, and pods at system-critical priority.
pub fn is_critical_pod(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority);
    is_static_or_mirror(pod) || priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// Upstream's `IsNodeCriticalPod`: a critical pod in the `system-node-critical` class.
pub fn is_node_critical_pod(pod: &Pod) -> bool {
    let class = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref());
    is_critical_pod(pod) && class == Some("system-node-critical")
}

fn memory_request(c: &Container) -> i64 {
    quantity_of(requests(c.resources.as_ref()), "memory").map_or(0, |q| q.value())
}

/// Upstream's `GetContainerOOMScoreAdjust`: -997 for guaranteed and node-critical pods, 1000
/// for best-effort ones, and for burstable ones `1000 - 1000*request/capacity` kept within
/// [3, 999]; a sidecar (restartable init container) scores no higher than the smallest regular
/// container, so it is not killed before what it serves.
pub fn container_oom_score_adj(pod: &Pod, container: &Container, memory_capacity: i64) -> i64 {
    if is_node_critical_pod(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos::pod_qos_class(pod) {
        qos::GUARANTEED => return GUARANTEED_OOM_SCORE_ADJ,
        qos::BEST_EFFORT => return BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {}
    }
    let capacity = memory_capacity.max(1);
    let score = |request: i64| 1000 - request.saturating_mul(1000) / capacity;
    let mut adj = score(memory_request(container));
    let sidecar = container.restart_policy.as_deref() == Some("Always")
        && super::init_containers(pod)
            .iter()
            .any(|c| c.name == container.name);
    if sidecar {
        if let Some(min) = super::containers(pod).iter().map(memory_request).min() {
            adj = adj.min(score(min));
        }
    }
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return 1000 + GUARANTEED_OOM_SCORE_ADJ;
    }
    if adj == BEST_EFFORT_OOM_SCORE_ADJ {
        return adj - 1;
    }
    adj
}

const HUGEPAGE_UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];

/// Upstream's `HugePageUnitSizeFromByteSize`: 2097152 → `2MB`.
pub fn hugepage_unit_size(mut size: i64) -> Option<String> {
    if size <= 0 {
        return None;
    }
    let mut idx = 0;
    while size % 1024 == 0 && idx < HUGEPAGE_UNITS.len() - 1 {
        size /= 1024;
        idx += 1;
    }
    if size > 1024 && idx < HUGEPAGE_UNITS.len() - 1 {
        return None;
    }
    Some(format!("{size}{}", HUGEPAGE_UNITS[idx]))
}

/// A `/sys/kernel/mm/hugepages` entry (`hugepages-2048kB`) in the unit form CRI expects
/// (`2MB`), as runc's `HugePageSizes` reports it.
pub fn hugepage_size_from_sysfs(dir_name: &str) -> Option<String> {
    let kb: i64 = dir_name
        .strip_prefix("hugepages-")?
        .strip_suffix("kB")?
        .parse()
        .ok()?;
    hugepage_unit_size(kb.checked_mul(1024)?)
}

/// The huge page sizes of this host, read from sysfs (none when huge pages are unsupported).
pub fn host_hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = dir
        .flatten()
        .filter_map(|e| hugepage_size_from_sysfs(&e.file_name().to_string_lossy()))
        .collect();
    sizes.sort();
    sizes
}

/// Upstream's `GetHugepageLimitsFromResources`: every host page size limited to 0 unless the
/// container's limits grant `hugepages-<size>`.
pub fn hugepage_limits(
    resources: Option<&ResourceRequirements>,
    host_sizes: &[String],
) -> Vec<HugepageLimit> {
    let mut granted: BTreeMap<String, u64> = BTreeMap::new();
    for (name, q) in limits(resources).into_iter().flatten() {
        let Some(page) = name.strip_prefix("hugepages-") else {
            continue;
        };
        let Some(page_bytes) = Quantity::parse(page).ok().map(|q| q.value()) else {
            continue;
        };
        let (Some(unit), Some(q)) = (hugepage_unit_size(page_bytes), parse_quantity(q)) else {
            continue;
        };
        granted.insert(unit, u64::try_from(q.value()).unwrap_or(0));
    }
    host_sizes
        .iter()
        .map(|size| HugepageLimit {
            page_size: size.clone(),
            limit: granted.get(size).copied().unwrap_or(0),
        })
        .collect()
}

/// How cgroups are named: `--cgroup-driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// The components of a cgroup root given in the driver's own syntax (upstream's
/// `ParseCgroupfsToCgroupName` / `ParseSystemdToCgroupName`).
fn root_components(cgroup_root: &str, driver: CgroupDriver) -> Vec<String> {
    match driver {
        CgroupDriver::Cgroupfs => cgroup_root
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        CgroupDriver::Systemd => {
            let base = cgroup_root.rsplit('/').next().unwrap_or_default();
            let base = base.strip_suffix(".slice").unwrap_or(base);
            if base.is_empty() || base == "-" {
                return Vec::new();
            }
            base.split('-').map(|c| c.replace('_', "-")).collect()
        }
    }
}

/// The literal cgroup path of a pod, which the sandbox gets as its `cgroup_parent`: under the
/// kubelet's `--cgroup-root`, `kubepods` for guaranteed pods, `kubepods/burstable` or
/// `kubepods/besteffort` for the others, then `pod<uid>`. With the systemd driver the same
/// name becomes a slice path (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`,
/// dashes in the uid escaped to underscores).
pub fn pod_cgroup_parent(
    cgroup_root: &str,
    driver: CgroupDriver,
    qos_class: &str,
    pod_uid: &str,
) -> String {
    let mut name = root_components(cgroup_root, driver);
    name.push("kubepods".to_string());
    match qos_class {
        qos::BURSTABLE => name.push("burstable".to_string()),
        qos::BEST_EFFORT => name.push("besteffort".to_string()),
        _ => {}
    }
    name.push(format!("pod{pod_uid}"));
    match driver {
        CgroupDriver::Cgroupfs => format!("/{}", name.join("/")),
        CgroupDriver::Systemd => {
            let escaped: Vec<String> = name.iter().map(|c| c.replace('-', "_")).collect();
            let mut path = String::new();
            for i in 0..escaped.len() {
                path.push('/');
                path.push_str(&escaped[..=i].join("-"));
                path.push_str(".slice");
            }
            path
        }
    }
}

/// Requests or limits of cpu and memory summed over a pod as upstream's
/// `AggregateContainerRequests/Limits`: regular and sidecar containers add up, and the pod needs
/// at least what its biggest init container needs together with the sidecars started before it.
struct PodTotals {
    cpu_milli: Option<i64>,
    memory: Option<i64>,
}

fn pod_totals(
    pod: &Pod,
    pick: fn(Option<&ResourceRequirements>) -> Option<&BTreeMap<String, ApiQuantity>>,
) -> PodTotals {
    #[derive(Default, Clone, Copy)]
    struct Pair {
        cpu: Option<i64>,
        mem: Option<i64>,
    }
    fn of(
        c: &Container,
        pick: fn(Option<&ResourceRequirements>) -> Option<&BTreeMap<String, ApiQuantity>>,
    ) -> Pair {
        let list = pick(c.resources.as_ref());
        Pair {
            cpu: list
                .filter(|l| l.contains_key("cpu"))
                .map(|l| quantity_of(Some(l), "cpu").map_or(0, |q| q.milli_value())),
            mem: list
                .filter(|l| l.contains_key("memory"))
                .map(|l| quantity_of(Some(l), "memory").map_or(0, |q| q.value())),
        }
    }
    fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        }
    }
    fn max(a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
        }
    }
    let mut total = Pair::default();
    for c in super::containers(pod) {
        let p = of(c, pick);
        total = Pair {
            cpu: add(total.cpu, p.cpu),
            mem: add(total.mem, p.mem),
        };
    }
    let mut sidecars = Pair::default();
    let mut init_peak = Pair::default();
    for c in super::init_containers(pod) {
        let p = of(c, pick);
        let need = if c.restart_policy.as_deref() == Some("Always") {
            total = Pair {
                cpu: add(total.cpu, p.cpu),
                mem: add(total.mem, p.mem),
            };
            sidecars = Pair {
                cpu: add(sidecars.cpu, p.cpu),
                mem: add(sidecars.mem, p.mem),
            };
            sidecars
        } else {
            Pair {
                cpu: add(p.cpu, sidecars.cpu),
                mem: add(p.mem, sidecars.mem),
            }
        };
        init_peak = Pair {
            cpu: max(init_peak.cpu, need.cpu),
            mem: max(init_peak.mem, need.mem),
        };
    }
    PodTotals {
        cpu_milli: max(total.cpu, init_peak.cpu),
        memory: max(total.mem, init_peak.mem),
    }
}

/// The pod-level resources given to the sandbox (upstream's `calculateSandboxResources`,
/// overhead excluded).
pub fn sandbox_resources(pod: &Pod, node: &NodeResources) -> LinuxContainerResources {
    let req = pod_totals(pod, requests);
    let lim = pod_totals(pod, limits);
    linux_resources(
        req.cpu_milli,
        lim.cpu_milli.unwrap_or(0),
        lim.memory.unwrap_or(0),
        node,
    )
}

/// The pod's overhead as resources, requests taken equal to limits (upstream's
/// `convertOverheadToLinuxResources`).
pub fn overhead_resources(pod: &Pod, node: &NodeResources) -> LinuxContainerResources {
    let Some(overhead) = pod.spec.as_ref().and_then(|s| s.overhead.as_ref()) else {
        return LinuxContainerResources::default();
    };
    let cpu = quantity_of(Some(overhead), "cpu").map_or(0, |q| q.milli_value());
    let memory = quantity_of(Some(overhead), "memory").map_or(0, |q| q.value());
    linux_resources(Some(cpu), cpu, memory, node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::qos::tests::container;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn v1_node() -> NodeResources {
        NodeResources {
            memory_capacity: 4 * 1024 * 1024 * 1024,
            cgroup_v2: false,
            ..Default::default()
        }
    }

    // Values from upstream's helpers_linux_test.go.
    #[test]
    fn shares_and_quota() {
        for (milli, shares) in [
            (0, 2),
            (1, 2),
            (2, 2),
            (10, 10),
            (100, 102),
            (1000, 1024),
            (500, 512),
            (300_000, 262_144),
            (-5, 2),
        ] {
            assert_eq!(milli_cpu_to_shares(milli), shares, "{milli}m");
        }
        for (milli, quota) in [
            (0, 0),
            (5, 1000),
            (9, 1000),
            (10, 1000),
            (200, 20_000),
            (500, 50_000),
            (1000, 100_000),
            (1500, 150_000),
        ] {
            assert_eq!(milli_cpu_to_quota(milli, QUOTA_PERIOD), quota, "{milli}m");
        }
    }

    #[test]
    fn container_resources_from_requests_and_limits() {
        let c = container(
            "a",
            &[("cpu", "250m"), ("memory", "128Mi")],
            &[("cpu", "500m"), ("memory", "256Mi")],
        );
        let p = pod(vec![c.clone()], vec![]);
        let r = linux_container_resources(&p, &c, &v1_node());
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.memory_limit_in_bytes, 256 * 1024 * 1024);
        assert!(r.unified.is_empty());
        // 1000 - 1000*128Mi/4Gi = 969
        assert_eq!(r.oom_score_adj, 969);
    }

    #[test]
    fn shares_follow_the_limit_without_a_request() {
        let c = container("a", &[], &[("cpu", "2")]);
        let p = pod(vec![c.clone()], vec![]);
        let r = linux_container_resources(&p, &c, &v1_node());
        assert_eq!(r.cpu_shares, 2048);
        assert_eq!(r.cpu_quota, 200_000);
        // An explicit zero request is a request.
        let c = container("a", &[("cpu", "0")], &[("cpu", "2")]);
        assert_eq!(linux_container_resources(&p, &c, &v1_node()).cpu_shares, 2);
    }

    #[test]
    fn best_effort_container() {
        let c = container("a", &[], &[]);
        let p = pod(vec![c.clone()], vec![]);
        let r = linux_container_resources(&p, &c, &v1_node());
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (2, 0, 100_000, 0)
        );
        assert_eq!(r.oom_score_adj, 1000);
        let no_quota = NodeResources {
            cpu_cfs_quota: false,
            ..v1_node()
        };
        let r = linux_container_resources(&p, &c, &no_quota);
        assert_eq!((r.cpu_quota, r.cpu_period), (0, 0));
    }

    #[test]
    fn cgroup_v2_groups_oom_kills_and_disables_swap() {
        let c = container("a", &[], &[("memory", "1Gi")]);
        let p = pod(vec![c.clone()], vec![]);
        let node = NodeResources {
            swap_controller_available: true,
            ..NodeResources::default()
        };
        let r = linux_container_resources(&p, &c, &node);
        assert_eq!(
            r.unified.get("memory.oom.group").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            r.unified.get("memory.swap.max").map(String::as_str),
            Some("0")
        );
        let single = NodeResources {
            single_process_oom_kill: Some(true),
            ..NodeResources::default()
        };
        assert!(linux_container_resources(&p, &c, &single)
            .unified
            .is_empty());
        let v1 = NodeResources {
            swap_controller_available: true,
            ..v1_node()
        };
        assert_eq!(
            linux_container_resources(&p, &c, &v1).memory_swap_limit_in_bytes,
            1 << 30
        );
    }

    // Cases from upstream's policy_test.go (memory capacity 4000000000).
    #[test]
    fn oom_score_adj() {
        let cap = 4_000_000_000;
        let guaranteed = container(
            "g",
            &[("cpu", "1"), ("memory", "1G")],
            &[("cpu", "1"), ("memory", "1G")],
        );
        let p = pod(vec![guaranteed.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &guaranteed, cap), -997);

        let be = container("b", &[], &[]);
        let p = pod(vec![be.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &be, cap), 1000);

        // Requests of 1/4 of the machine: 750.
        let burst = container("c", &[("memory", "1G")], &[]);
        let p = pod(vec![burst.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &burst, cap), 750);
        // Request above capacity: clamped to 3.
        let huge = container("c", &[("memory", "5G")], &[]);
        let p = pod(vec![huge.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &huge, cap), 3);
        // Tiny request: 1000 would equal best effort, so 999.
        let tiny = container("c", &[("memory", "1")], &[]);
        let p = pod(vec![tiny.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &tiny, cap), 999);
        // A burstable pod's container without memory request: 999.
        let cpu_only = container("c", &[("cpu", "1")], &[]);
        let p = pod(vec![cpu_only.clone()], vec![]);
        assert_eq!(container_oom_score_adj(&p, &cpu_only, cap), 999);
    }

    #[test]
    fn node_critical_and_sidecar_scores() {
        let cap = 4_000_000_000;
        let c = container("c", &[("memory", "1G")], &[]);
        let mut p = pod(vec![c.clone()], vec![]);
        if let Some(spec) = p.spec.as_mut() {
            spec.priority = Some(2_000_001_000);
            spec.priority_class_name = Some("system-node-critical".into());
        }
        assert_eq!(container_oom_score_adj(&p, &c, cap), -997);
        // Static pods are critical too, but only node-critical ones are protected.
        let mut p = pod(vec![c.clone()], vec![]);
        p.metadata = ObjectMeta {
            annotations: Some(
                [(
                    "kubernetes.io/config.source".to_string(),
                    "file".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        };
        assert!(is_critical_pod(&p));
        assert_eq!(container_oom_score_adj(&p, &c, cap), 750);

        // A sidecar with a smaller request scores as the smallest regular container.
        let mut sidecar = container("s", &[("memory", "100M")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let big = container("c", &[("memory", "2G")], &[]);
        let p = pod(vec![big.clone()], vec![sidecar.clone()]);
        assert_eq!(container_oom_score_adj(&p, &sidecar, cap), 500);
        assert_eq!(container_oom_score_adj(&p, &big, cap), 500);
    }

    #[test]
    fn hugepages() {
        assert_eq!(hugepage_unit_size(2 * 1024 * 1024).as_deref(), Some("2MB"));
        assert_eq!(hugepage_unit_size(1 << 30).as_deref(), Some("1GB"));
        assert_eq!(
            hugepage_size_from_sysfs("hugepages-2048kB").as_deref(),
            Some("2MB")
        );
        assert_eq!(
            hugepage_size_from_sysfs("hugepages-1048576kB").as_deref(),
            Some("1GB")
        );
        let c = container("c", &[], &[("hugepages-2Mi", "100Mi"), ("memory", "1Gi")]);
        let limits = hugepage_limits(
            c.resources.as_ref(),
            &["1GB".to_string(), "2MB".to_string()],
        );
        assert_eq!(
            limits,
            vec![
                HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0
                },
                HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 100 * 1024 * 1024
                },
            ]
        );
    }

    #[test]
    fn cgroup_parents() {
        let uid = "0b3c2e4a-1d5f-4a7b-9c8d-123456789abc";
        assert_eq!(
            pod_cgroup_parent("/", CgroupDriver::Cgroupfs, qos::GUARANTEED, uid),
            format!("/kubepods/pod{uid}")
        );
        assert_eq!(
            pod_cgroup_parent("/", CgroupDriver::Cgroupfs, qos::BURSTABLE, uid),
            format!("/kubepods/burstable/pod{uid}")
        );
        assert_eq!(
            pod_cgroup_parent("", CgroupDriver::Cgroupfs, qos::BEST_EFFORT, uid),
            format!("/kubepods/besteffort/pod{uid}")
        );
        assert_eq!(
            pod_cgroup_parent("/ferro/", CgroupDriver::Cgroupfs, qos::BURSTABLE, "u"),
            "/ferro/kubepods/burstable/podu"
        );
        assert_eq!(
            pod_cgroup_parent("/", CgroupDriver::Systemd, qos::BURSTABLE, "1-2"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice"
        );
        assert_eq!(
            pod_cgroup_parent("/", CgroupDriver::Systemd, qos::GUARANTEED, "u"),
            "/kubepods.slice/kubepods-podu.slice"
        );
    }

    #[test]
    fn sandbox_totals_count_sidecars_and_init_peaks() {
        let mut sidecar = container(
            "s",
            &[("cpu", "100m")],
            &[("cpu", "200m"), ("memory", "100Mi")],
        );
        sidecar.restart_policy = Some("Always".into());
        let init = container("i", &[("cpu", "2")], &[("cpu", "2")]);
        let app = container("a", &[("cpu", "500m")], &[("cpu", "1"), ("memory", "1Gi")]);
        let p = pod(vec![app], vec![sidecar, init]);
        let r = sandbox_resources(&p, &v1_node());
        // Requests: max(500m + 100m, 2 + 100m) = 2100m.
        assert_eq!(r.cpu_shares, 2150);
        // Limits: max(1 + 200m, 2 + 200m) = 2200m; memory 1Gi + 100Mi.
        assert_eq!(r.cpu_quota, 220_000);
        assert_eq!(r.memory_limit_in_bytes, (1 << 30) + 100 * (1 << 20));
        assert_eq!(
            overhead_resources(&p, &v1_node()),
            LinuxContainerResources::default()
        );
    }
}
