//! The request parameters the API paths take, described once and shared by v2 and v3.

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    Path,
    Query,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
        }
    }
}

/// One path or query parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub location: Location,
    /// `string`, `integer` or `boolean`.
    pub type_: &'static str,
    pub description: String,
}

impl Parameter {
    fn query(name: &'static str, type_: &'static str, description: &str) -> Self {
        Parameter {
            name,
            location: Location::Query,
            type_,
            description: description.to_string(),
        }
    }

    pub fn required(&self) -> bool {
        self.location == Location::Path
    }
}

/// The `{name}` path segment.
pub fn name(kind: &str) -> Parameter {
    Parameter {
        name: "name",
        location: Location::Path,
        type_: "string",
        description: format!("The name of the {kind}."),
    }
}

/// The `{namespace}` path segment.
pub fn namespace() -> Parameter {
    Parameter {
        name: "namespace",
        location: Location::Path,
        type_: "string",
        description: "The namespace the object lives in.".into(),
    }
}

/// The `{path}` tail of a proxy path.
pub fn proxy_path() -> Parameter {
    Parameter {
        name: "path",
        location: Location::Path,
        type_: "string",
        description: "The path, relative to the proxied target, the request is sent to.".into(),
    }
}

pub fn pretty() -> Parameter {
    Parameter::query(
        "pretty",
        "string",
        "When 'true', the response is indented for human readers.",
    )
}

/// The options of a list or watch (`list`, `watch`, `watchlist`, `deletecollection` share
/// the selection ones).
pub fn list() -> Vec<Parameter> {
    vec![
        allow_watch_bookmarks(),
        continue_(),
        field_selector(),
        label_selector(),
        limit(),
        resource_version(),
        resource_version_match(),
        send_initial_events(),
        timeout_seconds(),
        watch(),
    ]
}

/// The options of a delete of a whole collection.
pub fn delete_collection() -> Vec<Parameter> {
    vec![
        continue_(),
        dry_run(),
        field_selector(),
        grace_period_seconds(),
        label_selector(),
        limit(),
        orphan_dependents(),
        propagation_policy(),
        resource_version(),
        resource_version_match(),
        send_initial_events(),
        timeout_seconds(),
    ]
}

/// The options of a create or an update.
pub fn write() -> Vec<Parameter> {
    vec![dry_run(), field_manager(false), field_validation()]
}

/// The options of a patch: those of a write, plus forcing an apply.
pub fn patch() -> Vec<Parameter> {
    vec![dry_run(), field_manager(true), field_validation(), force()]
}

/// The options of a delete of one object.
pub fn delete() -> Vec<Parameter> {
    vec![
        dry_run(),
        grace_period_seconds(),
        orphan_dependents(),
        propagation_policy(),
    ]
}

/// The options of `pods/log`.
pub fn log() -> Vec<Parameter> {
    vec![
        Parameter::query(
            "container",
            "string",
            "The container whose logs are read; may be left out when the pod has only one.",
        ),
        Parameter::query(
            "follow",
            "boolean",
            "Keep the stream open and send new lines as the container writes them.",
        ),
        Parameter::query(
            "insecureSkipTLSVerifyBackend",
            "boolean",
            "Do not verify the serving certificate of the kubelet the logs are read from.",
        ),
        Parameter::query(
            "limitBytes",
            "integer",
            "Stop after this many bytes of log output.",
        ),
        Parameter::query(
            "previous",
            "boolean",
            "Read the logs of the previous, terminated instance of the container.",
        ),
        Parameter::query(
            "sinceSeconds",
            "integer",
            "Only lines written in the last this many seconds.",
        ),
        Parameter::query(
            "tailLines",
            "integer",
            "Only this many lines from the end of the log.",
        ),
        Parameter::query(
            "timestamps",
            "boolean",
            "Prefix every line with the time it was written (RFC3339).",
        ),
    ]
}

/// The options of a connect subresource (`exec`, `attach`, `portforward`, `proxy`).
pub fn connect(subresource: &str) -> Vec<Parameter> {
    let stream = |name: &'static str, which: &str| {
        Parameter::query(
            name,
            "boolean",
            &format!("Whether to connect the container's {which}."),
        )
    };
    let container = Parameter::query("container", "string", "The container to connect to.");
    let tty = Parameter::query("tty", "boolean", "Whether the connection uses a terminal.");
    match subresource {
        "exec" => vec![
            Parameter::query(
                "command",
                "string",
                "The command to run; repeat the parameter once per argument.",
            ),
            container,
            stream("stderr", "standard error"),
            stream("stdin", "standard input"),
            stream("stdout", "standard output"),
            tty,
        ],
        "attach" => vec![
            container,
            stream("stderr", "standard error"),
            stream("stdin", "standard input"),
            stream("stdout", "standard output"),
            tty,
        ],
        "portforward" => vec![Parameter::query(
            "ports",
            "integer",
            "The ports of the pod to forward to.",
        )],
        "proxy" => vec![Parameter::query(
            "path",
            "string",
            "The path, relative to the proxied target, the request is sent to.",
        )],
        _ => vec![],
    }
}

fn allow_watch_bookmarks() -> Parameter {
    Parameter::query(
        "allowWatchBookmarks",
        "boolean",
        "Ask for BOOKMARK events, which carry only a resourceVersion, on a watch. Servers may send them or not; ignored outside watches.",
    )
}

fn continue_() -> Parameter {
    Parameter::query(
        "continue",
        "string",
        "The token of a previous chunked list response, to read the next chunk. A token whose revision was compacted away answers 410 Gone.",
    )
}

fn dry_run() -> Parameter {
    Parameter::query(
        "dryRun",
        "string",
        "Run the request through every stage but do not persist it. The only accepted value is 'All'.",
    )
}

fn field_manager(patch: bool) -> Parameter {
    let mut description = String::from(
        "The name of the actor making the change, recorded in managedFields. At most 128 printable characters.",
    );
    if patch {
        description.push_str(" Required for apply patches, optional for the other patch types.");
    }
    Parameter::query("fieldManager", "string", &description)
}

fn field_validation() -> Parameter {
    Parameter::query(
        "fieldValidation",
        "string",
        "What to do with unknown or duplicate fields in the request body: 'Ignore' drops them silently, 'Warn' (the default) drops them and reports each in a Warning header, 'Strict' fails the request with BadRequest listing them all.",
    )
}

fn field_selector() -> Parameter {
    Parameter::query(
        "fieldSelector",
        "string",
        "Only objects whose fields match this selector, e.g. 'metadata.name=foo'. Everything when empty.",
    )
}

fn force() -> Parameter {
    Parameter::query(
        "force",
        "boolean",
        "Make an apply patch take ownership of fields other managers own. Only allowed with apply patches.",
    )
}

fn grace_period_seconds() -> Parameter {
    Parameter::query(
        "gracePeriodSeconds",
        "integer",
        "Seconds the object has to terminate before it is deleted; 0 deletes at once. Defaults to the kind's own grace period.",
    )
}

fn label_selector() -> Parameter {
    Parameter::query(
        "labelSelector",
        "string",
        "Only objects whose labels match this selector, e.g. 'app=web,tier!=db'. Everything when empty.",
    )
}

fn limit() -> Parameter {
    Parameter::query(
        "limit",
        "integer",
        "At most this many items in the response; when more exist, the list metadata carries a continue token for the next chunk.",
    )
}

fn orphan_dependents() -> Parameter {
    Parameter::query(
        "orphanDependents",
        "boolean",
        "Deprecated in favour of propagationPolicy: whether dependents are orphaned rather than garbage collected.",
    )
}

fn propagation_policy() -> Parameter {
    Parameter::query(
        "propagationPolicy",
        "string",
        "How dependents are garbage collected: 'Orphan', 'Background' or 'Foreground'.",
    )
}

fn resource_version() -> Parameter {
    Parameter::query(
        "resourceVersion",
        "string",
        "Which revision the response may be served from; see resourceVersionMatch. Unset reads the latest state.",
    )
}

fn resource_version_match() -> Parameter {
    Parameter::query(
        "resourceVersionMatch",
        "string",
        "How resourceVersion applies to a list: 'Exact' or 'NotOlderThan'. Requires resourceVersion.",
    )
}

fn send_initial_events() -> Parameter {
    Parameter::query(
        "sendInitialEvents",
        "boolean",
        "Start a watch with ADDED events for the current state, followed by a BOOKMARK marking its end. Requires resourceVersionMatch=NotOlderThan.",
    )
}

fn timeout_seconds() -> Parameter {
    Parameter::query(
        "timeoutSeconds",
        "integer",
        "How long a list or watch call may last, regardless of activity.",
    )
}

fn watch() -> Parameter {
    Parameter::query(
        "watch",
        "boolean",
        "Stream changes (ADDED, MODIFIED, DELETED) to the selected objects instead of listing them.",
    )
}
