//! Writes: create, update (whole object or a subresource), patch, delete.
//!
//! Each write runs the same steps as upstream's generic store: prepare (server-owned fields),
//! default, validate, admit, then a compare-and-swap against the revision that was read.

use ferrokube_common::patch as patches;
use ferrokube_storage::Error as StoreError;
use serde_json::{json, Map, Value};

use super::{not_found, scope, strategy_of, Registry};
use crate::meta;
use crate::resources::Resource;
use crate::status::{success_status, ApiError, ApiResult, FieldError, Subject};
use crate::{fieldvalidation, validation};

/// Options every write carries, and the warnings it collects for the response.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: fieldvalidation::Mode,
    pub warnings: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl WriteOptions {
    pub fn warn(&self, messages: Vec<String>) {
        if !messages.is_empty() {
            self.warnings.lock().unwrap().extend(messages);
        }
    }

    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap())
    }

    /// Strict field validation of an incoming object of the resource's kind.
    fn validate_fields(&self, res: &Resource, obj: &mut Value) -> ApiResult<()> {
        let warnings = fieldvalidation::check(
            obj,
            &res.group,
            &res.version,
            &res.kind,
            self.field_validation,
        )?;
        self.warn(warnings);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
}

/// What a delete did.
pub enum DeleteOutcome {
    /// Gone from storage; the body to answer with.
    Deleted(Value),
    /// Marked for deletion (finalizers or a grace period remain): the object as it is now.
    Pending(Value),
}

/// How many times a write re-reads and retries after losing a race it did not ask to lose.
const CONFLICT_RETRIES: usize = 16;

fn subject<'a>(res: &'a Resource, name: &'a str) -> Subject<'a> {
    Subject {
        group: &res.group,
        resource: &res.plural,
        name,
    }
}

fn modified(res: &Resource, name: &str) -> ApiError {
    ApiError::modified(subject(res, name))
}

/// Generates the random suffix of `generateName` as upstream does (no vowels, no look-alikes).
fn random_suffix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Checks that the body is an object of the kind the endpoint serves, and fills in
/// apiVersion and kind when they are missing.
fn check_type(res: &Resource, obj: &mut Value) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let expected_version = res.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected_version));
        }
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )))
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(res.kind));
        }
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )))
        }
    }
    Ok(())
}

/// Everything outside metadata and status: what a generation counts changes of.
fn spec_of(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Serialises an object for storage: without its resourceVersion, which the store owns.
fn to_stored(obj: &Value) -> Vec<u8> {
    let mut copy = obj.clone();
    meta::remove(&mut copy, "resourceVersion");
    meta::remove(&mut copy, "selfLink");
    serde_json::to_vec(&copy).unwrap_or_default()
}

fn from_stored(kv: &ferrokube_storage::KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!("stored object at {} is undecodable: {e}", kv.key))
    })?;
    meta::set_resource_version(&mut v, kv.mod_revision);
    Ok(v)
}

impl Registry {
    /// POST: creates an object.
    pub async fn create(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        check_type(res, &mut obj)?;
        opts.validate_fields(res, &mut obj)?;
        let strategy = strategy_of(res);
        let namespace = scope(res, namespace);
        {
            let body_ns = meta::namespace(&obj).to_string();
            match namespace {
                Some(ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                Some(ns) => meta::set_str(&mut obj, "namespace", ns),
                None => {
                    meta::remove(&mut obj, "namespace");
                }
            }
        }
        if !meta::resource_version(&obj).is_empty() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if meta::name(&obj).is_empty() {
            if let Some(prefix) = meta::str_field(&obj, "generateName").map(str::to_string) {
                if !prefix.is_empty() {
                    let name = format!("{}{}", truncate_prefix(&prefix), random_suffix());
                    meta::set_str(&mut obj, "name", name);
                }
            }
        }
        // Server-owned metadata.
        for field in [
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            meta::remove(&mut obj, field);
        }
        meta::set_str(&mut obj, "uid", uuid::Uuid::new_v4().to_string());
        meta::set_str(&mut obj, "creationTimestamp", meta::now_rfc3339());
        if strategy.tracks_generation() {
            meta::metadata_mut(&mut obj).insert("generation".into(), json!(1));
        } else {
            meta::remove(&mut obj, "generation");
        }
        if res.has_status() && strategy.resets_status_on_create() {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        strategy.prepare_for_create(&mut obj);
        strategy.defaults(&mut obj);
        crate::admission::mutate_create(self, res, &mut obj).await?;

        let name = meta::name(&obj).to_string();
        let mut errs = validation::validate_metadata(&obj, strategy.name_rule(), res.namespaced);
        errs.extend(strategy.validate(&obj));
        if !errs.is_empty() {
            return Err(ApiError::invalid(&res.group, &res.kind, &name, &errs));
        }
        opts.warn(strategy.warnings(&obj));
        crate::admission::admit_create(self, res, &obj).await?;
        let key = self.key(res, namespace, &name)?;
        let release = self
            .alloc
            .allocate(self, res, &mut obj, None, opts.dry_run)
            .await?;
        if opts.dry_run {
            release.keep();
            return Ok(self.convert_out(res, obj));
        }
        // Kinds served in two versions are stored in one of them.
        let stored = crate::convert::to_storage(obj.clone(), res);
        match self.store.create(&key, to_stored(&stored)).await {
            Ok(rev) => {
                release.keep();
                meta::set_resource_version(&mut obj, rev);
                Ok(obj)
            }
            Err(StoreError::AlreadyExists(_)) => {
                release.undo(self).await;
                Err(ApiError::already_exists(subject(res, &name)))
            }
            Err(e) => {
                release.undo(self).await;
                Err(e.into())
            }
        }
    }

    /// PUT: replaces an object (or, with a subresource, only the part it owns).
    /// Returns the stored object and whether it was created.
    pub async fn update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        check_type(res, &mut obj)?;
        opts.validate_fields(res, &mut obj)?;
        let body_name = meta::name(&obj).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let ns = scope(res, namespace);
        if let Some(ns) = ns {
            let body_ns = meta::namespace(&obj);
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let key = self.key(res, ns, name)?;
        let wanted_rv = meta::resource_version(&obj).to_string();
        for _ in 0..CONFLICT_RETRIES {
            let current = self.store.get(&key).await?;
            let Some(current) = current else {
                if res.create_on_update && subresource.is_none() {
                    meta::remove(&mut obj, "resourceVersion");
                    if meta::name(&obj).is_empty() {
                        meta::set_str(&mut obj, "name", name);
                    }
                    return self
                        .create(res, namespace, obj, opts)
                        .await
                        .map(|o| (o, true));
                }
                return Err(not_found(res, name));
            };
            let old = from_stored(&current)?;
            if !wanted_rv.is_empty() && wanted_rv != current.mod_revision.to_string() {
                return Err(modified(res, name));
            }
            let new = obj.clone();
            match self
                .write_update(
                    res,
                    &key,
                    &old,
                    current.mod_revision,
                    new,
                    subresource,
                    opts,
                )
                .await
            {
                Err(WriteError::Lost) if wanted_rv.is_empty() => continue,
                Err(WriteError::Lost) => return Err(modified(res, name)),
                Err(WriteError::Api(e)) => return Err(e),
                Ok(v) => return Ok((v, false)),
            }
        }
        Err(modified(res, name))
    }

    /// PATCH: applies a patch to the current object and stores the result.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        kind: PatchKind,
        patch: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let ns = scope(res, namespace);
        let key = self.key(res, ns, name)?;
        for _ in 0..CONFLICT_RETRIES {
            let current = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(res, name))?;
            let old = from_stored(&current)?;
            let old_versioned = self.convert_out(res, old.clone());
            let patched = apply_patch(res, &old_versioned, kind, patch)?;
            let patched_rv = meta::resource_version(&patched).to_string();
            let asked_rv = !patched_rv.is_empty() && patched_rv != current.mod_revision.to_string();
            if asked_rv {
                return Err(modified(res, name));
            }
            let mut patched = patched;
            check_type(res, &mut patched)?;
            opts.validate_fields(res, &mut patched)?;
            if meta::name(&patched) != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    meta::name(&patched)
                )));
            }
            match self
                .write_update(
                    res,
                    &key,
                    &old,
                    current.mod_revision,
                    patched,
                    subresource,
                    opts,
                )
                .await
            {
                Err(WriteError::Lost) => continue,
                Err(WriteError::Api(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
        Err(modified(res, name))
    }

    /// The shared part of update and patch: merge with the stored object, validate, CAS.
    #[allow(clippy::too_many_arguments)]
    async fn write_update(
        &self,
        res: &Resource,
        key: &str,
        old: &Value,
        old_revision: i64,
        new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Value, WriteError> {
        let strategy = strategy_of(res);
        let mut new = crate::convert::to_storage(new, res);
        let name = meta::name(old).to_string();

        match subresource {
            Some("status") => {
                // A status write changes status only; everything else stays as stored.
                let status = new.get("status").cloned();
                new = old.clone();
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            Some("finalize") => {
                // Finalize writes a namespace's spec finalizers and nothing else.
                let finalizers = meta::path(&new, "spec.finalizers").cloned();
                new = old.clone();
                match finalizers {
                    Some(f) => new["spec"]["finalizers"] = f,
                    None => {
                        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                            spec.remove("finalizers");
                        }
                    }
                }
            }
            Some("approval") => {
                // Approval writes the conditions of a CSR's status and nothing else.
                let conditions = meta::path(&new, "status.conditions").cloned();
                new = old.clone();
                if !new.get("status").is_some_and(Value::is_object) {
                    new["status"] = json!({});
                }
                match conditions {
                    Some(c) => new["status"]["conditions"] = c,
                    None => {
                        if let Some(s) = new["status"].as_object_mut() {
                            s.remove("conditions");
                        }
                    }
                }
            }
            Some("ephemeralcontainers") => {
                let eph = meta::path(&new, "spec.ephemeralContainers").cloned();
                let before = meta::path(old, "spec.ephemeralContainers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let after = eph
                    .as_ref()
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                // Ephemeral containers can be added, never changed or removed.
                let kept = before.iter().all(|b| after.iter().any(|a| a == b));
                if !kept {
                    return Err(WriteError::Api(ApiError::invalid(
                        &res.group,
                        &res.kind,
                        &name,
                        &[FieldError::forbidden(
                            "spec.ephemeralContainers",
                            "existing ephemeral containers may not be removed or changed",
                        )],
                    )));
                }
                new = old.clone();
                new["spec"]["ephemeralContainers"] = eph.unwrap_or_else(|| json!([]));
            }
            Some("resize") => {
                // Resize writes container resources (and resize policies) only.
                let wanted = new.clone();
                new = old.clone();
                for field in ["containers", "initContainers"] {
                    let Some(list) = new
                        .pointer_mut(&format!("/spec/{field}"))
                        .and_then(Value::as_array_mut)
                    else {
                        continue;
                    };
                    for c in list.iter_mut() {
                        let cname = c.get("name").cloned();
                        let from = wanted
                            .pointer(&format!("/spec/{field}"))
                            .and_then(Value::as_array)
                            .and_then(|l| l.iter().find(|w| w.get("name") == cname.as_ref()));
                        if let Some(from) = from {
                            for f in ["resources", "resizePolicy"] {
                                match from.get(f) {
                                    Some(v) => c[f] = v.clone(),
                                    None => {
                                        if let Some(m) = c.as_object_mut() {
                                            m.remove(f);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Some(_) => {}
            _ => {
                if res.has_status() {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
            }
        }

        // Metadata the server owns stays as stored.
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match meta::metadata(old).and_then(|m| m.get(field)) {
                Some(v) => {
                    meta::metadata_mut(&mut new).insert(field.into(), v.clone());
                }
                None => {
                    meta::remove(&mut new, field);
                }
            }
        }
        meta::remove(&mut new, "selfLink");
        meta::set_resource_version(&mut new, old_revision);

        if meta::deletion_timestamp(old).is_some() {
            let before: std::collections::HashSet<String> =
                meta::finalizers(old).into_iter().collect();
            if meta::finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(WriteError::Api(ApiError::invalid(
                    &res.group,
                    &res.kind,
                    &name,
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                )));
            }
        }

        strategy.prepare_for_update(&mut new, old);
        strategy.defaults(&mut new);
        if strategy.tracks_generation() && spec_of(&new) != spec_of(old) {
            let g = meta::metadata(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta::metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }

        let mut errs = validation::validate_metadata(&new, strategy.name_rule(), res.namespaced);
        errs.extend(validation::validate_metadata_update(&new, old));
        errs.extend(strategy.validate_update(&new, old));
        if !errs.is_empty() {
            return Err(WriteError::Api(ApiError::invalid(
                &res.group, &res.kind, &name, &errs,
            )));
        }
        let release = self
            .alloc
            .allocate(self, res, &mut new, Some(old), opts.dry_run)
            .await
            .map_err(WriteError::Api)?;

        // Nothing changed: no write and no new resourceVersion, as upstream.
        if new == *old {
            release.keep();
            return Ok(self.convert_out(res, new));
        }
        if opts.dry_run {
            release.keep();
            return Ok(self.convert_out(res, new));
        }

        // The last finalizer of an object being deleted is gone: delete it now. A namespace
        // also waits for its spec finalizers (the namespace controller emptying it).
        let spec_finalizers = res.group.is_empty()
            && res.kind == "Namespace"
            && meta::path(&new, "spec.finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if meta::deletion_timestamp(&new).is_some()
            && meta::finalizers(&new).is_empty()
            && !spec_finalizers
        {
            return match self.store.delete(key, Some(old_revision)).await {
                Ok((rev, _)) => {
                    release.keep();
                    self.alloc.release(self, res, &new).await;
                    meta::set_resource_version(&mut new, rev);
                    Ok(self.convert_out(res, new))
                }
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {
                    release.undo(self).await;
                    Err(WriteError::Lost)
                }
                Err(e) => {
                    release.undo(self).await;
                    Err(WriteError::Api(e.into()))
                }
            };
        }

        match self.store.update(key, to_stored(&new), old_revision).await {
            Ok(rev) => {
                release.keep();
                meta::set_resource_version(&mut new, rev);
                Ok(self.convert_out(res, new))
            }
            Err(StoreError::Conflict { .. }) => {
                release.undo(self).await;
                Err(WriteError::Lost)
            }
            Err(StoreError::NotFound(_)) => {
                release.undo(self).await;
                Err(WriteError::Api(not_found(res, &name)))
            }
            Err(e) => {
                release.undo(self).await;
                Err(WriteError::Api(e.into()))
            }
        }
    }

    /// DELETE of one object, with upstream's preconditions, finalizers, propagation policy
    /// and graceful deletion.
    pub async fn delete(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        opts: &WriteOptions,
    ) -> ApiResult<DeleteOutcome> {
        crate::admission::admit_delete(res, name)?;
        let key = self.key(res, scope(res, namespace), name)?;
        let policy = propagation_policy(options)?;
        let is_namespace = res.group.is_empty() && res.kind == "Namespace";
        for _ in 0..CONFLICT_RETRIES {
            let current = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(res, name))?;
            let old = from_stored(&current)?;
            check_preconditions(res, name, &old, options)?;

            let mut finalizers = meta::finalizers(&old);
            let mut changed = false;
            match policy.as_deref() {
                Some("Orphan") => {
                    if !finalizers.iter().any(|f| f == "orphan") {
                        finalizers.push("orphan".into());
                        changed = true;
                    }
                    if let Some(i) = finalizers.iter().position(|f| f == "foregroundDeletion") {
                        finalizers.remove(i);
                    }
                }
                Some("Foreground") => {
                    if !finalizers.iter().any(|f| f == "foregroundDeletion") {
                        finalizers.push("foregroundDeletion".into());
                        changed = true;
                    }
                    if let Some(i) = finalizers.iter().position(|f| f == "orphan") {
                        finalizers.remove(i);
                    }
                }
                Some("Background") => {
                    let before = finalizers.len();
                    finalizers.retain(|f| f != "orphan" && f != "foregroundDeletion");
                    changed |= before != finalizers.len();
                }
                _ => {}
            }
            let grace = crate::graceful::grace_period(res, &old, options);
            // A namespace also waits for its spec finalizers (its content being emptied).
            let spec_finalizers = is_namespace
                && meta::path(&old, "spec.finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            let pending = !finalizers.is_empty() || grace.unwrap_or(0) > 0 || spec_finalizers;

            if pending {
                let mut new = old.clone();
                if is_namespace && new["status"]["phase"] != "Terminating" {
                    new["status"]["phase"] = json!("Terminating");
                    changed = true;
                }
                meta::set_finalizers(&mut new, &finalizers);
                if meta::deletion_timestamp(&old).is_none() {
                    let grace = grace.unwrap_or(0);
                    let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                    meta::set_str(
                        &mut new,
                        "deletionTimestamp",
                        when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    );
                    meta::metadata_mut(&mut new)
                        .insert("deletionGracePeriodSeconds".into(), json!(grace));
                    if let Some(g) = meta::metadata(&old)
                        .and_then(|m| m.get("generation"))
                        .and_then(Value::as_i64)
                    {
                        if g > 0 {
                            meta::metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
                        }
                    }
                    changed = true;
                } else if let Some(g) = grace {
                    // A shorter grace period on a second delete moves the deadline closer.
                    let old_grace = meta::metadata(&old)
                        .and_then(|m| m.get("deletionGracePeriodSeconds"))
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if g < old_grace {
                        let when = chrono::Utc::now() + chrono::Duration::seconds(g);
                        meta::set_str(
                            &mut new,
                            "deletionTimestamp",
                            when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        );
                        meta::metadata_mut(&mut new)
                            .insert("deletionGracePeriodSeconds".into(), json!(g));
                        changed = true;
                    }
                }
                if !changed || opts.dry_run {
                    return Ok(DeleteOutcome::Pending(self.convert_out(res, new)));
                }
                match self
                    .store
                    .update(&key, to_stored(&new), current.mod_revision)
                    .await
                {
                    Ok(rev) => {
                        meta::set_resource_version(&mut new, rev);
                        return Ok(DeleteOutcome::Pending(self.convert_out(res, new)));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            match self
                .delete_now(res, &key, name, current.mod_revision, old, opts)
                .await?
            {
                Some(outcome) => return Ok(outcome),
                None => continue,
            }
        }
        Err(modified(res, name))
    }

    /// Removes an object from storage; None when it changed under us.
    async fn delete_now(
        &self,
        res: &Resource,
        key: &str,
        name: &str,
        revision: i64,
        old: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Option<DeleteOutcome>> {
        let answer = |obj: Value| {
            if res.return_deleted_object {
                self.convert_out(res, obj)
            } else {
                let mut details =
                    json!({ "name": name, "kind": res.plural, "uid": meta::uid(&obj) });
                if !res.group.is_empty() {
                    details["group"] = json!(res.group);
                }
                success_status(details)
            }
        };
        if opts.dry_run {
            return Ok(Some(DeleteOutcome::Deleted(answer(old))));
        }
        match self.store.delete(key, Some(revision)).await {
            Ok((rev, _)) => {
                self.alloc.release(self, res, &old).await;
                let mut obj = old;
                meta::set_resource_version(&mut obj, rev);
                Ok(Some(DeleteOutcome::Deleted(answer(obj))))
            }
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(StoreError::NotFound(_)) => Err(not_found(res, name)),
            Err(e) => Err(e.into()),
        }
    }
}

impl Registry {
    /// Binds a pod: a write of spec.nodeName and status together, at the revision read.
    pub async fn bind_pod(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        old: &Value,
        mut new: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let key = self.key(res, scope(res, namespace), name)?;
        let rev: i64 = meta::resource_version(old).parse().unwrap_or(0);
        if opts.dry_run {
            return Ok(new);
        }
        match self.store.update(&key, to_stored(&new), rev).await {
            Ok(r) => {
                meta::set_resource_version(&mut new, r);
                Ok(new)
            }
            Err(StoreError::Conflict { .. }) => Err(modified(res, name)),
            Err(StoreError::NotFound(_)) => Err(not_found(res, name)),
            Err(e) => Err(e.into()),
        }
    }
}

enum WriteError {
    /// Another writer got there first; read again and retry.
    Lost,
    Api(ApiError),
}

/// `generateName` prefixes are cut so that the generated name fits in 63 characters.
fn truncate_prefix(prefix: &str) -> &str {
    const MAX: usize = 63 - 5;
    if prefix.len() <= MAX {
        prefix
    } else {
        let mut end = MAX;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        &prefix[..end]
    }
}

fn propagation_policy(options: &Value) -> ApiResult<Option<String>> {
    let policy = options.get("propagationPolicy").and_then(Value::as_str);
    let orphan = options.get("orphanDependents").and_then(Value::as_bool);
    if policy.is_some() && orphan.is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[FieldError::invalid(
                "propagationPolicy",
                policy.unwrap_or(""),
                "orphanDependents and deletionPropagation cannot be both set",
            )],
        ));
    }
    match policy {
        Some(p @ ("Orphan" | "Foreground" | "Background")) => Ok(Some(p.to_string())),
        Some(other) => Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[FieldError::not_supported(
                "propagationPolicy",
                other,
                &["Foreground", "Background", "Orphan", "nil"],
            )],
        )),
        None => Ok(match orphan {
            Some(true) => Some("Orphan".into()),
            Some(false) => Some("Background".into()),
            None => None,
        }),
    }
}

fn check_preconditions(res: &Resource, name: &str, obj: &Value, options: &Value) -> ApiResult<()> {
    let Some(pre) = options.get("preconditions") else {
        return Ok(());
    };
    if let Some(uid) = pre.get("uid").and_then(Value::as_str) {
        if uid != meta::uid(obj) {
            return Err(ApiError::conflict(
                subject(res, name),
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(obj)
                ),
            ));
        }
    }
    if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str) {
        if rv != meta::resource_version(obj) {
            return Err(ApiError::conflict(
                subject(res, name),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(obj)
                ),
            ));
        }
    }
    Ok(())
}

/// Applies a client patch to the current object.
fn apply_patch(
    res: &Resource,
    current: &Value,
    kind: PatchKind,
    patch: &Value,
) -> ApiResult<Value> {
    let failed = |e: patches::PatchError| {
        let code = e.status_code();
        let reason = match code {
            400 => "BadRequest",
            422 => "Invalid",
            _ => "InternalError",
        };
        ApiError::new(code, reason, e.message().to_string())
    };
    match kind {
        PatchKind::Json => {
            if patch
                .as_array()
                .is_some_and(|ops| ops.len() > patches::MAX_JSON_PATCH_OPERATIONS)
            {
                return Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!(
                        "The allowed maximum operations in a JSON patch is {}, got {}",
                        patches::MAX_JSON_PATCH_OPERATIONS,
                        patch.as_array().map_or(0, Vec::len)
                    ),
                ));
            }
            let mut target = current.clone();
            patches::json_patch(&mut target, patch).map_err(failed)?;
            Ok(target)
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object for a merge patch",
                ));
            }
            let mut target = current.clone();
            patches::merge_patch(&mut target, patch).map_err(failed)?;
            Ok(target)
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "the request body must be a JSON object for a strategic merge patch",
                ));
            }
            patches::strategic_merge_patch(current, patch, &res.definition).map_err(failed)
        }
    }
}
