//! Prometheus metrics in the text exposition format: per controller, reconciliations and
//! their failures, with the same names upstream's workqueue metrics use where they exist.

use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// Adds one to `name{controller="..."}`.
    pub fn inc(&self, name: &str, controller: &str) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry((name.to_string(), controller.to_string()))
            .or_default() += 1;
    }

    pub fn get(&self, name: &str, controller: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(&(name.to_string(), controller.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The whole registry as Prometheus text.
    pub fn render(&self) -> String {
        let counters = self.counters.lock().unwrap();
        let mut out = String::new();
        let mut last = "";
        for ((name, controller), value) in counters.iter() {
            if name != last {
                out.push_str(&format!("# TYPE {name} counter\n"));
                last = name;
            }
            out.push_str(&format!("{name}{{name=\"{controller}\"}} {value}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.inc("workqueue_adds_total", "deployment");
        m.inc("workqueue_adds_total", "deployment");
        assert_eq!(
            m.render(),
            "# TYPE workqueue_adds_total counter\nworkqueue_adds_total{name=\"deployment\"} 2\n"
        );
    }
}
