//! The plan: the ordered, transformed target objects, the volumes to move, what was found, and a
//! stable hash over all of it — what an approval names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::transform::{self, Context};
use super::{key, kind, name, order, select};
use crate::api::workload::{ImageRewrite, ObjectPatch, keys};
use crate::api::{Finding, Severity};
use crate::residency::Catalog;

/// Everything planning needs; no cluster.
pub struct PlanInput<'a> {
    /// The source namespace's objects (as the API returns them).
    pub objects: &'a [Value],
    pub source_namespace: &'a str,
    pub target_namespace: &'a str,
    pub target_cluster: &'a str,
    pub selector: Option<&'a LabelSelector>,
    pub include_kinds: &'a [String],
    pub exclude_kinds: &'a [String],
    pub storage_class_map: &'a BTreeMap<String, String>,
    pub target_storage_classes: &'a [String],
    pub image_rewrites: &'a [ImageRewrite],
    pub target_region: Option<&'a str>,
    pub patches: &'a [ObjectPatch],
    /// `namespace/name` of the SovereignWorkload.
    pub workload: &'a str,
    pub catalog: &'a Catalog,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedObject {
    pub kind: String,
    pub name: String,
    pub api_version: String,
    /// The transforms that changed it, in order.
    pub transforms: Vec<String>,
    /// The object as it will be applied in the target.
    pub object: Value,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedVolume {
    pub pvc: String,
    pub source_storage_class: Option<String>,
    pub target_storage_class: Option<String>,
    /// Requested capacity, in bytes.
    pub capacity_bytes: u64,
    /// Bytes to move: the capacity, until the mover measures the tree.
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub hash: String,
    pub objects: Vec<PlannedObject>,
    pub volumes: Vec<PlannedVolume>,
    /// Every transform that changed at least one object.
    pub transforms: Vec<String>,
    pub findings: Vec<Finding>,
    /// Objects left out, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Skipped {
    pub object: String,
    pub reason: String,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.volumes.iter().map(|v| v.bytes).sum()
    }

    /// Whether an error-level finding stands in the way of executing the plan.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Parses a Kubernetes quantity of bytes (`10Gi`, `500M`, `1e9`, `1024`).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "m" => 1e-3,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.ceil() as u64)
}

/// Builds the plan.
pub fn build(input: &PlanInput<'_>) -> Plan {
    let selection = select::select(
        input.objects,
        input.selector,
        input.include_kinds,
        input.exclude_kinds,
    );
    let mut findings = selection.findings;
    let ctx = Context {
        source_namespace: input.source_namespace,
        target_namespace: input.target_namespace,
        storage_class_map: input.storage_class_map,
        target_storage_classes: input.target_storage_classes,
        image_rewrites: input.image_rewrites,
        target_region: input.target_region,
        patches: input.patches,
        workload: input.workload,
        catalog: input.catalog,
    };
    let mut sources = selection.objects;
    order::sort(&mut sources);
    let mut objects = Vec::new();
    let mut transforms: Vec<String> = Vec::new();
    let mut volumes = Vec::new();
    for src in &sources {
        let mut obj = src.clone();
        let applied = transform::apply_all(&mut obj, &ctx, &mut findings);
        // Only the untransformed object has the source's uid and content.
        if let Some(uid) = src["metadata"]["uid"].as_str() {
            obj["metadata"]["annotations"][keys::SOURCE_UID] = json!(uid);
        }
        obj["metadata"]["annotations"][keys::SOURCE_HASH] = json!(transform::content_hash(src));
        for t in &applied {
            if !transforms.iter().any(|x| x == t) {
                transforms.push(t.to_string());
            }
        }
        if kind(src) == "PersistentVolumeClaim" {
            let capacity = src["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .and_then(quantity_bytes);
            if capacity.is_none() {
                findings.push(Finding {
                    object: key(src),
                    field: "spec.resources.requests.storage".into(),
                    evidence: src["spec"]["resources"]["requests"]["storage"].to_string(),
                    rule: "a claim must request a capacity".into(),
                    severity: Severity::Error,
                    remediation: "set spec.resources.requests.storage on the source claim".into(),
                });
            }
            let capacity = capacity.unwrap_or(0);
            volumes.push(PlannedVolume {
                pvc: name(src).to_string(),
                source_storage_class: src["spec"]["storageClassName"].as_str().map(String::from),
                target_storage_class: obj["spec"]["storageClassName"].as_str().map(String::from),
                capacity_bytes: capacity,
                bytes: capacity,
            });
        }
        objects.push(PlannedObject {
            kind: kind(src).to_string(),
            name: name(src).to_string(),
            api_version: src["apiVersion"].as_str().unwrap_or("v1").to_string(),
            transforms: applied.iter().map(|t| t.to_string()).collect(),
            object: obj,
        });
    }
    // The hash covers what the target will hold and where: a change of any of it needs a new approval.
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{}\0{}\0",
        input.target_cluster, input.target_namespace
    ));
    for o in &objects {
        hasher.update(serde_json::to_vec(&o.object).unwrap_or_default());
        hasher.update([0]);
    }
    for v in &volumes {
        hasher.update(serde_json::to_vec(v).unwrap_or_default());
    }
    let skipped = selection
        .skipped
        .into_iter()
        .map(|(object, reason)| Skipped { object, reason })
        .collect();
    Plan {
        hash: hex::encode(hasher.finalize()),
        objects,
        volumes,
        transforms,
        findings,
        skipped,
    }
}
