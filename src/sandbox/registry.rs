//! The kinds a simulated cluster serves: the built-ins, and CRDs added or removed at run time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::schema::CompiledCrdSchema;

pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// How a kind's `/scale` subresource maps onto the object.
#[derive(Clone, Debug)]
pub struct ScaleSpec {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

/// One `additionalPrinterColumns` entry of a CRD version.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// What a CRD version adds to a resource: schema, printer columns, selectable fields.
#[derive(Debug)]
pub struct CustomVersion {
    pub crd_name: String,
    pub schema: Option<Arc<CompiledCrdSchema>>,
    pub printer_columns: Vec<PrinterColumn>,
    pub selectable_fields: Vec<String>,
    /// The raw `openAPIV3Schema`, for OpenAPI publication.
    pub raw_schema: Option<Value>,
}

/// A served resource (one group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub status: bool,
    pub scale: Option<ScaleSpec>,
    /// Extra subresources served (`log`, `token`, `finalize`, `binding`, …).
    pub extra_subresources: Vec<String>,
    pub custom: Option<Arc<CustomVersion>>,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for the core group): the store key and the name used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn is_custom(&self) -> bool {
        self.custom.is_some()
    }

    /// Create-only virtual resources (access reviews, token reviews): nothing is stored.
    pub fn is_virtual(&self) -> bool {
        self.verbs.len() == 1 && self.verbs[0] == "create"
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    extra: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)]
const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    extra: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        all,
        status,
        scale,
        extra,
    }
}

const BUILTINS: &[Builtin] = &[
    b(
        "",
        "v1",
        "Namespace",
        "namespaces",
        false,
        &["ns"],
        false,
        true,
        false,
        &["finalize"],
    ),
    b(
        "",
        "v1",
        "Node",
        "nodes",
        false,
        &["no"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "Pod",
        "pods",
        true,
        &["po"],
        true,
        true,
        false,
        &["log", "binding", "eviction"],
    ),
    b(
        "",
        "v1",
        "Service",
        "services",
        true,
        &["svc"],
        true,
        true,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        true,
        &["ep"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        true,
        &["cm"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "Secret",
        "secrets",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
        false,
        false,
        &["token"],
    ),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
        true,
        true,
        &[],
    ),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
        true,
        true,
        &[],
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
        true,
        true,
        &[],
    ),
    b(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        true,
        &["ds"],
        true,
        true,
        false,
        &[],
    ),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "batch",
        "v1",
        "Job",
        "jobs",
        true,
        &[],
        true,
        true,
        false,
        &[],
    ),
    b(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        true,
        &["cj"],
        true,
        true,
        false,
        &[],
    ),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
        true,
        false,
        &[],
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        false,
        true,
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
        false,
        false,
        &[],
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
        false,
        false,
        &[],
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        false,
        true,
        false,
        &[],
    ),
];

/// Create-only review kinds: `(group, version, kind, plural, namespaced)`.
const REVIEWS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        false,
    ),
];

fn builtin_info(bi: &Builtin) -> ResourceInfo {
    let scale = bi.scale.then(|| ScaleSpec {
        spec_replicas_path: ".spec.replicas".into(),
        status_replicas_path: ".status.replicas".into(),
        label_selector_path: Some(".spec.selector".into()),
    });
    ResourceInfo {
        group: bi.group.into(),
        version: bi.version.into(),
        kind: bi.kind.into(),
        plural: bi.plural.into(),
        singular: bi.kind.to_lowercase(),
        namespaced: bi.namespaced,
        short_names: bi.short.iter().map(|s| s.to_string()).collect(),
        categories: if bi.all { vec!["all".into()] } else { vec![] },
        verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
        status: bi.status,
        scale,
        extra_subresources: bi.extra.iter().map(|s| s.to_string()).collect(),
        custom: None,
    }
}

#[derive(Default)]
struct Inner {
    /// Every served resource, in discovery order.
    resources: Vec<Arc<ResourceInfo>>,
    /// (group, version, plural) → index into `resources`.
    by_gvr: HashMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Inner {
    fn insert(&mut self, info: ResourceInfo) {
        let info = Arc::new(info);
        let key = (
            info.group.clone(),
            info.version.clone(),
            info.plural.clone(),
        );
        if let Some(pos) = self.resources.iter().position(|r| {
            (r.group.as_str(), r.version.as_str(), r.plural.as_str())
                == (key.0.as_str(), key.1.as_str(), key.2.as_str())
        }) {
            self.resources[pos] = info.clone();
        } else {
            self.resources.push(info.clone());
        }
        self.by_gvr.insert(key, info);
    }
}

/// The served kinds. Cheap to read; CRD changes bump `generation` so discovery and OpenAPI caches refresh.
pub struct Registry {
    inner: RwLock<Inner>,
    generation: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut inner = Inner::default();
        for bi in BUILTINS {
            inner.insert(builtin_info(bi));
        }
        for (group, version, kind, plural, namespaced) in REVIEWS {
            inner.insert(ResourceInfo {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: kind.to_lowercase(),
                namespaced: *namespaced,
                short_names: vec![],
                categories: vec![],
                verbs: vec!["create".into()],
                status: false,
                scale: None,
                extra_subresources: vec![],
                custom: None,
            });
        }
        Registry {
            inner: RwLock::new(inner),
            generation: AtomicU64::new(1),
        }
    }

    /// Changes whenever the set of served kinds changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource serving `kind` in `apiVersion` (`v1`, `apps/v1`, …).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        let (group, version) = split_api_version(api_version);
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Every served resource of a group (any version), used to find a kind's storage key.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.resources.clone()
    }

    /// Groups with their served versions, preferred first, in discovery order. The core group is `""`.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        for (_, versions) in out.iter_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    /// Serve every served version of a CRD (replacing what it served before).
    pub fn register_crd(&self, crd: &Value) -> Result<Vec<Arc<ResourceInfo>>, String> {
        let infos = infos_from_crd(crd)?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        remove_crd(&mut inner, &name);
        for info in &infos {
            inner.insert(info.clone());
        }
        drop(inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(infos.into_iter().map(Arc::new).collect())
    }

    /// Stop serving a CRD's kinds.
    pub fn unregister_crd(&self, crd_name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        remove_crd(&mut inner, crd_name);
        drop(inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn remove_crd(inner: &mut Inner, crd_name: &str) {
    let is_it = |r: &Arc<ResourceInfo>| r.custom.as_ref().is_some_and(|c| c.crd_name == crd_name);
    inner.resources.retain(|r| !is_it(r));
    inner.by_gvr.retain(|_, r| !is_it(r));
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources a CRD object serves (one per served version).
pub fn infos_from_crd(crd: &Value) -> Result<Vec<ResourceInfo>, String> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or("metadata.name is required")?;
    let spec = crd.get("spec").ok_or("spec is required")?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or("spec.group is required")?;
    let names = spec.get("names").ok_or("spec.names is required")?;
    let plural = names
        .get("plural")
        .and_then(Value::as_str)
        .ok_or("spec.names.plural is required")?;
    let kind = names
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("spec.names.kind is required")?;
    let singular = names
        .get("singular")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions is required")?;
    let mut out = Vec::new();
    for v in versions {
        if v.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let version = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name is required")?;
        let subresources = v.get("subresources").or_else(|| spec.get("subresources"));
        let status = subresources.and_then(|s| s.get("status")).is_some();
        let scale = subresources
            .and_then(|s| s.get("scale"))
            .map(|sc| ScaleSpec {
                spec_replicas_path: sc
                    .get("specReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas_path: sc
                    .get("statusReplicasPath")
                    .and_then(Value::as_str)
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector_path: sc
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(String::from),
            });
        let raw_schema = v.pointer("/schema/openAPIV3Schema").cloned();
        let schema = raw_schema
            .as_ref()
            .map(|s| Arc::new(CompiledCrdSchema::new(s.clone())));
        let printer_columns = v
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: c
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        format: c
                            .get("format")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        description: c
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: c
                            .get("jsonPath")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let selectable_fields = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceInfo {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            namespaced,
            short_names: str_list(names.get("shortNames")),
            categories: str_list(names.get("categories")),
            verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
            status,
            scale,
            extra_subresources: vec![],
            custom: Some(Arc::new(CustomVersion {
                crd_name: name.to_string(),
                schema,
                printer_columns,
                selectable_fields,
                raw_schema,
            })),
        });
    }
    // Preferred (storage) version first, as discovery lists it.
    out.sort_by_key(|r| std::cmp::Reverse(version_priority(&r.version)));
    Ok(out)
}
