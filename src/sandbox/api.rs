//! The in-process API: create, get, list, update, patch, delete with the apiserver's semantics
//! (resourceVersion preconditions, generation, status and scale subresources, generateName,
//! finalizers and deletionTimestamp, CRD schemas and CEL, managedFields, dry-run).
//!
//! The HTTP layer and the simulated controllers both go through this, so they see the same rules.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::apply;
use super::errors::{ApiError, Cause};
use super::faults::Faults;
use super::meta::{self, ensure_meta};
use super::patch::{self, PatchType};
use super::registry::{Registry, ResourceInfo, split_api_version};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Outcome, Store, Written, rv_of};

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
    Scale,
}

impl Sub {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Sub::Main => None,
            Sub::Status => Some("status"),
            Sub::Scale => Some("scale"),
        }
    }
}

/// `fieldValidation`: what to do with unknown fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    #[default]
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Strict" => Ok(Self::Strict),
            "Warn" | "" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, valid values are: Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
}

/// The result of a write: the object and any warnings to send back.
#[derive(Clone, Debug)]
pub struct WriteResult {
    pub object: Arc<Value>,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// `propagationPolicy` of a delete.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// Options of a delete (a `DeleteOptions` body plus query parameters).
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// `gracePeriodSeconds`: for pods, how long the kubelet waits before killing (0: at once).
    pub grace_period: Option<i64>,
}

impl DeleteOptions {
    pub fn from_body(body: &Value) -> Result<Self, ApiError> {
        let mut o = DeleteOptions::default();
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(parse_propagation(p)?);
        } else if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            o.propagation = Some(Propagation::Orphan);
        }
        o.precondition_uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.precondition_rv = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        o.dry_run = body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
        o.grace_period = body.get("gracePeriodSeconds").and_then(Value::as_i64);
        Ok(o)
    }
}

pub fn parse_propagation(p: &str) -> Result<Propagation, ApiError> {
    match p {
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        "Orphan" => Ok(Propagation::Orphan),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// What a delete did.
#[derive(Clone, Debug)]
pub enum Deleted {
    /// The object is gone (this is its last state).
    Gone(Arc<Value>),
    /// The object has finalizers: it now carries a deletionTimestamp.
    Pending(Arc<Value>),
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Knobs of a simulated cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The longest a watch stays open (the apiserver's own cap).
    pub max_watch: Duration,
    /// The reported server version (minor 32 makes the GKE dispatcher run its built-in kubectl).
    pub git_version: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bookmark_interval: Duration::from_secs(5),
            max_watch: Duration::from_secs(1800),
            git_version: "v1.32.0".into(),
        }
    }
}

/// One simulated cluster's API state, shared by the HTTP server, the tests and the controllers.
pub struct Cluster {
    pub name: String,
    pub registry: Registry,
    pub store: Store,
    pub faults: Faults,
    pub settings: RwLock<Settings>,
    /// Woken after deletions so the garbage collector runs.
    pub gc_wakeup: Notify,
    /// Container logs served by `pods/log`, keyed by (namespace, pod, container).
    pub logs: RwLock<HashMap<(String, String, String), String>>,
    /// Log files of containers the sandbox's kubelet runs as processes, same keys as `logs`.
    pub log_files: RwLock<HashMap<(String, String, String), std::path::PathBuf>>,
    /// A kubelet runs: deleting a scheduled pod is graceful (deletionTimestamp first, then the
    /// kubelet removes it once its containers stopped), as on a real cluster.
    pub kubelet: std::sync::atomic::AtomicBool,
    next_ip: std::sync::atomic::AtomicU32,
    next_node_port: std::sync::atomic::AtomicU32,
    /// HTTP requests served, per verb (the in-process API is not counted).
    pub requests: super::requests::Requests,
}

impl Cluster {
    pub fn new(name: &str) -> Self {
        Cluster {
            name: name.to_string(),
            registry: Registry::new(),
            store: Store::new(super::store::DEFAULT_HISTORY),
            faults: Faults::default(),
            settings: RwLock::new(Settings::default()),
            gc_wakeup: Notify::new(),
            logs: RwLock::new(HashMap::new()),
            log_files: RwLock::new(HashMap::new()),
            kubelet: std::sync::atomic::AtomicBool::new(false),
            next_ip: std::sync::atomic::AtomicU32::new(1),
            next_node_port: std::sync::atomic::AtomicU32::new(0),
            requests: Default::default(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The resource serving `kind` of `apiVersion`, or a 404 Status.
    pub fn resource_for(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Arc<ResourceInfo>, ApiError> {
        self.registry.by_kind(api_version, kind).ok_or_else(|| {
            ApiError::new(404, "NotFound", format!("the server could not find the requested resource (kind {kind} in {api_version})"))
        })
    }

    /// The resource `plural` in `group` at its preferred version.
    pub fn resource(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let version = self
            .registry
            .groups()
            .into_iter()
            .find(|(g, _)| g == group)
            .and_then(|(_, v)| v.into_iter().next())?;
        self.registry.lookup(group, &version, plural)
    }

    fn ns_key<'a>(res: &ResourceInfo, ns: &'a str) -> &'a str {
        if res.namespaced { ns } else { "" }
    }

    // ---------------------------------------------------------------- reads

    pub fn get(&self, res: &ResourceInfo, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(&res.qualified(), Self::ns_key(res, ns), name)
            .map(|o| with_api_version(o, res))
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub fn list(
        &self,
        res: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let labels = match &opts.label_selector {
            Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
            _ => None,
        };
        let fields = match &opts.field_selector {
            Some(s) if !s.is_empty() => Some(FieldSelector::parse(s, res)?),
            _ => None,
        };
        let ns = if res.namespaced {
            ns.filter(|n| !n.is_empty())
        } else {
            None
        };
        let (items, rv) = self.store.list(&res.qualified(), ns);
        let mut start_after: Option<(String, String)> = None;
        let mut list_rv = rv;
        if let Some(tok) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let (trv, key) = decode_continue(tok)?;
            if trv < self.store.compacted_rv() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            start_after = Some(key);
            list_rv = trv;
        }
        let mut matched = items.into_iter().filter(|o| {
            if let Some((sns, sname)) = &start_after {
                let k = (meta::namespace(o).to_string(), meta::name(o).to_string());
                if k <= (sns.clone(), sname.clone()) {
                    return false;
                }
            }
            labels.as_ref().is_none_or(|l| l.matches(o))
                && fields.as_ref().is_none_or(|f| f.matches(o))
        });
        let mut page: Vec<Arc<Value>> = Vec::new();
        let limit = opts.limit.filter(|l| *l > 0);
        let mut continue_token = None;
        let mut remaining = None;
        for o in matched.by_ref() {
            if limit.is_some_and(|l| page.len() >= l) {
                let rest = 1 + matched.count();
                if let Some(last) = page.last() {
                    continue_token = Some(encode_continue(list_rv, last.as_ref()));
                }
                remaining = Some(rest);
                break;
            }
            page.push(with_api_version(o, res));
        }
        Ok(ListResult {
            items: page,
            resource_version: list_rv,
            continue_token,
            remaining,
        })
    }

    // ---------------------------------------------------------------- writes

    /// The resource an object's apiVersion and kind name.
    fn resource_of(&self, obj: &Value) -> Result<Arc<ResourceInfo>, ApiError> {
        let field = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        self.resource_for(field("apiVersion"), field("kind"))
    }

    /// Create an object from its JSON (its apiVersion/kind decide the resource).
    pub fn create_object(&self, obj: Value, opts: &WriteOptions) -> Result<WriteResult, ApiError> {
        let res = self.resource_of(&obj)?;
        let ns = meta::namespace(&obj).to_string();
        let ns = if res.namespaced && ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        self.create(&res, &ns, obj, opts)
    }

    /// Seed an object as is (status included), creating or replacing it, without validation.
    /// For test fixtures and simulated controllers that need to write what a kubelet would.
    pub fn seed_object(&self, mut obj: Value) -> Result<Arc<Value>, ApiError> {
        let res = self.resource_of(&obj)?;
        let m = ensure_meta(&mut obj);
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::bad_request("metadata.name is required"));
        }
        let ns = if res.namespaced {
            m.get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        if res.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        let written = self.store.transact(
            &res.qualified(),
            &ns,
            &name,
            false,
            |old| -> Result<Outcome, ApiError> {
                let m = ensure_meta(&mut obj);
                match old {
                    Some(o) => {
                        for k in ["uid", "creationTimestamp", "generation"] {
                            if let Some(v) = o.pointer(&format!("/metadata/{k}")) {
                                m.entry(k).or_insert(v.clone());
                            }
                        }
                    }
                    None => {
                        m.entry("uid").or_insert_with(|| json!(meta::new_uid()));
                        m.entry("creationTimestamp")
                            .or_insert_with(|| json!(meta::now()));
                        m.entry("generation").or_insert(json!(1));
                    }
                }
                Ok(Outcome::Put(obj))
            },
        )?;
        if res.group == "apiextensions.k8s.io"
            && res.plural == "customresourcedefinitions"
            && let Some(o) = written.object()
        {
            self.registry
                .register_crd(o)
                .map_err(ApiError::bad_request)?;
        }
        written
            .object()
            .cloned()
            .ok_or_else(|| ApiError::internal("seed wrote nothing"))
    }

    pub fn create(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type_meta(&mut obj, res)?;
        let ns = Self::ns_key(res, ns).to_string();
        {
            let m = ensure_meta(&mut obj);
            if res.namespaced {
                match m.get("namespace").and_then(Value::as_str) {
                    Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        m.insert("namespace".into(), json!(ns));
                    }
                }
            } else {
                m.remove("namespace");
            }
            if m.get("resourceVersion")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::bad_request(
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if name.is_empty() {
                let prefix = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if prefix.is_empty() {
                    return Err(ApiError::invalid(
                        res,
                        "",
                        vec![Cause::new(
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )],
                    ));
                }
                m.insert(
                    "name".into(),
                    json!(format!("{prefix}{}", meta::random_suffix())),
                );
            }
        }
        let name = meta::name(&obj).to_string();
        if res.namespaced {
            self.check_namespace_writable(res, &ns, &name)?;
        }
        if res.group.is_empty() && res.plural == "pods" {
            let namespace = self.store.get("namespaces", "", &ns);
            super::pod_security::admit(namespace.as_deref(), &obj)?;
        }
        let mut warnings = Vec::new();
        let manager = opts.field_manager.clone();
        let written = self.store.transact(
            &res.qualified(),
            &ns,
            &name,
            opts.dry_run,
            |old| -> Result<Outcome, ApiError> {
                if old.is_some() {
                    return Err(ApiError::already_exists(res, &name));
                }
                let mut obj = obj;
                prepare_create(res, &mut obj, self)?;
                validate(res, &mut obj, None, opts.field_validation, &mut warnings)?;
                if let Some(manager) = &manager {
                    apply::record_update(&mut obj, None, manager, res, None);
                }
                Ok(Outcome::Put(obj))
            },
        )?;
        self.after_write(res, &written);
        match written {
            Written::Created(o) => Ok(WriteResult {
                object: o,
                created: true,
                warnings,
            }),
            other => Err(ApiError::internal(format!(
                "unexpected store outcome on create: {other:?}"
            ))),
        }
    }

    fn check_namespace_writable(
        &self,
        res: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource: a namespace is required",
            ));
        }
        match self.store.get("namespaces", "", ns) {
            None => Err(ApiError::namespace_not_found(ns)),
            Some(n) if meta::is_deleting(&n) => Err(ApiError::terminating_namespace(res, name, ns)),
            Some(_) => Ok(()),
        }
    }

    /// PUT: replace the object (or its status, or its scale).
    pub fn update(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        name: &str,
        mut obj: Value,
        sub: Sub,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if sub == Sub::Scale {
            return self.write_scale(res, ns, name, opts, |_| Ok(obj));
        }
        check_type_meta(&mut obj, res)?;
        let body_name = meta::name(&obj).to_string();
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_rv = meta::str_field(&obj, "resourceVersion").to_string();
        if body_rv.is_empty() && res.is_custom() && sub == Sub::Main {
            // Custom resources have no unconditional update (built-ins allow it).
            if self
                .store
                .get(&res.qualified(), Self::ns_key(res, ns), name)
                .is_some()
            {
                return Err(ApiError::invalid(
                    res,
                    name,
                    vec![Cause::new(
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )],
                ));
            }
        }
        self.write_existing(res, ns, name, sub, opts, true, move |_old| Ok(obj))
    }

    /// PATCH with any of the patch types.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        name: &str,
        ptype: PatchType,
        body: &[u8],
        sub: Sub,
        opts: &WriteOptions,
    ) -> Result<WriteResult, ApiError> {
        if ptype == PatchType::Strategic && res.is_custom() {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        if ptype == PatchType::Apply {
            return apply::server_side_apply(self, res, ns, name, body, sub, opts);
        }
        let patch_doc: Value = match ptype {
            PatchType::Json => serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
            _ => parse_body(body)?,
        };
        if sub == Sub::Scale {
            return self.write_scale(res, ns, name, opts, |scale| {
                patch::apply_patch(ptype, scale, &patch_doc)
            });
        }
        self.write_existing(res, ns, name, sub, opts, false, move |old| {
            patch::apply_patch(ptype, old, &patch_doc)
        })
    }

    /// The shared update pipeline: compute the new object from the stored one, then apply the rules.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_existing(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        name: &str,
        sub: Sub,
        opts: &WriteOptions,
        is_put: bool,
        compute: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<WriteResult, ApiError> {
        let ns = Self::ns_key(res, ns).to_string();
        let mut warnings = Vec::new();
        let manager = opts.field_manager.clone();
        let written = self.store.transact(
            &res.qualified(),
            &ns,
            name,
            opts.dry_run,
            |old| -> Result<Outcome, ApiError> {
                let Some(old) = old else {
                    return Err(ApiError::not_found(res, name));
                };
                let old_v = with_api_version(old.clone(), res);
                let mut new = compute(&old_v)?;
                if !new.is_object() {
                    return Err(ApiError::bad_request(
                        "the patched object is not a JSON object",
                    ));
                }
                check_type_meta(&mut new, res)?;
                let new_rv = meta::str_field(&new, "resourceVersion").to_string();
                if !new_rv.is_empty() && new_rv != rv_of(old) {
                    return Err(ApiError::conflict(res, name));
                }
                let new_name = meta::name(&new).to_string();
                if !new_name.is_empty() && new_name != name {
                    return Err(ApiError::bad_request(format!(
                        "metadata.name: Invalid value: \"{new_name}\": field is immutable"
                    )));
                }
                let _ = is_put;
                let mut new = prepare_update(res, old, new, sub)?;
                if let Some(manager) = &manager {
                    apply::record_update(&mut new, Some(old), manager, res, sub.name());
                }
                validate(
                    res,
                    &mut new,
                    Some(old),
                    opts.field_validation,
                    &mut warnings,
                )?;
                if unchanged(old, &new) {
                    return Ok(Outcome::Keep);
                }
                if meta::is_deleting(&new) && deletion_complete(res, &new) {
                    return Ok(Outcome::Delete);
                }
                Ok(Outcome::Put(new))
            },
        )?;
        self.after_write(res, &written);
        match written {
            Written::Updated(o) | Written::Unchanged(o) | Written::Deleted(o) => {
                let o = with_api_version(o, res);
                Ok(WriteResult {
                    object: o,
                    created: false,
                    warnings,
                })
            }
            Written::Created(o) => Ok(WriteResult {
                object: o,
                created: true,
                warnings,
            }),
            Written::Nothing => Err(ApiError::not_found(res, name)),
        }
    }

    /// GET on `/scale`: the object seen as an `autoscaling/v1` Scale.
    pub fn get_scale(&self, res: &ResourceInfo, ns: &str, name: &str) -> Result<Value, ApiError> {
        let obj = self.get(res, ns, name)?;
        to_scale(res, &obj)
    }

    fn write_scale(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        name: &str,
        opts: &WriteOptions,
        compute: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<WriteResult, ApiError> {
        let Some(spec) = res.scale.clone() else {
            return Err(ApiError::no_route());
        };
        let result = self.write_existing(res, ns, name, Sub::Main, opts, false, |old| {
            let scale = to_scale(res, old)?;
            let new_scale = compute(&scale)?;
            let rv = new_scale.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
            if !rv.is_empty() && rv != rv_of(old) {
                return Err(ApiError::conflict(res, name));
            }
            let replicas = new_scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::new(422, "Invalid", format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")));
            }
            let mut new = old.clone();
            set_path(&mut new, &spec.spec_replicas_path, json!(replicas));
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(new)
        })?;
        let scale = to_scale(res, &result.object)?;
        Ok(WriteResult {
            object: Arc::new(scale),
            created: false,
            warnings: result.warnings,
        })
    }

    /// DELETE one object.
    pub fn delete(
        &self,
        res: &Arc<ResourceInfo>,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let ns = Self::ns_key(res, ns).to_string();
        let written = self.store.transact(&res.qualified(), &ns, name, opts.dry_run, |old| -> Result<Outcome, ApiError> {
            let Some(old) = old else { return Err(ApiError::not_found(res, name)) };
            if let Some(uid) = &opts.precondition_uid
                && uid != meta::uid(old) {
                    return Err(ApiError::precondition_failed(
                        res,
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::uid(old)),
                    ));
                }
            if let Some(rv) = &opts.precondition_rv
                && *rv != rv_of(old) {
                    return Err(ApiError::precondition_failed(
                        res,
                        name,
                        &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", rv_of(old)),
                    ));
                }
            if meta::is_deleting(old) {
                // A shorter grace period takes over (the kubelet's final delete uses 0).
                let is_pod = res.group.is_empty() && res.plural == "pods";
                if is_pod && opts.grace_period == Some(0) && meta::finalizers(old).is_empty() {
                    return Ok(Outcome::Delete);
                }
                return Ok(Outcome::Keep);
            }
            let mut new = (**old).clone();
            let mut finalizers = meta::finalizers(&new);
            match opts.propagation {
                Some(Propagation::Orphan) => push_unique(&mut finalizers, "orphan"),
                Some(Propagation::Foreground) => push_unique(&mut finalizers, "foregroundDeletion"),
                _ => {}
            }
            let is_namespace = res.group.is_empty() && res.plural == "namespaces";
            let is_crd = res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions";
            if is_crd {
                push_unique(&mut finalizers, "customresourcecleanup.apiextensions.k8s.io");
            }
            let grace = self.pod_grace_period(res, old, opts);
            if finalizers.is_empty() && !is_namespace && grace == 0 {
                return Ok(Outcome::Delete);
            }
            let m = ensure_meta(&mut new);
            m.insert("deletionTimestamp".into(), json!(meta::timestamp_in(grace)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), json!(finalizers));
            }
            if is_namespace {
                new["status"]["phase"] = json!("Terminating");
            }
            if is_crd {
                set_condition(&mut new, "Terminating", "True", "InstanceDeletionInProgress", "CustomResource deletion is in progress");
            }
            Ok(Outcome::Put(new))
        })?;
        self.after_write(res, &written);
        match written {
            Written::Deleted(o) => Ok(Deleted::Gone(with_api_version(o, res))),
            Written::Updated(o) | Written::Unchanged(o) | Written::Created(o) => {
                Ok(Deleted::Pending(with_api_version(o, res)))
            }
            Written::Nothing => Err(ApiError::not_found(res, name)),
        }
    }

    /// The grace period of a delete: non-zero only for a pod a running kubelet must stop first
    /// (scheduled, not finished), as the apiserver does; 0 deletes at once.
    fn pod_grace_period(&self, res: &ResourceInfo, pod: &Value, opts: &DeleteOptions) -> i64 {
        let is_pod = res.group.is_empty() && res.plural == "pods";
        if !is_pod || !self.kubelet.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        let scheduled = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !scheduled || finished {
            return 0;
        }
        opts.grace_period
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0)
    }

    /// DELETE on a collection: delete every matching object; returns the list of what was deleted.
    pub fn delete_collection(
        &self,
        res: &Arc<ResourceInfo>,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        let items = self
            .list(
                res,
                ns,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                    ..list.clone()
                },
            )?
            .items;
        let mut out = Vec::new();
        for o in items {
            match self.delete(res, meta::namespace(&o), meta::name(&o), opts) {
                Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => out.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Side effects after a write: CRD (un)registration, waking the garbage collector.
    fn after_write(&self, res: &ResourceInfo, written: &Written) {
        let is_crd =
            res.group == "apiextensions.k8s.io" && res.plural == "customresourcedefinitions";
        match written {
            Written::Created(o) | Written::Updated(o) => {
                // One Event, two APIs: the apiserver serves events.k8s.io/v1 Events as core/v1
                // Events too (that is where `kubectl describe` looks). Mirrored on each write.
                if res.group == "events.k8s.io"
                    && let Err(e) = self.seed_object(core_event(o))
                {
                    tracing::warn!(event = meta::name(o), error = %e, "cannot mirror an events.k8s.io Event as a core Event");
                }
                if is_crd
                    && !meta::is_deleting(o)
                    && let Err(e) = self.registry.register_crd(o)
                {
                    tracing::warn!(crd = meta::name(o), error = %e, "CRD stored but not served");
                }
                if meta::is_deleting(o) {
                    self.gc_wakeup.notify_one();
                }
            }
            Written::Deleted(o) => {
                if is_crd {
                    self.registry.unregister_crd(meta::name(o));
                }
                self.gc_wakeup.notify_one();
            }
            _ => {}
        }
    }

    /// Allocate a NodePort (30000-32767, the default service-node-port-range), in order.
    fn next_node_port(&self) -> u32 {
        let n = self
            .next_node_port
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        30000 + n % 2768
    }

    /// Allocate a ClusterIP for a Service.
    fn next_cluster_ip(&self) -> String {
        let n = self
            .next_ip
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 2)
    }
}

/// The core/v1 view of an events.k8s.io/v1 Event (field mapping of the upstream conversion).
fn core_event(e: &Value) -> Value {
    let mut meta = e["metadata"].clone();
    if let Some(m) = meta.as_object_mut() {
        for k in ["uid", "resourceVersion", "managedFields", "generation"] {
            m.remove(k);
        }
    }
    let event_time = e["eventTime"].clone();
    let first = if e["deprecatedFirstTimestamp"].is_null() {
        event_time.clone()
    } else {
        e["deprecatedFirstTimestamp"].clone()
    };
    let last = [
        &e["series"]["lastObservedTime"],
        &e["deprecatedLastTimestamp"],
        &event_time,
    ]
    .into_iter()
    .find(|v| !v.is_null())
    .cloned()
    .unwrap_or(Value::Null);
    let count = e["series"]["count"]
        .as_i64()
        .or_else(|| e["deprecatedCount"].as_i64())
        .unwrap_or(1);
    let component = e["reportingController"].clone();
    let mut out = json!({
        "apiVersion": "v1", "kind": "Event", "metadata": meta,
        "involvedObject": e["regarding"], "related": e["related"],
        "reason": e["reason"], "message": e["note"], "type": e["type"], "action": e["action"],
        "reportingComponent": component, "reportingInstance": e["reportingInstance"],
        "source": {"component": component, "host": e["deprecatedSource"]["host"]},
        "firstTimestamp": first, "lastTimestamp": last, "count": count, "eventTime": event_time,
        "series": e["series"],
    });
    if let Some(m) = out.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    out
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// The object as served at `res.version` (multi-version CRDs share one storage; no conversion).
pub fn with_api_version(o: Arc<Value>, res: &ResourceInfo) -> Arc<Value> {
    let want = res.api_version();
    if o.get("apiVersion").and_then(Value::as_str) == Some(want.as_str())
        && o.get("kind").and_then(Value::as_str) == Some(res.kind.as_str())
    {
        return o;
    }
    let mut v = (*o).clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(want));
        m.insert("kind".into(), json!(res.kind));
    }
    Arc::new(v)
}

/// Parse a JSON (or YAML) request body.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request(format!("error decoding body: {json_err}")))?;
            serde_yaml::from_str::<Value>(text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
        }
    }
}

fn check_type_meta(obj: &mut Value, res: &ResourceInfo) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let want_av = res.api_version();
    match m.get("apiVersion").and_then(Value::as_str) {
        Some(av) if !av.is_empty() => {
            let (g, _) = split_api_version(av);
            if g != res.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != res.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
        _ => {}
    }
    m.insert("apiVersion".into(), json!(want_av));
    m.insert("kind".into(), json!(res.kind));
    Ok(())
}

/// Metadata and built-in defaults of a new object.
fn prepare_create(res: &ResourceInfo, obj: &mut Value, cluster: &Cluster) -> Result<(), ApiError> {
    let m = ensure_meta(obj);
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(meta::now()));
    m.insert("generation".into(), json!(1));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("selfLink");
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name_ok = match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") | ("", "services") => meta::is_dns_label(&name),
        ("rbac.authorization.k8s.io", _) => {
            !name.is_empty() && !name.contains('/') && !name.contains('%')
        }
        _ => meta::is_dns_subdomain(&name),
    };
    if !name_ok {
        let rule = if matches!(res.plural.as_str(), "namespaces" | "services")
            && res.group.is_empty()
        {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        };
        return Err(ApiError::invalid(
            res,
            &name,
            vec![Cause::new(
                "FieldValueInvalid",
                "metadata.name",
                format!("Invalid value: {name:?}: {rule}"),
            )],
        ));
    }
    // Kinds whose status is owned by controllers start without one.
    if res.status
        && (res.is_custom()
            || !matches!(
                res.plural.as_str(),
                "nodes"
                    | "namespaces"
                    | "pods"
                    | "customresourcedefinitions"
                    | "persistentvolumeclaims"
                    | "persistentvolumes"
            ))
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    builtin_defaults(res, obj, cluster, true);
    Ok(())
}

/// Built-in defaulting the sandbox's clients rely on.
fn builtin_defaults(res: &ResourceInfo, obj: &mut Value, cluster: &Cluster, creating: bool) {
    if res.is_custom() {
        return;
    }
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "namespaces") => {
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            let name = meta::name(obj).to_string();
            let labels = ensure_meta(obj)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        ("", "services") => {
            if obj.pointer("/spec/type").is_none() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if creating && obj.pointer("/spec/clusterIP").is_none() {
                let ip = cluster.next_cluster_ip();
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            if obj.pointer("/spec/sessionAffinity").is_none() {
                obj["spec"]["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none()
                        && let Some(port) = p.get("port").cloned()
                    {
                        p["targetPort"] = port;
                    }
                }
            }
            let exposed = matches!(
                obj.pointer("/spec/type").and_then(Value::as_str),
                Some("NodePort" | "LoadBalancer")
            );
            if creating
                && exposed
                && let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut)
            {
                for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
                    p["nodePort"] = json!(cluster.next_node_port());
                }
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        ("", "pods") => {
            if creating {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
            if obj.pointer("/spec/restartPolicy").is_none() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
            if obj.pointer("/spec/serviceAccountName").is_none() {
                obj["spec"]["serviceAccountName"] = json!("default");
            }
            if obj.pointer("/spec/schedulerName").is_none() {
                obj["spec"]["schedulerName"] = json!("default-scheduler");
            }
        }
        ("", "secrets") => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
                && let Some(sd) = sd.as_object()
            {
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    obj["data"][k] = json!(enc);
                }
            }
        }
        ("", "persistentvolumeclaims") => {
            if creating {
                obj["status"] = json!({"phase": "Pending"});
            }
            if obj.pointer("/spec/volumeMode").is_none() {
                obj["spec"]["volumeMode"] = json!("Filesystem");
            }
        }
        ("", "persistentvolumes") if creating && obj.pointer("/status/phase").is_none() => {
            obj["status"] = json!({"phase": "Available"});
        }
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
            }
        }
        ("apps", "replicasets") | ("apps", "statefulsets")
            if obj.pointer("/spec/replicas").is_none() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
            let mut accepted = names.clone();
            if accepted.get("singular").is_none()
                && let Some(k) = names.get("kind").and_then(Value::as_str)
            {
                accepted["singular"] = json!(k.to_lowercase());
            }
            if accepted.get("listKind").is_none()
                && let Some(k) = names.get("kind").and_then(Value::as_str)
            {
                accepted["listKind"] = json!(format!("{k}List"));
            }
            obj["spec"]["names"] = accepted.clone();
            let stored: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({});
            }
            obj["status"]["acceptedNames"] = accepted;
            let mut all_stored: Vec<Value> = obj
                .pointer("/status/storedVersions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for s in stored {
                if !all_stored.contains(&s) {
                    all_stored.push(s);
                }
            }
            obj["status"]["storedVersions"] = json!(all_stored);
            set_condition(
                obj,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                obj,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
            if obj.pointer("/spec/conversion").is_none() {
                obj["spec"]["conversion"] = json!({"strategy": "None"});
            }
        }
        _ => {}
    }
}

/// Set (or refresh) a condition in `status.conditions`, keeping lastTransitionTime when unchanged.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    if !obj["status"].get("conditions").is_some_and(Value::is_array) {
        obj["status"]["conditions"] = json!([]);
    }
    let now = meta::now();
    if let Some(conds) = obj["status"]["conditions"].as_array_mut() {
        match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(ty)) {
            Some(c) => {
                if c.get("status").and_then(Value::as_str) != Some(status) {
                    c["lastTransitionTime"] = json!(now);
                }
                c["status"] = json!(status);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
            None => conds.push(json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})),
        }
    }
}

/// Carry over what an update may not change, and apply the status/generation rules.
fn prepare_update(
    res: &ResourceInfo,
    old: &Value,
    mut new: Value,
    sub: Sub,
) -> Result<Value, ApiError> {
    if sub == Sub::Status {
        // /status changes only .status (and managedFields, set later).
        let mut out = old.clone();
        match new.get("status") {
            Some(s) => out["status"] = s.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if let Some(mf) = new.pointer("/metadata/managedFields") {
            ensure_meta(&mut out).insert("managedFields".into(), mf.clone());
        }
        if let Some(o) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            o.remove("resourceVersion");
        }
        return Ok(out);
    }
    let old_meta = meta::meta(old).cloned().unwrap_or_default();
    {
        let m = ensure_meta(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("resourceVersion");
        if meta::is_deleting(old) {
            let old_f = meta::finalizers(old);
            if let Some(nf) = m.get("finalizers").and_then(Value::as_array) {
                let added: Vec<&str> = nf
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|f| !old_f.iter().any(|o| o == f))
                    .collect();
                if !added.is_empty() {
                    return Err(ApiError::invalid(
                        res,
                        meta::name(old),
                        vec![Cause::new(
                            "FieldValueForbidden",
                            "metadata.finalizers",
                            format!(
                                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                            ),
                        )],
                    ));
                }
            }
        }
    }
    if res.status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if content_changed(old, &new, res.status) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        ensure_meta(&mut new).insert("generation".into(), json!(g));
    }
    Ok(new)
}

/// Whether anything outside `metadata` (and `status`, when it is a subresource) changed.
fn content_changed(old: &Value, new: &Value, status_sub: bool) -> bool {
    let skip = |k: &str| {
        k == "metadata" || (status_sub && k == "status") || k == "apiVersion" || k == "kind"
    };
    let a: Vec<(&String, &Value)> = old
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| !skip(k)).collect())
        .unwrap_or_default();
    let b: Vec<(&String, &Value)> = new
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| !skip(k)).collect())
        .unwrap_or_default();
    if a.len() != b.len() {
        return true;
    }
    a.iter().any(|(k, v)| new.get(k.as_str()) != Some(*v))
}

/// Same object, ignoring resourceVersion and managedFields timestamps.
fn unchanged(old: &Value, new: &Value) -> bool {
    fn norm(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(mf) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                for e in mf {
                    if let Some(e) = e.as_object_mut() {
                        e.remove("time");
                    }
                }
            }
        }
        v
    }
    norm(old) == norm(new)
}

fn deletion_complete(res: &ResourceInfo, obj: &Value) -> bool {
    if !meta::finalizers(obj).is_empty() {
        return false;
    }
    // A pod deleted gracefully goes when its kubelet deletes it again with no grace period.
    if res.group.is_empty()
        && res.plural == "pods"
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
    {
        return false;
    }
    if res.group.is_empty() && res.plural == "namespaces" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    true
}

/// Schema validation, pruning and defaulting for custom resources; basic checks for built-ins.
fn validate(
    res: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let Some(custom) = &res.custom else {
        return validate_builtin(res, obj);
    };
    let Some(schema) = &custom.schema else {
        return Ok(());
    };
    let unknown = schema.prune_and_default(obj);
    if !unknown.is_empty() {
        match fv {
            FieldValidation::Strict => {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|u| format!("unknown field \"{u}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    res.kind,
                    res.version,
                    res.kind,
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                warnings.extend(unknown.iter().map(|u| format!("unknown field \"{u}\"")))
            }
            FieldValidation::Ignore => {}
        }
    }
    let name = meta::name(obj).to_string();
    let mut causes = schema.validate(obj);
    if causes.is_empty() {
        causes = schema.validate_cel(obj, old, &res.api_version(), &res.group, &res.kind);
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(res, &name, causes));
    }
    Ok(())
}

fn validate_builtin(res: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let name = meta::name(obj).to_string();
    let mut causes = Vec::new();
    match (res.group.as_str(), res.plural.as_str()) {
        ("apps", "deployments")
        | ("apps", "replicasets")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets") => {
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "spec.replicas",
                    format!("Invalid value: {r}: must be greater than or equal to 0"),
                ));
            }
            if obj.pointer("/spec/selector").is_none() {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "spec.selector",
                    "Required value",
                ));
            } else if let (Some(sel), Some(labels)) = (
                obj.pointer("/spec/selector"),
                obj.pointer("/spec/template/metadata/labels"),
            ) {
                let sel = LabelSelector::from_object(sel);
                if !sel.matches(&json!({"metadata": {"labels": labels}})) {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        format!(
                            "Invalid value: {labels}: `selector` does not match template `labels`"
                        ),
                    ));
                }
            }
            let containers = obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array);
            if containers.is_none_or(|c| c.is_empty()) {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "spec.template.spec.containers",
                    "Required value",
                ));
            }
        }
        ("", "pods") => {
            let containers = obj.pointer("/spec/containers").and_then(Value::as_array);
            if containers.is_none_or(|c| c.is_empty()) {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "spec.containers",
                    "Required value",
                ));
            }
        }
        ("", "configmaps") | ("", "secrets") => {
            for key in ["data", "binaryData"] {
                if let Some(d) = obj.get(key).and_then(Value::as_object) {
                    for k in d.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                        if !ok {
                            causes.push(Cause::new(
                                "FieldValueInvalid",
                                &format!("{key}[{k}]"),
                                format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                            ));
                        }
                    }
                }
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            if let Err(e) = super::registry::infos_from_crd(obj) {
                causes.push(Cause::new(
                    "FieldValueRequired",
                    "spec",
                    format!("Required value: {e}"),
                ));
            } else {
                let group = obj
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let plural = obj
                    .pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if name != format!("{plural}.{group}") {
                    causes.push(Cause::new(
                        "FieldValueInvalid",
                        "metadata.name",
                        format!(
                            "Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, &name, causes))
    }
}

/// Read a dotted path (`.spec.replicas`).
pub fn get_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let ptr: String = path
        .trim_start_matches('.')
        .split('.')
        .map(|s| format!("/{s}"))
        .collect();
    obj.pointer(&ptr)
}

/// Write a dotted path, creating objects on the way.
pub fn set_path(obj: &mut Value, path: &str, value: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Value::Object(m) = cur else { return };
        if i + 1 == parts.len() {
            m.insert(p.to_string(), value);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

fn to_scale(res: &ResourceInfo, obj: &Value) -> Result<Value, ApiError> {
    let Some(spec) = &res.scale else {
        return Err(ApiError::no_route());
    };
    let replicas = get_path(obj, &spec.spec_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status_replicas = get_path(obj, &spec.status_replicas_path)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = spec
        .label_selector_path
        .as_deref()
        .and_then(|p| get_path(obj, p))
        .map(|s| match s {
            Value::String(s) => s.clone(),
            other => LabelSelector::from_object(other).to_string_form(),
        })
        .unwrap_or_default();
    let m = meta::meta(obj).cloned().unwrap_or_default();
    let mut sm = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            sm.insert(k.into(), v.clone());
        }
    }
    let mut status = json!({"replicas": status_replicas});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    Ok(
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": sm, "spec": {"replicas": replicas}, "status": status}),
    )
}

fn encode_continue(rv: u64, last: &Value) -> String {
    let tok = json!({"rv": rv, "ns": meta::namespace(last), "name": meta::name(last)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string())
}

fn decode_continue(tok: &str) -> Result<(u64, (String, String)), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let ns = v
        .get("ns")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((rv, (ns, name)))
}
