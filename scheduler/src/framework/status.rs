//! The outcome of one plugin call, with upstream's codes: `Unschedulable` may be fixed by
//! preemption, `UnschedulableAndUnresolvable` may not.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    Error,
    Unschedulable,
    UnschedulableAndUnresolvable,
    /// Filter/PreFilter: this plugin has nothing to say about the pod; later calls are skipped.
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    /// Human reasons, as they appear in `FailedScheduling` messages
    /// (e.g. `node(s) didn't match Pod's node affinity/selector`).
    pub reasons: Vec<String>,
    /// The plugin that produced the status (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status::new(Code::Success, Vec::new())
    }

    pub fn skip() -> Status {
        Status::new(Code::Skip, Vec::new())
    }

    pub fn new(code: Code, reasons: Vec<String>) -> Status {
        Status {
            code,
            reasons,
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, vec![reason.into()])
    }

    pub fn error(reason: impl Into<String>) -> Status {
        Status::new(Code::Error, vec![reason.into()])
    }

    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// Unschedulable either way: the pod goes back to the queue rather than erroring.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join(", "))
    }
}
