//! The Pod printer: the READY, STATUS and RESTARTS summaries `kubectl get pods` shows.

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};

use super::super::{human_duration, Column, Printer};
use super::util::{at, created, int_at, items, name, opt_bool, opt_str, parse_time, str_at};

pub(super) struct Pod;

const COLUMNS: &[Column] = &[
    Column::name(),
    Column::new(
        "Ready",
        "string",
        "Ready containers out of all containers of the pod.",
    ),
    Column::new(
        "Status",
        "string",
        "A summary of the pod's phase and container states.",
    ),
    Column::new(
        "Restarts",
        "string",
        "Container restarts, and how long ago the latest one was.",
    ),
    Column::age(),
    Column::new("IP", "string", "The pod's primary IP address.").wide(),
    Column::new("Node", "string", "The node the pod is bound to.").wide(),
    Column::new(
        "Nominated Node",
        "string",
        "The node preemption made room on, if any.",
    )
    .wide(),
    Column::new(
        "Readiness Gates",
        "string",
        "Readiness gates that are met out of all gates.",
    )
    .wide(),
];

impl Printer for Pod {
    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, pod: &Value) -> Vec<Value> {
        let summary = summarize(pod);
        let mut cells = vec![
            name(pod),
            json!(format!("{}/{}", summary.ready, summary.total)),
            json!(summary.reason),
            json!(summary.restarts),
            created(pod),
        ];
        cells.extend(wide_cells(pod));
        cells
    }

    fn row_conditions(&self, pod: &Value) -> Option<Value> {
        let (reason, message) = match str_at(pod, "status.phase") {
            "Succeeded" => ("Succeeded", "The pod has completed successfully."),
            "Failed" => ("Failed", "The pod failed."),
            _ => return None,
        };
        Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
    }
}

struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: String,
}

/// Tracks a restart count and the latest time a counted container last terminated.
#[derive(Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<DateTime<FixedOffset>>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "restartCount");
        if at(status, "lastState.terminated").is_some_and(Value::is_object) {
            if let Some(t) = opt_str(status, "lastState.terminated.finishedAt").and_then(parse_time)
            {
                if self.last.is_none_or(|last| last < t) {
                    self.last = Some(t);
                }
            }
        }
    }

    fn text(&self) -> String {
        match self.last {
            Some(t) if self.count != 0 => {
                let secs = chrono::Utc::now().signed_duration_since(t).num_seconds();
                format!("{} ({} ago)", self.count, human_duration(secs))
            }
            _ => self.count.to_string(),
        }
    }
}

fn non_empty<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    opt_str(obj, path).filter(|s| !s.is_empty())
}

fn is_set(obj: &Value, path: &str) -> bool {
    at(obj, path).is_some_and(Value::is_object)
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    items(pod, "status.conditions")
        .iter()
        .find(|c| str_at(c, "type") == kind)
        .is_some_and(|c| str_at(c, "status") == "True")
}

/// Describes a terminated container that has no reason of its own.
fn exit_text(status: &Value) -> String {
    let signal = int_at(status, "state.terminated.signal");
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(status, "state.terminated.exitCode"))
    }
}

fn summarize(pod: &Value) -> Summary {
    let phase = str_at(pod, "status.phase");
    let mut reason = non_empty(pod, "status.reason").unwrap_or(phase).to_string();
    if items(pod, "status.conditions")
        .iter()
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_specs = items(pod, "spec.initContainers");
    // Sidecars (init containers that restart always) keep running beside the main
    // containers, so they count toward READY and their restarts stay visible.
    let is_sidecar = |container: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, "name") == container)
            .is_some_and(|c| str_at(c, "restartPolicy") == "Always")
    };
    let mut total = items(pod, "spec.containers").len();
    total += init_specs
        .iter()
        .filter(|c| str_at(c, "restartPolicy") == "Always")
        .count();
    let mut ready = 0;

    let mut all = Restarts::default();
    let mut sidecars = Restarts::default();
    let mut initializing = false;
    for (i, status) in items(pod, "status.initContainerStatuses")
        .iter()
        .enumerate()
    {
        all.add(status);
        let sidecar = is_sidecar(str_at(status, "name"));
        if sidecar {
            sidecars.add(status);
        }
        let terminated = is_set(status, "state.terminated");
        if terminated && int_at(status, "state.terminated.exitCode") == 0 {
            continue;
        }
        if sidecar && opt_bool(status, "started") == Some(true) {
            if opt_bool(status, "ready") == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated {
            match non_empty(status, "state.terminated.reason") {
                Some(r) => format!("Init:{r}"),
                None => format!("Init:{}", exit_text(status)),
            }
        } else {
            match non_empty(status, "state.waiting.reason") {
                Some(r) if r != "PodInitializing" => format!("Init:{r}"),
                _ => format!("Init:{i}/{}", init_specs.len()),
            }
        };
        initializing = true;
        break;
    }

    let mut restarts = all;
    if !initializing || condition_true(pod, "Initialized") {
        // Once initialized, finished init containers no longer matter; only sidecars do.
        restarts = sidecars;
        let mut has_running = false;
        // Walking backwards lets the first container's state win the STATUS column.
        for status in items(pod, "status.containerStatuses").iter().rev() {
            restarts.add(status);
            if let Some(r) = non_empty(status, "state.waiting.reason") {
                reason = r.to_string();
            } else if let Some(r) = non_empty(status, "state.terminated.reason") {
                reason = r.to_string();
            } else if is_set(status, "state.terminated") {
                reason = exit_text(status);
            } else if opt_bool(status, "ready") == Some(true) && is_set(status, "state.running") {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    let deleting = at(pod, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null());
    if deleting && str_at(pod, "status.reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    Summary {
        ready,
        total,
        reason,
        restarts: restarts.text(),
    }
}

fn wide_cells(pod: &Value) -> Vec<Value> {
    let ip = items(pod, "status.podIPs")
        .first()
        .and_then(|p| opt_str(p, "ip"))
        .or_else(|| opt_str(pod, "status.podIP"))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let node = non_empty(pod, "spec.nodeName").unwrap_or("<none>");
    let nominated = non_empty(pod, "status.nominatedNodeName").unwrap_or("<none>");
    let gates = items(pod, "spec.readinessGates");
    let readiness = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(pod, "status.conditions");
        let met = gates
            .iter()
            .filter(|g| {
                let kind = str_at(g, "conditionType");
                conditions
                    .iter()
                    .find(|c| str_at(c, "type") == kind)
                    .is_some_and(|c| str_at(c, "status") == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![json!(ip), json!(node), json!(nominated), json!(readiness)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: i64) -> String {
        (chrono::Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
    }

    fn cells(pod: Value) -> Vec<Value> {
        Pod.cells(&pod)
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts,
               "state": {"running": {"startedAt": ago(100)}}})
    }

    #[test]
    fn running_pod_with_wide_cells() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3 * 3600 + 5)},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}],
                     "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}],
                       "conditions": [{"type": "x", "status": "True"}, {"type": "y", "status": "False"}],
                       "containerStatuses": [running("a", true, 0), running("b", false, 0)]}
        });
        assert_eq!(
            cells(pod),
            vec![
                json!("web"),
                json!("1/2"),
                json!("Running"),
                json!("0"),
                json!("3h"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("1/2"),
            ]
        );
        assert_eq!(Pod.columns().len(), 9);
    }

    #[test]
    fn empty_pod_does_not_panic() {
        let c = cells(json!({}));
        assert_eq!(c[1], json!("0/0"));
        assert_eq!(c[2], json!(""));
        assert_eq!(c[3], json!("0"));
        assert_eq!(c[4], json!("<unknown>"));
        assert_eq!(
            c[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let odd = json!({"spec": "x", "status": {"containerStatuses": {"a": 1}}, "metadata": 3});
        assert_eq!(cells(odd).len(), 9);
    }

    #[test]
    fn crash_loop_with_restart_age() {
        let pod = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30 * 3600)}}
            }]}
        });
        let c = cells(pod);
        assert_eq!(c[1], json!("0/1"));
        assert_eq!(c[2], json!("CrashLoopBackOff"));
        assert_eq!(c[3], json!("4 (30h ago)"));
    }

    #[test]
    fn first_container_state_wins() {
        let pod = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 2}}},
                {"name": "b", "state": {"terminated": {"exitCode": 0, "signal": 9}}}
            ]}
        });
        assert_eq!(cells(pod)[2], json!("ExitCode:2"));
        let pod = json!({
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "a", "state": {"terminated": {"signal": 15}}}
            ]}
        });
        assert_eq!(cells(pod)[2], json!("Signal:15"));
    }

    #[test]
    fn completed_with_running_container() {
        let base = |ready_cond: &str| {
            json!({
                "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
                "status": {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": ready_cond}],
                    "containerStatuses": [
                        {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        running("b", true, 0)
                    ]}
            })
        };
        assert_eq!(cells(base("True"))[2], json!("Running"));
        assert_eq!(cells(base("False"))[2], json!("NotReady"));
    }

    #[test]
    fn init_container_progress() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let pod = json!({
            "spec": spec,
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "state": {"running": {}}, "restartCount": 2}
            ], "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}
        });
        let c = cells(pod);
        assert_eq!(c[1], json!("0/1"));
        assert_eq!(c[2], json!("Init:1/2"));
        assert_eq!(c[3], json!("2"));

        let failing = json!({
            "spec": spec,
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 3}}}
            ]}
        });
        assert_eq!(cells(failing)[2], json!("Init:ExitCode:3"));
        let waiting = json!({
            "spec": spec,
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ]}
        });
        assert_eq!(cells(waiting)[2], json!("Init:ImagePullBackOff"));
        let errored = json!({
            "spec": spec,
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
            ]}
        });
        assert_eq!(cells(errored)[2], json!("Init:Error"));
    }

    #[test]
    fn sidecars_count_toward_ready_and_restarts() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always"}, {"name": "once"}],
                     "containers": [{"name": "a"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "side", "started": true, "ready": true, "restartCount": 2,
                     "state": {"running": {}}},
                    {"name": "once", "restartCount": 5,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
                ],
                "containerStatuses": [running("a", true, 1)]}
        });
        let c = cells(pod);
        assert_eq!(c[1], json!("2/2"));
        assert_eq!(c[2], json!("Running"));
        assert_eq!(c[3], json!("3"));
    }

    #[test]
    fn terminating_and_unknown() {
        let mut pod = json!({
            "metadata": {"deletionTimestamp": ago(10)},
            "status": {"phase": "Running"}
        });
        assert_eq!(cells(pod.clone())[2], json!("Terminating"));
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(pod.clone())[2], json!("Unknown"));
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(cells(pod.clone())[2], json!("Succeeded"));
        assert_eq!(
            Pod.row_conditions(&pod),
            Some(
                json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                         "message": "The pod has completed successfully."}])
            )
        );
    }

    #[test]
    fn scheduling_gated_and_evicted() {
        let pod = json!({"status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(cells(pod)[2], json!("SchedulingGated"));
        let pod = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(cells(pod)[2], json!("Evicted"));
    }
}
