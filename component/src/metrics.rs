//! A small Prometheus registry: counters, gauges and histograms with labels, rendered in
//! the text exposition format for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

struct Histogram {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    gauges: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    histograms: BTreeMap<&'static str, (Vec<f64>, BTreeMap<Labels, Histogram>)>,
    help: BTreeMap<&'static str, &'static str>,
}

#[derive(Default)]
pub struct Registry {
    families: Mutex<Families>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn render_labels(out: &mut String, labels: &Labels, extra: Option<(&str, String)>) {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if !parts.is_empty() {
        let _ = write!(out, "{{{}}}", parts.join(","));
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn describe(&self, name: &'static str, help: &'static str) {
        self.lock().help.insert(name, help);
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], by: f64) {
        *self
            .lock()
            .counters
            .entry(name)
            .or_default()
            .entry(labels(pairs))
            .or_default() += by;
    }

    pub fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> f64 {
        self.lock()
            .counters
            .get(name)
            .and_then(|m| m.get(&labels(pairs)))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        self.lock()
            .gauges
            .entry(name)
            .or_default()
            .insert(labels(pairs), value);
    }

    /// Records one observation; `bounds` are the bucket upper bounds, fixed at first use.
    pub fn observe(
        &self,
        name: &'static str,
        bounds: &[f64],
        pairs: &[(&'static str, &str)],
        value: f64,
    ) {
        let mut f = self.lock();
        let (bounds, series) = f
            .histograms
            .entry(name)
            .or_insert_with(|| (bounds.to_vec(), BTreeMap::new()));
        let h = series.entry(labels(pairs)).or_insert_with(|| Histogram {
            buckets: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        });
        for (i, b) in bounds.iter().enumerate() {
            if value <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += value;
        h.count += 1;
    }

    pub fn render(&self) -> String {
        let f = self.lock();
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str| {
            if let Some(help) = f.help.get(name) {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        for (kind, families) in [("counter", &f.counters), ("gauge", &f.gauges)] {
            for (name, series) in families {
                head(&mut out, name, kind);
                for (l, v) in series {
                    out.push_str(name);
                    render_labels(&mut out, l, None);
                    let _ = writeln!(out, " {v}");
                }
            }
        }
        for (name, (bounds, series)) in &f.histograms {
            head(&mut out, name, "histogram");
            for (l, h) in series {
                for (b, n) in bounds.iter().zip(&h.buckets) {
                    let _ = write!(out, "{name}_bucket");
                    render_labels(&mut out, l, Some(("le", b.to_string())));
                    let _ = writeln!(out, " {n}");
                }
                let _ = write!(out, "{name}_bucket");
                render_labels(&mut out, l, Some(("le", "+Inf".into())));
                let _ = writeln!(out, " {}", h.count);
                let _ = write!(out, "{name}_sum");
                render_labels(&mut out, l, None);
                let _ = writeln!(out, " {}", h.sum);
                let _ = write!(out, "{name}_count");
                render_labels(&mut out, l, None);
                let _ = writeln!(out, " {}", h.count);
            }
        }
        out
    }
}

/// Upstream's default histogram buckets for latencies in seconds (exponential from 1 ms).
pub fn latency_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * 2f64.powi(i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind() {
        let r = Registry::default();
        r.inc("a_total", &[("result", "ok")]);
        r.set("g", &[("queue", "active")], 3.0);
        r.observe("h_seconds", &[0.1, 1.0], &[], 0.5);
        let text = r.render();
        assert!(text.contains("a_total{result=\"ok\"} 1\n"));
        assert!(text.contains("g{queue=\"active\"} 3\n"));
        assert!(text.contains("h_seconds_bucket{le=\"0.1\"} 0\n"));
        assert!(text.contains("h_seconds_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("h_seconds_count 1\n"));
    }
}
