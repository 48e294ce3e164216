//! The kubelet's Summary API (`/stats/summary`, stats/v1alpha1): the node's CPU, memory,
//! filesystem and process counts read from the machine, and each pod's and container's
//! CPU, memory and filesystem use from the runtime's container stats.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::runtime::{api, Runtime};

/// Keeps the previous CPU sample, as usageNanoCores is a rate between two reads.
pub struct NodeSampler {
    pub root: PathBuf,
    started: String,
    last_cpu: Mutex<Option<(Instant, u64)>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Total non-idle CPU time of the machine in nanoseconds, from /proc/stat.
fn cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = f.first()?
        + f.get(1)?
        + f.get(2)?
        + f.get(5).unwrap_or(&0)
        + f.get(6).unwrap_or(&0)
        + f.get(7).unwrap_or(&0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy.saturating_mul(1_000_000_000) / hz)
}

fn meminfo() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.to_string(), kb * 1024))
        })
        .collect()
}

fn fs_stats(path: &Path) -> Value {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return json!({});
    };
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return json!({});
        }
        st
    };
    let frsize = st.f_frsize;
    json!({
        "time": now(),
        "availableBytes": st.f_bavail * frsize,
        "capacityBytes": st.f_blocks * frsize,
        "usedBytes": (st.f_blocks - st.f_bfree) * frsize,
        "inodesFree": st.f_ffree,
        "inodes": st.f_files,
        "inodesUsed": st.f_files - st.f_ffree,
    })
}

/// Bytes used by the files under `dir` (a pod's or container's logs).
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

impl NodeSampler {
    pub fn new(root: &Path) -> NodeSampler {
        NodeSampler {
            root: root.to_path_buf(),
            started: now(),
            last_cpu: Mutex::new(None),
        }
    }

    fn cpu(&self) -> Value {
        let Some(total) = cpu_nanos() else {
            return json!({ "time": now() });
        };
        let at = Instant::now();
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let rate = last.and_then(|(t, v)| {
            let dt = at.duration_since(t).as_nanos() as f64;
            (dt > 0.0).then(|| ((total.saturating_sub(v)) as f64 / dt * 1e9) as u64)
        });
        *last = Some((at, total));
        let mut v = json!({ "time": now(), "usageCoreNanoSeconds": total });
        if let Some(r) = rate {
            v["usageNanoCores"] = json!(r);
        }
        v
    }

    fn node(&self, name: &str) -> Value {
        let m = meminfo();
        let total = m.get("MemTotal").copied().unwrap_or(0);
        let available = m.get("MemAvailable").copied().unwrap_or(0);
        let free = m.get("MemFree").copied().unwrap_or(0);
        let inactive_file = m.get("Inactive(file)").copied().unwrap_or(0);
        let usage = total.saturating_sub(free);
        let fs = fs_stats(&self.root);
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let procs = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                    .count()
            })
            .unwrap_or(0);
        json!({
            "nodeName": name,
            "startTime": self.started,
            "cpu": self.cpu(),
            "memory": {
                "time": now(),
                "availableBytes": available,
                "usageBytes": usage,
                "workingSetBytes": usage.saturating_sub(inactive_file),
                "rssBytes": m.get("AnonPages").copied().unwrap_or(0),
                "pageFaults": 0,
                "majorPageFaults": 0,
            },
            "fs": fs,
            "runtime": { "imageFs": fs, "containerFs": fs },
            "rlimit": { "time": now(), "maxpid": pid_max, "curproc": procs },
        })
    }
}

fn value_of(v: &Option<api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// The Summary: the node, and every pod the kubelet runs with its containers.
pub async fn summary(
    sampler: &NodeSampler,
    runtime: &dyn Runtime,
    node_name: &str,
    pods: &[Pod],
    pod_logs: &Path,
    only_cpu_and_memory: bool,
) -> Value {
    let stats = runtime
        .list_container_stats(api::ListContainerStatsRequest::default())
        .await
        .map(|r| r.stats)
        .unwrap_or_default();
    let mut by_pod: BTreeMap<String, Vec<api::ContainerStats>> = BTreeMap::new();
    for s in stats {
        if let Some(uid) = s
            .attributes
            .as_ref()
            .and_then(|a| a.labels.get(crate::pods::labels::POD_UID))
        {
            by_pod.entry(uid.clone()).or_default().push(s);
        }
    }
    let mut pod_list = Vec::new();
    for pod in pods {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let logs_dir = pod_logs.join(format!("{ns}_{name}_{uid}"));
        let mut containers = Vec::new();
        let (mut cpu_total, mut cpu_rate, mut mem_ws, mut mem_usage, mut rootfs) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for s in by_pod.get(&uid).into_iter().flatten() {
            let cname = s
                .attributes
                .as_ref()
                .and_then(|a| a.metadata.as_ref())
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let cpu = s.cpu.as_ref();
            let mem = s.memory.as_ref();
            let layer = s.writable_layer.as_ref();
            cpu_total += cpu
                .and_then(|c| value_of(&c.usage_core_nano_seconds))
                .unwrap_or(0);
            cpu_rate += cpu.and_then(|c| value_of(&c.usage_nano_cores)).unwrap_or(0);
            mem_ws += mem
                .and_then(|m| value_of(&m.working_set_bytes))
                .unwrap_or(0);
            mem_usage += mem.and_then(|m| value_of(&m.usage_bytes)).unwrap_or(0);
            let used = layer.and_then(|l| value_of(&l.used_bytes)).unwrap_or(0);
            rootfs += used;
            let mut c = json!({
                "name": cname,
                "cpu": {
                    "time": now(),
                    "usageCoreNanoSeconds": cpu.and_then(|c| value_of(&c.usage_core_nano_seconds)),
                    "usageNanoCores": cpu.and_then(|c| value_of(&c.usage_nano_cores)),
                },
                "memory": {
                    "time": now(),
                    "workingSetBytes": mem.and_then(|m| value_of(&m.working_set_bytes)),
                    "usageBytes": mem.and_then(|m| value_of(&m.usage_bytes)),
                    "rssBytes": mem.and_then(|m| value_of(&m.rss_bytes)),
                    "pageFaults": mem.and_then(|m| value_of(&m.page_faults)),
                    "majorPageFaults": mem.and_then(|m| value_of(&m.major_page_faults)),
                },
            });
            if !only_cpu_and_memory {
                c["rootfs"] = json!({
                    "time": now(),
                    "usedBytes": used,
                    "inodesUsed": layer.and_then(|l| value_of(&l.inodes_used)),
                });
                c["logs"] = json!({ "time": now(), "usedBytes": du(&logs_dir.join(&cname)) });
            }
            containers.push(c);
        }
        let mut p = json!({
            "podRef": { "name": name, "namespace": ns, "uid": uid },
            "startTime": pod.status.as_ref().and_then(|s| s.start_time.clone()),
            "containers": containers,
            "cpu": { "time": now(), "usageCoreNanoSeconds": cpu_total, "usageNanoCores": cpu_rate },
            "memory": { "time": now(), "workingSetBytes": mem_ws, "usageBytes": mem_usage },
        });
        if !only_cpu_and_memory {
            let logs = du(&logs_dir);
            p["ephemeral-storage"] = json!({ "time": now(), "usedBytes": rootfs + logs });
        }
        pod_list.push(p);
    }
    let mut node = sampler.node(node_name);
    if only_cpu_and_memory {
        if let Some(o) = node.as_object_mut() {
            o.retain(|k, _| matches!(k.as_str(), "nodeName" | "startTime" | "cpu" | "memory"));
        }
    }
    json!({ "node": node, "pods": pod_list })
}
