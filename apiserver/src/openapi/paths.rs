//! The API paths and their operations, derived from the resource table in a form both
//! swagger 2.0 and OpenAPI 3.0 render from.
//!
//! Names follow upstream's API installer, since clients look operations up by them:
//! `listCoreV1NamespacedPod`, `patchAppsV1NamespacedDeploymentScale`,
//! `connectCoreV1GetNamespacedPodExec`, `watchCoreV1PodListForAllNamespaces`...

use std::sync::Arc;

use super::parameters::{self, Parameter};
use super::schemas::{
    self, API_GROUP, API_GROUP_LIST, API_RESOURCE_LIST, API_VERSIONS, DELETE_OPTIONS, PATCH,
    STATUS, VERSION_INFO, WATCH_EVENT,
};
use crate::resources::Resource;

const OBJECT: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const LOG: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const ANY: &[&str] = &["*/*"];
const JSON: &[&str] = &["application/json"];
pub const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// One path with the operations it serves.
#[derive(Clone, Debug)]
pub struct Route {
    pub path: String,
    /// The v3 document the path belongs to: `api/v1`, `apis/apps/v1`, `apis/apps`, `api`...
    pub document: String,
    /// Parameters every operation of the path takes, hoisted as upstream does.
    pub parameters: Vec<Parameter>,
    pub operations: Vec<Operation>,
}

#[derive(Clone, Debug)]
pub struct Operation {
    /// Lower-case HTTP method, as OpenAPI keys it.
    pub method: &'static str,
    pub id: String,
    pub description: String,
    pub tag: String,
    /// `x-kubernetes-action`.
    pub action: Option<&'static str>,
    /// `x-kubernetes-group-version-kind`.
    pub gvk: Option<(String, String, String)>,
    pub parameters: Vec<Parameter>,
    pub body: Option<RequestBody>,
    pub consumes: &'static [&'static str],
    pub produces: &'static [&'static str],
    pub responses: Vec<(u16, Payload)>,
}

#[derive(Clone, Debug)]
pub struct RequestBody {
    pub definition: String,
    pub required: bool,
}

/// What a response carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Nothing,
    Definition(String),
    Text,
}

impl Payload {
    pub fn definition(&self) -> Option<&str> {
        match self {
            Payload::Definition(d) => Some(d),
            _ => None,
        }
    }
}

/// The standard text of a response code.
pub fn response_description(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "",
    }
}

/// `core`, `apps`, `rbacAuthorization`, `flowcontrolApiserver`: a group as upstream writes
/// it inside tags and operation ids.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "core".into();
    }
    let short = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    for (i, part) in short.split('.').enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            out.push_str(&capitalize(part));
        }
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`.
fn id_prefix(group: &str, version: &str) -> String {
    format!("{}{}", capitalize(&group_word(group)), capitalize(version))
}

fn tag(group: &str, version: &str) -> String {
    format!("{}_{}", group_word(group), version)
}

/// The v3 document key of a group-version: `api/v1` or `apis/<group>/<version>`.
pub fn document_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// All routes for the rows, resource paths first, then discovery.
pub fn build(rows: &[Arc<Resource>]) -> Vec<Route> {
    let mut routes = Vec::new();
    for row in rows {
        resource_routes(row, rows, &mut routes);
    }
    discovery_routes(rows, &mut routes);
    for route in &mut routes {
        hoist_common_parameters(route);
    }
    routes
}

/// Builds operations one at a time for a row.
struct Ops {
    prefix: String,
    tag: String,
    document: String,
    gvk: (String, String, String),
}

impl Ops {
    fn new(row: &Resource) -> Self {
        Ops {
            prefix: id_prefix(&row.group, &row.version),
            tag: tag(&row.group, &row.version),
            document: document_key(&row.group, &row.version),
            gvk: (row.group.clone(), row.version.clone(), row.kind.clone()),
        }
    }

    fn operation(
        &self,
        method: &'static str,
        id: String,
        description: String,
        action: &'static str,
    ) -> Operation {
        Operation {
            method,
            id,
            description,
            tag: self.tag.clone(),
            action: Some(action),
            gvk: Some(self.gvk.clone()),
            parameters: vec![parameters::pretty()],
            body: None,
            consumes: ANY,
            produces: OBJECT,
            responses: vec![],
        }
    }

    fn route(
        &self,
        path: String,
        path_parameters: Vec<Parameter>,
        operations: Vec<Operation>,
    ) -> Route {
        let operations = operations
            .into_iter()
            .map(|mut op| {
                op.parameters.extend(path_parameters.iter().cloned());
                op.responses.push((401, Payload::Nothing));
                op
            })
            .collect();
        Route {
            path,
            document: self.document.clone(),
            parameters: vec![],
            operations,
        }
    }
}

fn resource_routes(row: &Resource, rows: &[Arc<Resource>], out: &mut Vec<Route>) {
    let ops = Ops::new(row);
    let base = if row.group.is_empty() {
        format!("/api/{}", row.version)
    } else {
        format!("/apis/{}/{}", row.group, row.version)
    };
    let kind = &row.kind;
    let p = &ops.prefix;
    let scoped = if row.namespaced {
        format!("Namespaced{kind}")
    } else {
        kind.clone()
    };
    let ns = if row.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let scope_params = || {
        let mut v = Vec::new();
        if row.namespaced {
            v.push(parameters::namespace());
        }
        v
    };
    let item_params = || {
        let mut v = vec![parameters::name(kind)];
        v.extend(scope_params());
        v
    };
    let kind_def = row.definition.clone();
    let list_def = schemas::list_definition(row);
    let deleted = if row.return_deleted_object {
        kind_def.clone()
    } else {
        STATUS.to_string()
    };

    // The collection.
    let mut collection = Vec::new();
    if row.allows("list") {
        let mut op = ops.operation(
            "get",
            format!("list{p}{scoped}"),
            format!("List or watch {kind} objects."),
            "list",
        );
        op.parameters.extend(parameters::list());
        op.produces = LIST;
        op.responses
            .push((200, Payload::Definition(list_def.clone())));
        collection.push(op);
    }
    if row.allows("create") {
        let mut op = ops.operation(
            "post",
            format!("create{p}{scoped}"),
            format!("Create a {kind}."),
            "post",
        );
        op.parameters.extend(parameters::write());
        op.body = Some(RequestBody {
            definition: kind_def.clone(),
            required: true,
        });
        for code in [200, 201, 202] {
            op.responses
                .push((code, Payload::Definition(kind_def.clone())));
        }
        collection.push(op);
    }
    if row.allows("deletecollection") {
        let mut op = ops.operation(
            "delete",
            format!("delete{p}Collection{scoped}"),
            format!("Delete a collection of {kind} objects."),
            "deletecollection",
        );
        op.parameters.extend(parameters::delete_collection());
        op.body = Some(RequestBody {
            definition: DELETE_OPTIONS.into(),
            required: false,
        });
        op.responses.push((200, Payload::Definition(STATUS.into())));
        collection.push(op);
    }
    let collection_path = format!("{base}{ns}/{}", row.plural);
    if !collection.is_empty() {
        out.push(ops.route(collection_path.clone(), scope_params(), collection));
    }

    // One object.
    let mut item = Vec::new();
    if row.allows("get") {
        let mut op = ops.operation(
            "get",
            format!("read{p}{scoped}"),
            format!("Read the named {kind}."),
            "get",
        );
        op.responses
            .push((200, Payload::Definition(kind_def.clone())));
        item.push(op);
    }
    if row.allows("update") {
        let mut op = ops.operation(
            "put",
            format!("replace{p}{scoped}"),
            format!("Replace the named {kind}."),
            "put",
        );
        op.parameters.extend(parameters::write());
        op.body = Some(RequestBody {
            definition: kind_def.clone(),
            required: true,
        });
        for code in [200, 201] {
            op.responses
                .push((code, Payload::Definition(kind_def.clone())));
        }
        item.push(op);
    }
    if row.allows("patch") {
        item.push(patch_operation(
            &ops,
            format!("patch{p}{scoped}"),
            format!("Patch the named {kind}."),
            &kind_def,
        ));
    }
    if row.allows("delete") {
        let mut op = ops.operation(
            "delete",
            format!("delete{p}{scoped}"),
            format!("Delete the named {kind}."),
            "delete",
        );
        op.parameters.extend(parameters::delete());
        op.body = Some(RequestBody {
            definition: DELETE_OPTIONS.into(),
            required: false,
        });
        for code in [200, 202] {
            op.responses
                .push((code, Payload::Definition(deleted.clone())));
        }
        item.push(op);
    }
    let item_path = format!("{collection_path}/{{name}}");
    if !item.is_empty() {
        out.push(ops.route(item_path.clone(), item_params(), item));
    }

    // Across namespaces.
    if row.namespaced && row.allows("list") {
        let mut op = ops.operation(
            "get",
            format!("list{p}{kind}ForAllNamespaces"),
            format!("List or watch {kind} objects of every namespace."),
            "list",
        );
        op.parameters.extend(parameters::list());
        op.produces = LIST;
        op.responses
            .push((200, Payload::Definition(list_def.clone())));
        out.push(ops.route(format!("{base}/{}", row.plural), vec![], vec![op]));
    }

    // The deprecated watch paths, which upstream still serves and publishes.
    if row.allows("watch") {
        let watch = |id: String, description: String, action: &'static str| {
            let mut op = ops.operation("get", id, description, action);
            op.parameters.extend(parameters::list());
            op.produces = LIST;
            op.responses
                .push((200, Payload::Definition(WATCH_EVENT.into())));
            op
        };
        let deprecated = "Deprecated: list with the 'watch' parameter instead";
        out.push(ops.route(
            format!("{base}/watch{ns}/{}", row.plural),
            scope_params(),
            vec![watch(
                format!("watch{p}{scoped}List"),
                format!("Watch changes to {kind} objects. {deprecated}."),
                "watchlist",
            )],
        ));
        out.push(ops.route(
            format!("{base}/watch{ns}/{}/{{name}}", row.plural),
            item_params(),
            vec![watch(
                format!("watch{p}{scoped}"),
                format!("Watch changes to the named {kind}. {deprecated}, with a fieldSelector on metadata.name."),
                "watch",
            )],
        ));
        if row.namespaced {
            out.push(ops.route(
                format!("{base}/watch/{}", row.plural),
                vec![],
                vec![watch(
                    format!("watch{p}{kind}ListForAllNamespaces"),
                    format!("Watch changes to {kind} objects of every namespace. {deprecated}."),
                    "watchlist",
                )],
            ));
        }
    }

    for sub in &row.subresources {
        subresource_routes(
            row,
            sub,
            rows,
            &ops,
            &item_path,
            &scoped,
            item_params(),
            out,
        );
    }
}

fn patch_operation(ops: &Ops, id: String, description: String, definition: &str) -> Operation {
    let mut op = ops.operation("patch", id, description, "patch");
    op.parameters.extend(parameters::patch());
    op.body = Some(RequestBody {
        definition: PATCH.into(),
        required: true,
    });
    op.consumes = PATCH_TYPES;
    for code in [200, 201] {
        op.responses
            .push((code, Payload::Definition(definition.to_string())));
    }
    op
}

#[allow(clippy::too_many_arguments)]
fn subresource_routes(
    row: &Resource,
    sub: &crate::resources::Subresource,
    rows: &[Arc<Resource>],
    parent: &Ops,
    item_path: &str,
    scoped: &str,
    item_params: Vec<Parameter>,
    out: &mut Vec<Route>,
) {
    let (group, version, sub_kind) = match sub.kind {
        Some((g, v, k)) => (g.to_string(), v.to_string(), k.to_string()),
        None => (row.group.clone(), row.version.clone(), row.kind.clone()),
    };
    let mut ops = Ops::new(row);
    ops.gvk = (group.clone(), version.clone(), sub_kind.clone());
    let p = &parent.prefix;
    let word = capitalize(sub.name);
    let kind = &row.kind;
    let path = format!("{item_path}/{}", sub.name);
    let allows = |verb: &str| sub.verbs.contains(&verb);

    // Streams and proxies: the options kind has no schema, the query carries the options.
    if sub_kind.ends_with("Options") {
        let mut methods: Vec<&'static str> = Vec::new();
        for (verb, method) in [
            ("delete", "delete"),
            ("get", "get"),
            ("patch", "patch"),
            ("create", "post"),
            ("update", "put"),
        ] {
            if allows(verb) {
                methods.push(method);
            }
        }
        if sub.name == "proxy" {
            methods.extend(["head", "options"]);
        }
        let connect = |suffix: &str| -> Vec<Operation> {
            methods
                .iter()
                .map(|method| {
                    let mut op = ops.operation(
                        method,
                        format!("connect{p}{}{scoped}{word}{suffix}", capitalize(method)),
                        format!(
                            "Connect {} requests to {} of the named {kind}.",
                            method.to_uppercase(),
                            sub.name
                        ),
                        "connect",
                    );
                    op.parameters = parameters::connect(sub.name);
                    op.consumes = ANY;
                    op.produces = ANY;
                    op.responses.push((200, Payload::Text));
                    op
                })
                .collect()
        };
        out.push(ops.route(path.clone(), item_params.clone(), connect("")));
        if sub.name == "proxy" {
            let mut params = item_params;
            params.push(parameters::proxy_path());
            out.push(ops.route(format!("{path}/{{path}}"), params, connect("WithPath")));
        }
        return;
    }

    if sub.name == "log" {
        let mut op = ops.operation(
            "get",
            format!("read{p}{scoped}Log"),
            format!("Read the log of the named {kind}."),
            "get",
        );
        op.parameters.extend(parameters::log());
        op.produces = LOG;
        op.responses.push((200, Payload::Text));
        out.push(ops.route(path, item_params, vec![op]));
        return;
    }

    let definition = schemas::definition_for(&group, &version, &sub_kind, rows)
        .unwrap_or_else(|| row.definition.clone());
    let mut operations = Vec::new();
    if allows("get") {
        let mut op = ops.operation(
            "get",
            format!("read{p}{scoped}{word}"),
            format!("Read {} of the named {kind}.", sub.name),
            "get",
        );
        op.responses
            .push((200, Payload::Definition(definition.clone())));
        operations.push(op);
    }
    if allows("create") {
        let mut op = ops.operation(
            "post",
            format!("create{p}{scoped}{word}"),
            format!("Create {} of the named {kind}.", sub.name),
            "post",
        );
        op.parameters.extend(parameters::write());
        op.body = Some(RequestBody {
            definition: definition.clone(),
            required: true,
        });
        for code in [200, 201, 202] {
            op.responses
                .push((code, Payload::Definition(definition.clone())));
        }
        operations.push(op);
    }
    if allows("update") {
        let mut op = ops.operation(
            "put",
            format!("replace{p}{scoped}{word}"),
            format!("Replace {} of the named {kind}.", sub.name),
            "put",
        );
        op.parameters.extend(parameters::write());
        op.body = Some(RequestBody {
            definition: definition.clone(),
            required: true,
        });
        for code in [200, 201] {
            op.responses
                .push((code, Payload::Definition(definition.clone())));
        }
        operations.push(op);
    }
    if allows("patch") {
        operations.push(patch_operation(
            &ops,
            format!("patch{p}{scoped}{word}"),
            format!("Patch {} of the named {kind}.", sub.name),
            &definition,
        ));
    }
    if !operations.is_empty() {
        out.push(ops.route(path, item_params, operations));
    }
}

/// `/api/`, `/api/v1/`, `/apis/`, `/apis/<group>/`, `/apis/<group>/<version>/`, `/version/`.
fn discovery_routes(rows: &[Arc<Resource>], out: &mut Vec<Route>) {
    let get = |path: String,
               document: String,
               id: String,
               description: &str,
               tag: String,
               definition: &str,
               media: &'static [&'static str]| Route {
        path,
        document,
        parameters: vec![],
        operations: vec![Operation {
            method: "get",
            id,
            description: description.to_string(),
            tag,
            action: None,
            gvk: None,
            parameters: vec![],
            body: None,
            consumes: media,
            produces: media,
            responses: vec![
                (200, Payload::Definition(definition.to_string())),
                (401, Payload::Nothing),
            ],
        }],
    };
    out.push(get(
        "/api/".into(),
        "api".into(),
        "getCoreAPIVersions".into(),
        "Get the available API versions of the core group.",
        "core".into(),
        API_VERSIONS,
        OBJECT,
    ));
    out.push(get(
        "/apis/".into(),
        "apis".into(),
        "getAPIVersions".into(),
        "Get the available API groups.",
        "apis".into(),
        API_GROUP_LIST,
        OBJECT,
    ));
    out.push(get(
        "/version/".into(),
        "version".into(),
        "getCodeVersion".into(),
        "Get the version of the server.",
        "version".into(),
        VERSION_INFO,
        JSON,
    ));
    let mut groups: Vec<String> = Vec::new();
    let mut group_versions: Vec<(String, String)> = Vec::new();
    for row in rows {
        if !row.group.is_empty() && !groups.contains(&row.group) {
            groups.push(row.group.clone());
        }
        let gv = (row.group.clone(), row.version.clone());
        if !group_versions.contains(&gv) {
            group_versions.push(gv);
        }
    }
    for group in groups {
        let word = group_word(&group);
        out.push(get(
            format!("/apis/{group}/"),
            format!("apis/{group}"),
            format!("get{}APIGroup", capitalize(&word)),
            "Get information about the group.",
            word,
            API_GROUP,
            OBJECT,
        ));
    }
    for (group, version) in group_versions {
        let key = document_key(&group, &version);
        out.push(get(
            format!("/{key}/"),
            key,
            format!("get{}APIResources", id_prefix(&group, &version)),
            "Get the resources the group-version serves.",
            tag(&group, &version),
            API_RESOURCE_LIST,
            OBJECT,
        ));
    }
}

/// Moves the parameters every operation of a path shares to the path, as upstream's builder
/// does; a path whose only operation is a PATCH keeps them on the operation, where kubectl
/// looks for `fieldValidation`.
fn hoist_common_parameters(route: &mut Route) {
    if route.operations.is_empty()
        || (route.operations.len() == 1 && route.operations[0].method == "patch")
    {
        for op in &mut route.operations {
            sort_parameters(&mut op.parameters);
        }
        return;
    }
    let first = &route.operations[0].parameters;
    let common: Vec<Parameter> = first
        .iter()
        .filter(|p| {
            route.operations.iter().all(|op| {
                op.parameters
                    .iter()
                    .any(|q| q.name == p.name && q.location == p.location)
            })
        })
        .cloned()
        .collect();
    for op in &mut route.operations {
        op.parameters.retain(|q| {
            !common
                .iter()
                .any(|p| p.name == q.name && p.location == q.location)
        });
        sort_parameters(&mut op.parameters);
    }
    route.parameters = common;
    sort_parameters(&mut route.parameters);
}

fn sort_parameters(params: &mut [Parameter]) {
    params.sort_by(|a, b| (a.name, a.location).cmp(&(b.name, b.location)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::parameters::Location;
    use crate::resources::builtin_resources;

    fn routes() -> Vec<Route> {
        let rows: Vec<Arc<Resource>> = builtin_resources().into_iter().map(Arc::new).collect();
        build(&rows)
    }

    fn find<'a>(routes: &'a [Route], path: &str, method: &str) -> (&'a Route, &'a Operation) {
        let route = routes
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no route {path}"));
        let op = route
            .operations
            .iter()
            .find(|o| o.method == method)
            .unwrap_or_else(|| panic!("no {method} on {path}"));
        (route, op)
    }

    #[test]
    fn operation_ids_as_upstream() {
        let routes = routes();
        let cases = [
            (
                "/api/v1/namespaces/{namespace}/pods",
                "get",
                "listCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "post",
                "createCoreV1NamespacedPod",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods",
                "delete",
                "deleteCoreV1CollectionNamespacedPod",
            ),
            ("/api/v1/pods", "get", "listCoreV1PodForAllNamespaces"),
            (
                "/api/v1/watch/pods",
                "get",
                "watchCoreV1PodListForAllNamespaces",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/status",
                "patch",
                "patchCoreV1NamespacedPodStatus",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/exec",
                "post",
                "connectCoreV1PostNamespacedPodExec",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
                "head",
                "connectCoreV1HeadNamespacedPodProxyWithPath",
            ),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "get",
                "readCoreV1NamespacedPodLog",
            ),
            (
                "/api/v1/namespaces/{name}/finalize",
                "put",
                "replaceCoreV1NamespaceFinalize",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "post",
                "createAppsV1NamespacedDeployment",
            ),
            (
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
                "get",
                "readAppsV1NamespacedDeploymentScale",
            ),
            (
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
                "patch",
                "patchRbacAuthorizationV1ClusterRole",
            ),
            (
                "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
                "get",
                "listFlowcontrolApiserverV1FlowSchema",
            ),
            (
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "post",
                "createAuthorizationV1SelfSubjectAccessReview",
            ),
            ("/apis/apps/", "get", "getAppsAPIGroup"),
            ("/apis/apps/v1/", "get", "getAppsV1APIResources"),
        ];
        for (path, method, id) in cases {
            assert_eq!(find(&routes, path, method).1.id, id, "{method} {path}");
        }
    }

    #[test]
    fn writes_take_field_validation() {
        let routes = routes();
        let (route, op) = find(
            &routes,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            "patch",
        );
        assert!(op.parameters.iter().any(|p| p.name == "fieldValidation"));
        assert!(op
            .parameters
            .iter()
            .any(|p| p.name == "force" && p.location == Location::Query));
        assert_eq!(op.consumes, PATCH_TYPES);
        assert_eq!(
            op.gvk,
            Some(("apps".into(), "v1".into(), "Deployment".into()))
        );
        let (_, scale) = find(
            &routes,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            "patch",
        );
        assert_eq!(
            scale.gvk,
            Some(("autoscaling".into(), "v1".into(), "Scale".into()))
        );
        assert!(route.parameters.iter().any(|p| p.name == "namespace"));
    }
}
