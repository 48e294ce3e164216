//! Printers of batch/v1 kinds.

use serde_json::{json, Value};

use super::super::{Column, Printer};
use super::util::{
    at, between, condition, containers, created, format_selector, int_at, len_at, name, opt_bool,
    opt_int, opt_str, parse_time, since, str_at,
};
use super::Cells;

const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    "Names of the template's containers.",
)
.wide();
const IMAGES: Column =
    Column::new("Images", "string", "Images of the template's containers.").wide();
const SELECTOR: Column = Column::new("Selector", "string", "Labels the job's pods carry.").wide();

const JOB: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Status", "string", "Status of the job."),
        Column::new(
            "Completions",
            "string",
            "Succeeded pods out of the completions wanted.",
        ),
        Column::new("Duration", "string", "Time required to complete the job."),
        Column::age(),
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |job| {
        let (names, images) = containers(at(job, "spec.template.spec"));
        vec![
            name(job),
            json!(job_status(job)),
            json!(completions(job)),
            json!(duration(job)),
            created(job),
            json!(names),
            json!(images),
            json!(format_selector(at(job, "spec.selector"))),
        ]
    },
};

fn completions(job: &Value) -> String {
    let succeeded = int_at(job, "status.succeeded");
    if let Some(wanted) = opt_int(job, "spec.completions") {
        return format!("{succeeded}/{wanted}");
    }
    // Without a completion count the job is done after one success, however many pods run.
    match opt_int(job, "spec.parallelism").unwrap_or(0) {
        p if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn duration(job: &Value) -> String {
    let Some(start) = opt_str(job, "status.startTime").filter(|s| !s.is_empty()) else {
        return String::new();
    };
    match opt_str(job, "status.completionTime").filter(|s| !s.is_empty()) {
        None => since(job, "status.startTime"),
        Some(end) => match (parse_time(start), parse_time(end)) {
            (Some(start), Some(end)) => between(start, end),
            _ => "<unknown>".into(),
        },
    }
}

/// Whether the first condition of a type is true.
fn has_condition(job: &Value, kind: &str) -> bool {
    condition(job, "status.conditions", kind).is_some_and(|c| str_at(c, "status") == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if at(job, "metadata.deletionTimestamp").is_some_and(|v| !v.is_null()) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

const CRON_JOB: Cells = Cells {
    columns: &[
        Column::name(),
        Column::new("Schedule", "string", "The cron schedule."),
        Column::new(
            "Timezone",
            "string",
            "The time zone the schedule is read in.",
        ),
        Column::new("Suspend", "boolean", "Whether new runs are held back."),
        Column::new("Active", "integer", "Number of jobs running."),
        Column::new(
            "Last Schedule",
            "string",
            "Time since a job was last scheduled.",
        ),
        Column::age(),
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: |cj| {
        let (names, images) = containers(at(cj, "spec.jobTemplate.spec.template.spec"));
        let last = match at(cj, "status.lastScheduleTime") {
            Some(Value::String(_)) => since(cj, "status.lastScheduleTime"),
            _ => "<none>".into(),
        };
        vec![
            name(cj),
            json!(str_at(cj, "spec.schedule")),
            json!(opt_str(cj, "spec.timeZone").unwrap_or("<none>")),
            // The API defaults suspend to false, so upstream's "<unset>" never shows.
            json!(if opt_bool(cj, "spec.suspend") == Some(true) {
                "True"
            } else {
                "False"
            }),
            json!(len_at(cj, "status.active")),
            json!(last),
            created(cj),
            json!(names),
            json!(images),
            json!(format_selector(at(cj, "spec.jobTemplate.spec.selector"))),
        ]
    },
};

pub(super) fn lookup(group: &str, kind: &str) -> Option<&'static dyn Printer> {
    if group != "batch" {
        return None;
    }
    Some(match kind {
        "Job" => &JOB,
        "CronJob" => &CRON_JOB,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: i64) -> String {
        (chrono::Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
    }

    fn job(spec: Value, status: Value) -> Vec<Value> {
        JOB.cells(&json!({"metadata": {"name": "j"}, "spec": spec, "status": status}))
    }

    #[test]
    fn job_completions_and_duration() {
        let c = job(
            json!({"completions": 3, "parallelism": 2,
                   "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                   "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}}),
            json!({"succeeded": 3, "startTime": "2024-01-01T00:00:00Z",
                   "completionTime": "2024-01-01T00:02:30Z",
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                  {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(c[1..4], [json!("Complete"), json!("3/3"), json!("2m30s")]);
        assert_eq!(
            c[5..],
            [
                json!("pi"),
                json!("perl"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );

        let c = job(
            json!({"parallelism": 4}),
            json!({"succeeded": 1, "startTime": ago(3 * 3600)}),
        );
        assert_eq!(c[1..4], [json!("Running"), json!("1/1 of 4"), json!("3h")]);
        let c = job(json!({}), json!({}));
        assert_eq!(c[1..4], [json!("Running"), json!("0/1"), json!("")]);
        assert_eq!(c[7], json!("<none>"));
    }

    #[test]
    fn job_status_precedence() {
        let with = |conds: Value| job(json!({}), json!({"conditions": conds}))[1].clone();
        assert_eq!(
            with(json!([{"type": "Failed", "status": "True"}])),
            json!("Failed")
        );
        assert_eq!(
            with(json!([{"type": "Suspended", "status": "True"}])),
            json!("Suspended")
        );
        assert_eq!(
            with(json!([{"type": "Suspended", "status": "False"}])),
            json!("Running")
        );
        assert_eq!(
            with(json!([{"type": "FailureTarget", "status": "True"}])),
            json!("FailureTarget")
        );
        let deleting = JOB.cells(&json!({"metadata": {"deletionTimestamp": ago(5)},
            "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}));
        assert_eq!(deleting[1], json!("Terminating"));
    }

    #[test]
    fn cron_job_cells() {
        let cj = json!({
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Etc/UTC", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
            "status": {"active": [{"name": "nightly-1"}, {"name": "nightly-2"}], "lastScheduleTime": ago(30 * 3600)}
        });
        let c = CRON_JOB.cells(&cj);
        assert_eq!(
            c[1..6],
            [
                json!("0 3 * * *"),
                json!("Etc/UTC"),
                json!("False"),
                json!(2),
                json!("30h")
            ]
        );
        assert_eq!(c[7..], [json!("c"), json!("i"), json!("<none>")]);

        let c = CRON_JOB.cells(&json!({"spec": {"schedule": "@hourly", "suspend": true}}));
        assert_eq!(
            c[1..6],
            [
                json!("@hourly"),
                json!("<none>"),
                json!("True"),
                json!(0),
                json!("<none>")
            ]
        );
        assert_eq!(CRON_JOB.cells(&json!({}))[3], json!("False"));
    }
}
