//! Eviction signals and thresholds as upstream's eviction manager reads them: what is
//! available of memory and of the node's filesystem, against `evictionHard`.

use std::collections::BTreeMap;
use std::path::Path;

use ferrokube_common::quantity::Quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    PidAvailable,
}

impl Signal {
    pub fn parse(name: &str) -> Option<Signal> {
        Some(match name {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodeFsAvailable,
            "nodefs.inodesFree" => Signal::NodeFsInodesFree,
            "imagefs.available" => Signal::ImageFsAvailable,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource a signal starves, as upstream names it in messages.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(i64),
    Percentage(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

/// Parses `evictionHard`; unknown signals and bad values are errors, as upstream's
/// config validation makes them.
pub fn parse_thresholds(map: &BTreeMap<String, String>) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for (k, v) in map {
        let signal = Signal::parse(k).ok_or_else(|| format!("unsupported eviction signal {k}"))?;
        let value = if let Some(p) = v.strip_suffix('%') {
            let pct: f64 = p
                .parse()
                .map_err(|_| format!("invalid percentage {v} for {k}"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!(
                    "eviction percentage threshold {k} must be >= 0% and <= 100%: {v}"
                ));
            }
            Value::Percentage(pct / 100.0)
        } else {
            let q = Quantity::parse(v).map_err(|_| format!("invalid quantity {v} for {k}"))?;
            Value::Quantity(q.value())
        };
        out.push(Threshold { signal, value });
    }
    Ok(out)
}

/// One observation of a signal: what is available out of what capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

pub type Observations = BTreeMap<Signal, Observation>;

fn meminfo(field: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: i64 = text
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st)
    }
}

/// Reads the signals of this machine; `root` is the kubelet's filesystem (nodefs, which
/// here is also the image filesystem).
pub fn observe(root: &Path) -> Observations {
    let mut obs = Observations::new();
    if let (Some(total), Some(available)) = (meminfo("MemTotal:"), meminfo("MemAvailable:")) {
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available,
                capacity: total,
            },
        );
    }
    if let Some(st) = statvfs(root) {
        let frsize = st.f_frsize as i64;
        let fs = Observation {
            available: st.f_bavail as i64 * frsize,
            capacity: st.f_blocks as i64 * frsize,
        };
        obs.insert(Signal::NodeFsAvailable, fs);
        obs.insert(Signal::ImageFsAvailable, fs);
        obs.insert(
            Signal::NodeFsInodesFree,
            Observation {
                available: st.f_favail as i64,
                capacity: st.f_files as i64,
            },
        );
    }
    if let Ok(max) = std::fs::read_to_string("/proc/sys/kernel/pid_max") {
        if let Ok(max) = max.trim().parse::<i64>() {
            let running = std::fs::read_dir("/proc")
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                        .count()
                })
                .unwrap_or(0) as i64;
            obs.insert(
                Signal::PidAvailable,
                Observation {
                    available: max - running,
                    capacity: max,
                },
            );
        }
    }
    obs
}

/// The threshold's quantity for this observation (percentages are of the capacity).
pub fn quantity(t: &Threshold, o: &Observation) -> i64 {
    match t.value {
        Value::Quantity(q) => q,
        Value::Percentage(p) => (o.capacity as f64 * p) as i64,
    }
}

/// The thresholds whose signal is below them.
pub fn met(thresholds: &[Threshold], obs: &Observations) -> Vec<(Threshold, Observation)> {
    thresholds
        .iter()
        .filter_map(|t| {
            let o = obs.get(&t.signal)?;
            (o.available < quantity(t, o)).then_some((*t, *o))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_compare() {
        let map: BTreeMap<String, String> = [
            ("memory.available".to_string(), "100Mi".to_string()),
            ("nodefs.available".to_string(), "10%".to_string()),
        ]
        .into();
        let ts = parse_thresholds(&map).unwrap();
        let mut obs = Observations::new();
        obs.insert(
            Signal::MemoryAvailable,
            Observation {
                available: 50 << 20,
                capacity: 1 << 30,
            },
        );
        obs.insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 200,
                capacity: 1000,
            },
        );
        let m = met(&ts, &obs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0.signal, Signal::MemoryAvailable);
        assert!(
            parse_thresholds(&[("cpu.available".to_string(), "1".to_string())].into()).is_err()
        );
        assert!(
            parse_thresholds(&[("memory.available".to_string(), "120%".to_string())].into())
                .is_err()
        );
    }

    #[test]
    fn this_machine_is_observed() {
        let obs = observe(Path::new("/"));
        assert!(obs.contains_key(&Signal::MemoryAvailable));
        assert!(obs[&Signal::NodeFsAvailable].capacity > 0);
    }
}
