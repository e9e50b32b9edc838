//! The transforms that turn a source object into its target form. Each is a small named step; the
//! plan lists which ones changed each object, and what they found.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::select::pod_spec;
use super::{key, kind, name};
use crate::api::workload::{ImageRewrite, ObjectPatch, keys};
use crate::api::{Finding, Severity};
use crate::residency::Catalog;

/// What the transforms need to know about the move.
pub struct Context<'a> {
    pub source_namespace: &'a str,
    pub target_namespace: &'a str,
    pub storage_class_map: &'a BTreeMap<String, String>,
    /// The target's StorageClasses, default first (empty when unknown, e.g. offline).
    pub target_storage_classes: &'a [String],
    pub image_rewrites: &'a [ImageRewrite],
    /// The target's region and zones, when known, for rewriting node placement.
    pub target_region: Option<&'a str>,
    pub patches: &'a [ObjectPatch],
    /// `namespace/name` of the SovereignWorkload.
    pub workload: &'a str,
    pub catalog: &'a Catalog,
}

/// One transform: its name (as listed in the plan) and what it does.
pub struct Transform {
    pub name: &'static str,
    pub apply: fn(&mut Value, &Context<'_>, &mut Vec<Finding>),
}

/// Every transform, in the order they run.
pub const ALL: [Transform; 10] = [
    Transform {
        name: "strip-server-fields",
        apply: strip_server_fields,
    },
    Transform {
        name: "map-namespace",
        apply: map_namespace,
    },
    Transform {
        name: "map-storage-class",
        apply: map_storage_class,
    },
    Transform {
        name: "rewrite-images",
        apply: rewrite_images,
    },
    Transform {
        name: "drop-cloud-identity",
        apply: drop_cloud_identity,
    },
    Transform {
        name: "drop-cloud-load-balancer",
        apply: drop_cloud_load_balancer,
    },
    Transform {
        name: "rewrite-node-placement",
        apply: rewrite_node_placement,
    },
    Transform {
        name: "start-at-zero-replicas",
        apply: start_at_zero,
    },
    Transform {
        name: "user-patches",
        apply: user_patches,
    },
    Transform {
        name: "mark-ownership",
        apply: mark_ownership,
    },
];

/// Runs every transform on `obj`; returns the names of those that changed it.
pub fn apply_all(
    obj: &mut Value,
    ctx: &Context<'_>,
    findings: &mut Vec<Finding>,
) -> Vec<&'static str> {
    let mut applied = Vec::new();
    for t in &ALL {
        let before = obj.clone();
        (t.apply)(obj, ctx, findings);
        if *obj != before {
            applied.push(t.name);
        }
    }
    applied
}

fn remove(v: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.get_mut(*p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(*last);
    }
}

fn annotations(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()
}

/// Annotations the source's controllers write (revisions, binding, provisioning, scheduling).
const SERVER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Fields the source cluster set, which the target sets anew (or which would be wrong there).
fn strip_server_fields(v: &mut Value, _: &Context<'_>, _: &mut Vec<Finding>) {
    for f in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "ownerReferences",
    ] {
        remove(v, &["metadata", f]);
    }
    remove(v, &["status"]);
    if let Some(a) = annotations(v) {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        for k in SERVER_ANNOTATIONS {
            a.remove(*k);
        }
    }
    match kind(v) {
        "Service" => {
            // A headless Service stays headless; any other gets a new address in the target.
            if v["spec"]["clusterIP"] != "None" {
                remove(v, &["spec", "clusterIP"]);
                remove(v, &["spec", "clusterIPs"]);
            }
            remove(v, &["spec", "healthCheckNodePort"]);
            for p in v["spec"]["ports"].as_array_mut().into_iter().flatten() {
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            }
        }
        "PersistentVolumeClaim" => {
            remove(v, &["spec", "volumeName"]);
            remove(v, &["spec", "dataSource"]);
            remove(v, &["spec", "dataSourceRef"]);
        }
        "Pod" => remove(v, &["spec", "nodeName"]),
        // The selector and its controller-uid labels are generated per cluster.
        "Job" if v["spec"]["manualSelector"] != true => {
            remove(v, &["spec", "selector"]);
            for path in [
                &["spec", "template", "metadata", "labels"][..],
                &["metadata", "labels"][..],
            ] {
                for k in [
                    "controller-uid",
                    "batch.kubernetes.io/controller-uid",
                    "job-name",
                    "batch.kubernetes.io/job-name",
                ] {
                    let mut full = path.to_vec();
                    full.push(k);
                    remove(v, &full);
                }
            }
        }
        "ServiceAccount" => remove(v, &["secrets"]),
        _ => {}
    }
}

fn map_namespace(v: &mut Value, ctx: &Context<'_>, _: &mut Vec<Finding>) {
    if v["metadata"]["namespace"].is_string() || kind(v) != "Namespace" {
        v["metadata"]["namespace"] = json!(ctx.target_namespace);
    }
    if kind(v) == "RoleBinding" {
        for s in v["subjects"].as_array_mut().into_iter().flatten() {
            if s["kind"] == "ServiceAccount"
                && s["namespace"]
                    .as_str()
                    .is_none_or(|n| n == ctx.source_namespace)
            {
                s["namespace"] = json!(ctx.target_namespace);
            }
        }
    }
}

fn map_class(
    class: &str,
    ctx: &Context<'_>,
    object: &str,
    field: &str,
    findings: &mut Vec<Finding>,
) -> Option<String> {
    if let Some(t) = ctx.storage_class_map.get(class) {
        return Some(t.clone());
    }
    if ctx.target_storage_classes.is_empty()
        || ctx.target_storage_classes.iter().any(|c| c == class)
    {
        return None;
    }
    let default = ctx.target_storage_classes.first().cloned();
    findings.push(Finding {
        object: object.to_string(),
        field: field.to_string(),
        evidence: class.to_string(),
        rule: "every source StorageClass must exist in the target or be mapped".into(),
        severity: Severity::Warning,
        remediation: format!(
            "the target has no StorageClass {class:?}; the target's default ({}) is used: map it in spec.target.storageClassMap to choose",
            default.as_deref().unwrap_or("none")
        ),
    });
    default
}

fn map_storage_class(v: &mut Value, ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    let object = key(v);
    match kind(v) {
        "PersistentVolumeClaim" => {
            if let Some(c) = v["spec"]["storageClassName"].as_str().map(String::from)
                && let Some(t) = map_class(&c, ctx, &object, "spec.storageClassName", findings)
            {
                v["spec"]["storageClassName"] = json!(t);
            }
        }
        "StatefulSet" => {
            for (i, t) in v["spec"]["volumeClaimTemplates"]
                .as_array_mut()
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(c) = t["spec"]["storageClassName"].as_str().map(String::from)
                    && let Some(m) = map_class(
                        &c,
                        ctx,
                        &object,
                        &format!("spec.volumeClaimTemplates[{i}].spec.storageClassName"),
                        findings,
                    )
                {
                    t["spec"]["storageClassName"] = json!(m);
                }
            }
        }
        _ => {}
    }
}

fn pod_spec_mut(v: &mut Value) -> Option<&mut Value> {
    pod_spec(v)?;
    let spec = match kind(v) {
        "CronJob" => &mut v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Pod" => &mut v["spec"],
        _ => &mut v["spec"]["template"]["spec"],
    };
    Some(spec)
}

/// The pod template's metadata, where a workload has one.
fn template_meta_mut(v: &mut Value) -> Option<&mut Value> {
    pod_spec(v)?;
    Some(match kind(v) {
        "CronJob" => &mut v["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
        "Pod" => &mut v["metadata"],
        _ => &mut v["spec"]["template"]["metadata"],
    })
}

fn rewrite_images(v: &mut Value, ctx: &Context<'_>, _: &mut Vec<Finding>) {
    let Some(spec) = pod_spec_mut(v) else { return };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            let Some(image) = c["image"].as_str().map(String::from) else {
                continue;
            };
            for r in ctx.image_rewrites {
                if let Some(rest) = image.strip_prefix(r.from.as_str())
                    && (rest.is_empty() || rest.starts_with(['/', ':', '@']))
                {
                    c["image"] = json!(format!("{}{rest}", r.to));
                    break;
                }
            }
        }
    }
}

fn drop_cloud_identity(v: &mut Value, ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    let object = key(v);
    if kind(v) == "ServiceAccount"
        && let Some(a) = annotations(v)
    {
        let drop: Vec<String> = a
            .keys()
            .filter(|k| ctx.catalog.provider_for_identity_annotation(k).is_some())
            .cloned()
            .collect();
        for k in drop {
            let value = a
                .remove(&k)
                .and_then(|x| x.as_str().map(String::from))
                .unwrap_or_default();
            let provider = ctx
                .catalog
                .provider_for_identity_annotation(&k)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            findings.push(Finding {
                object: object.clone(),
                field: format!("metadata.annotations[{k}]"),
                evidence: value,
                rule: "identities in a foreign cloud's IAM do not move".into(),
                severity: Severity::Warning,
                remediation: format!("removed ({provider} workload identity); give the workload credentials issued in the target before it needs them"),
            });
        }
    }
    // Azure workload identity is also switched on by a pod label.
    if let Some(meta) = template_meta_mut(v)
        && let Some(l) = meta.get_mut("labels").and_then(Value::as_object_mut)
        && l.remove("azure.workload.identity/use").is_some()
    {
        findings.push(Finding {
            object,
            field: "spec.template.metadata.labels[azure.workload.identity/use]".into(),
            evidence: "true".into(),
            rule: "identities in a foreign cloud's IAM do not move".into(),
            severity: Severity::Warning,
            remediation: "removed (Azure workload identity)".into(),
        });
    }
}

fn drop_cloud_load_balancer(v: &mut Value, ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    if kind(v) != "Service" {
        return;
    }
    let object = key(v);
    if let Some(a) = annotations(v) {
        let drop: Vec<String> = a
            .keys()
            .filter(|k| ctx.catalog.provider_for_service_annotation(k).is_some())
            .cloned()
            .collect();
        for k in drop {
            let value = a
                .remove(&k)
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .unwrap_or_default();
            findings.push(Finding {
                object: object.clone(),
                field: format!("metadata.annotations[{k}]"),
                evidence: value,
                rule: "a load balancer of the source's cloud means nothing in the target".into(),
                severity: Severity::Info,
                remediation: "removed; add the target's own load-balancer annotations with spec.target.patches if needed".into(),
            });
        }
    }
    // An address of the source's cloud cannot be kept.
    remove(v, &["spec", "loadBalancerIP"]);
}

/// Node selectors and affinities that pin pods to the source's regions or zones would leave them
/// Pending in the target: they are rewritten to the target's region, or removed.
fn rewrite_node_placement(v: &mut Value, ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    let object = key(v);
    let Some(spec) = pod_spec_mut(v) else { return };
    let region_keys = [
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    ];
    let zone_keys = [
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.ebs.csi.aws.com/zone",
        "topology.gke.io/zone",
        "topology.disk.csi.azure.com/zone",
    ];
    let provider_label = |k: &str| ctx.catalog.provider_for_label(k).is_some();
    if let Some(ns) = spec.get_mut("nodeSelector").and_then(Value::as_object_mut) {
        let keys: Vec<String> = ns.keys().cloned().collect();
        for k in keys {
            let is_region = region_keys.contains(&k.as_str());
            if !(is_region || zone_keys.contains(&k.as_str()) || provider_label(&k)) {
                continue;
            }
            let old = ns
                .get(&k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let (new, what) = match (is_region, ctx.target_region) {
                (true, Some(r)) => {
                    ns.insert(k.clone(), json!(r));
                    (r.to_string(), "rewritten to the target's region")
                }
                _ => {
                    ns.remove(&k);
                    (String::new(), "removed")
                }
            };
            findings.push(Finding {
                object: object.clone(),
                field: format!("nodeSelector[{k}]"),
                evidence: if new.is_empty() {
                    old
                } else {
                    format!("{old} → {new}")
                },
                rule: "pods must not be pinned to the source's regions, zones or node pools".into(),
                severity: Severity::Info,
                remediation: what.into(),
            });
        }
    }
    let terms = spec
        .get_mut("affinity")
        .and_then(|a| a.get_mut("nodeAffinity"))
        .and_then(|a| a.get_mut("requiredDuringSchedulingIgnoredDuringExecution"))
        .and_then(|r| r.get_mut("nodeSelectorTerms"))
        .and_then(Value::as_array_mut);
    for term in terms.into_iter().flatten() {
        if let Some(exprs) = term
            .get_mut("matchExpressions")
            .and_then(Value::as_array_mut)
        {
            let before = exprs.len();
            exprs.retain(|e| {
                let k = e["key"].as_str().unwrap_or_default();
                !(region_keys.contains(&k) || zone_keys.contains(&k) || provider_label(k))
            });
            if exprs.len() != before {
                findings.push(Finding {
                    object: object.clone(),
                    field: "affinity.nodeAffinity".into(),
                    evidence: format!("{} placement term(s)", before - exprs.len()),
                    rule: "pods must not be pinned to the source's regions, zones or node pools"
                        .into(),
                    severity: Severity::Info,
                    remediation: "removed; the target schedules within its own topology".into(),
                });
            }
        }
    }
}

/// Workloads are created stopped, so that nothing writes before its data is there; the replica
/// count to restore at cutover is kept in an annotation.
fn start_at_zero(v: &mut Value, _: &Context<'_>, _: &mut Vec<Finding>) {
    match kind(v) {
        "Deployment" | "StatefulSet" => {
            let replicas = v["spec"]["replicas"].as_i64().unwrap_or(1);
            v["metadata"]["annotations"][keys::REPLICAS] = json!(replicas.to_string());
            v["spec"]["replicas"] = json!(0);
        }
        "CronJob" => {
            let suspended = v["spec"]["suspend"].as_bool().unwrap_or(false);
            v["metadata"]["annotations"][keys::SUSPENDED] = json!(suspended.to_string());
            v["spec"]["suspend"] = json!(true);
        }
        "DaemonSet" => {
            let held =
                v["spec"]["template"]["spec"]["nodeSelector"][keys::HELD].as_str() == Some("true");
            v["metadata"]["annotations"][keys::SUSPENDED] = json!(held.to_string());
            v["spec"]["template"]["spec"]["nodeSelector"][keys::HELD] = json!("true");
        }
        _ => {}
    }
}

fn user_patches(v: &mut Value, ctx: &Context<'_>, findings: &mut Vec<Finding>) {
    for p in ctx.patches {
        if p.kind != kind(v) || p.name.as_deref().is_some_and(|n| n != name(v)) {
            continue;
        }
        let ops = match serde_json::to_value(&p.operations)
            .and_then(serde_json::from_value::<json_patch::Patch>)
        {
            Ok(ops) => ops,
            Err(e) => {
                findings.push(patch_failed(v, e.to_string()));
                continue;
            }
        };
        let mut patched = v.clone();
        match json_patch::patch(&mut patched, &ops.0) {
            Ok(()) => *v = patched,
            Err(e) => findings.push(patch_failed(v, e.to_string())),
        }
    }
}

fn patch_failed(v: &Value, why: String) -> Finding {
    Finding {
        object: key(v),
        field: "spec.target.patches".into(),
        evidence: why,
        rule: "a user patch must apply to the object it names".into(),
        severity: Severity::Error,
        remediation: "fix the patch in spec.target.patches (the object is planned without it)"
            .into(),
    }
}

/// Ties the target object to its SovereignWorkload (the plan adds the source object's uid and
/// hash, which only the untransformed object has).
fn mark_ownership(v: &mut Value, ctx: &Context<'_>, _: &mut Vec<Finding>) {
    let labels = &mut v["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[keys::MANAGED_BY] = json!(keys::MANAGER);
    // Label values cannot hold '/': namespace.name.
    labels[keys::WORKLOAD] = json!(ctx.workload.replace('/', "."));
}

/// SHA-256 of a source object's content: what its authors wrote, without what its cluster keeps
/// changing (status, resourceVersion, managedFields, the controllers' annotations), so that a
/// plan stays the one approved while the source runs.
pub fn content_hash(src: &Value) -> String {
    let mut v = src.clone();
    for f in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
    ] {
        remove(&mut v, &["metadata", f]);
    }
    remove(&mut v, &["status"]);
    if let Some(a) = annotations(&mut v) {
        for k in SERVER_ANNOTATIONS {
            a.remove(*k);
        }
        // A controller's annotation on an object that had none leaves an empty map: none.
        if a.is_empty() {
            remove(&mut v, &["metadata", "annotations"]);
        }
    }
    hash_value(&v)
}

/// SHA-256 of a value's canonical JSON (object keys sorted, as serde_json's map is).
pub fn hash_value(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}
