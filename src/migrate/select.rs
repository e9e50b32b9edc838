//! Which source objects move: the namespace's objects filtered by selector and kinds, closed over
//! the references the selected workloads need (so that nothing is left behind), minus what the
//! target's own controllers recreate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::{key, kind, name};
use crate::api::{Finding, Severity};

/// Kinds never moved: recreated by the target's controllers, cluster-bound, or ephemeral.
pub const NEVER: [&str; 11] = [
    "Event",
    "ReplicaSet",
    "ControllerRevision",
    "Endpoints",
    "EndpointSlice",
    "PersistentVolume",
    "Lease",
    "VolumeTransfer",
    "SovereignWorkload",
    // A pod's certificate request: the target's kubelet makes its own.
    "PodCertificateRequest",
    // Published by a CSI driver about its own storage.
    "CSIStorageCapacity",
];

/// Workload kinds whose pod template references other objects.
pub const WORKLOADS: [&str; 5] = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"];

#[derive(Debug, Default)]
pub struct Selection {
    pub objects: Vec<Value>,
    pub findings: Vec<Finding>,
    /// Objects left out, with why (bounded by the caller).
    pub skipped: Vec<(String, String)>,
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `labels` match a Kubernetes label selector (matchLabels and matchExpressions).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let ml = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let me = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    ml && me
}

/// The pod spec of a workload object, if it has one.
pub fn pod_spec(v: &Value) -> Option<&Value> {
    let spec = match kind(v) {
        "CronJob" => &v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "Pod" => &v["spec"],
        k if WORKLOADS.contains(&k) => &v["spec"]["template"]["spec"],
        _ => return None,
    };
    (!spec.is_null()).then_some(spec)
}

/// The objects a pod spec needs: (kind, name, where it is referenced, optional).
fn references(spec: &Value) -> Vec<(&'static str, String, String, bool)> {
    let mut out = Vec::new();
    let mut push = |k: &'static str, n: Option<&str>, why: String, optional: bool| {
        if let Some(n) = n.filter(|n| !n.is_empty()) {
            out.push((k, n.to_string(), why, optional));
        }
    };
    push(
        "ServiceAccount",
        spec["serviceAccountName"].as_str(),
        "spec.serviceAccountName".into(),
        false,
    );
    for (i, s) in spec["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        push(
            "Secret",
            s["name"].as_str(),
            format!("spec.imagePullSecrets[{i}]"),
            false,
        );
    }
    for (i, vol) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let opt = |x: &Value| x["optional"].as_bool().unwrap_or(false);
        push(
            "ConfigMap",
            vol["configMap"]["name"].as_str(),
            format!("spec.volumes[{i}].configMap"),
            opt(&vol["configMap"]),
        );
        push(
            "Secret",
            vol["secret"]["secretName"].as_str(),
            format!("spec.volumes[{i}].secret"),
            opt(&vol["secret"]),
        );
        push(
            "PersistentVolumeClaim",
            vol["persistentVolumeClaim"]["claimName"].as_str(),
            format!("spec.volumes[{i}].persistentVolumeClaim"),
            false,
        );
        for (j, src) in vol["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            push(
                "ConfigMap",
                src["configMap"]["name"].as_str(),
                format!("spec.volumes[{i}].projected.sources[{j}]"),
                opt(&src["configMap"]),
            );
            push(
                "Secret",
                src["secret"]["name"].as_str(),
                format!("spec.volumes[{i}].projected.sources[{j}]"),
                opt(&src["secret"]),
            );
        }
    }
    for list in ["initContainers", "containers"] {
        for (ci, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for (i, e) in c["envFrom"].as_array().into_iter().flatten().enumerate() {
                let opt = |x: &Value| x["optional"].as_bool().unwrap_or(false);
                push(
                    "ConfigMap",
                    e["configMapRef"]["name"].as_str(),
                    format!("spec.{list}[{ci}].envFrom[{i}]"),
                    opt(&e["configMapRef"]),
                );
                push(
                    "Secret",
                    e["secretRef"]["name"].as_str(),
                    format!("spec.{list}[{ci}].envFrom[{i}]"),
                    opt(&e["secretRef"]),
                );
            }
            for (i, e) in c["env"].as_array().into_iter().flatten().enumerate() {
                let r = &e["valueFrom"];
                let opt = |x: &Value| x["optional"].as_bool().unwrap_or(false);
                push(
                    "ConfigMap",
                    r["configMapKeyRef"]["name"].as_str(),
                    format!("spec.{list}[{ci}].env[{i}]"),
                    opt(&r["configMapKeyRef"]),
                );
                push(
                    "Secret",
                    r["secretKeyRef"]["name"].as_str(),
                    format!("spec.{list}[{ci}].env[{i}]"),
                    opt(&r["secretKeyRef"]),
                );
            }
        }
    }
    out
}

/// Objects the target recreates or that belong to the cluster, not the workload.
fn never_moved(v: &Value) -> Option<&'static str> {
    let k = kind(v);
    if NEVER.contains(&k) {
        return Some("recreated or owned by the cluster");
    }
    if k == "Pod"
        && v["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| !o.is_empty())
    {
        return Some("created by a controller that moves");
    }
    if k == "Job"
        && v["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|o| o.iter().any(|r| r["kind"] == "CronJob"))
    {
        return Some("created by a CronJob that moves");
    }
    if !v["metadata"]["labels"][crate::api::workload::keys::TRANSFER].is_null() {
        return Some("an object of the migration's own data mover");
    }
    if k == "ServiceAccount" && name(v) == "default" {
        return Some("every namespace has its own default ServiceAccount");
    }
    if k == "ConfigMap" && name(v) == "kube-root-ca.crt" {
        return Some("published by the target cluster itself");
    }
    if k == "Secret" && v["type"] == "kubernetes.io/service-account-token" {
        return Some("a token the target cluster issues anew");
    }
    None
}

fn kind_listed(list: &[String], v: &Value) -> bool {
    let k = kind(v);
    let group = v["apiVersion"]
        .as_str()
        .and_then(|a| a.split_once('/').map(|(g, _)| g))
        .unwrap_or("");
    list.iter()
        .any(|l| l == k || (!group.is_empty() && *l == format!("{k}.{group}")))
}

/// Selects what moves out of `objects` (all in the source namespace).
pub fn select(
    objects: &[Value],
    selector: Option<&LabelSelector>,
    include: &[String],
    exclude: &[String],
) -> Selection {
    let mut sel = Selection::default();
    let by_key: BTreeMap<(String, String), &Value> = objects
        .iter()
        .map(|o| ((kind(o).to_string(), name(o).to_string()), o))
        .collect();
    let mut chosen: BTreeSet<(String, String)> = BTreeSet::new();
    for o in objects {
        if let Some(why) = never_moved(o) {
            sel.skipped.push((key(o), why.to_string()));
            continue;
        }
        if kind_listed(exclude, o) {
            sel.skipped
                .push((key(o), "excluded by spec.source.excludeKinds".into()));
            continue;
        }
        if !include.is_empty() && !kind_listed(include, o) {
            sel.skipped
                .push((key(o), "not in spec.source.includeKinds".into()));
            continue;
        }
        if selector.is_some_and(|s| !matches(s, &labels(o))) {
            continue;
        }
        chosen.insert((kind(o).to_string(), name(o).to_string()));
    }
    // Close over what the chosen workloads reference; a missing reference is a finding now, not a
    // surprise at cutover.
    let workloads: Vec<&Value> = chosen
        .iter()
        .filter_map(|k| by_key.get(k).copied())
        .filter(|o| pod_spec(o).is_some())
        .collect();
    for w in &workloads {
        let spec = pod_spec(w).unwrap_or(&Value::Null);
        let mut refs = references(spec);
        if kind(w) == "StatefulSet" {
            // Claims from volumeClaimTemplates are named <template>-<statefulset>-<ordinal>.
            let replicas = w["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
            for t in w["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
            {
                for i in 0..replicas {
                    refs.push((
                        "PersistentVolumeClaim",
                        format!("{}-{}-{i}", name(t), name(w)),
                        "spec.volumeClaimTemplates".into(),
                        true,
                    ));
                }
            }
        }
        for (k, n, field, optional) in refs {
            let id = (k.to_string(), n.clone());
            match by_key.get(&id) {
                Some(o) if never_moved(o).is_none() => {
                    let left_out = kind_listed(exclude, o) || (!include.is_empty() && !kind_listed(include, o));
                    if left_out {
                        sel.findings.push(Finding {
                            object: key(w),
                            field,
                            evidence: format!("{k}/{n}"),
                            rule: "what a workload references moves with it".into(),
                            severity: Severity::Warning,
                            remediation: format!("{k}/{n} is left out by spec.source.includeKinds/excludeKinds; the target must provide it"),
                        });
                    } else {
                        chosen.insert(id);
                    }
                }
                Some(_) => {}
                None if optional || (k == "ServiceAccount" && n == "default") => {}
                None => sel.findings.push(Finding {
                    object: key(w),
                    field,
                    evidence: format!("{k}/{n}"),
                    rule: "what a workload references must exist".into(),
                    severity: Severity::Error,
                    remediation: format!("{k}/{n} does not exist in the source namespace: create it there, or in the target before cutover"),
                }),
            }
        }
    }
    // Services that select the chosen pods, Ingresses that route to chosen Services, HPAs and PDBs of
    // chosen workloads, and RBAC bound to chosen ServiceAccounts come along.
    let templates: Vec<BTreeMap<String, String>> = workloads
        .iter()
        .map(|w| {
            let t = if kind(w) == "CronJob" {
                &w["spec"]["jobTemplate"]["spec"]["template"]
            } else {
                &w["spec"]["template"]
            };
            labels(t)
        })
        .collect();
    let include_ok = |o: &Value| {
        never_moved(o).is_none()
            && !kind_listed(exclude, o)
            && (include.is_empty() || kind_listed(include, o))
    };
    for o in objects {
        if !include_ok(o) || chosen.contains(&(kind(o).to_string(), name(o).to_string())) {
            continue;
        }
        let pulled = match kind(o) {
            "Service" => o["spec"]["selector"].as_object().is_some_and(|sel_map| {
                !sel_map.is_empty()
                    && templates.iter().any(|t| {
                        sel_map.iter().all(|(k, v)| {
                            v.as_str()
                                .is_some_and(|v| t.get(k).map(String::as_str) == Some(v))
                        })
                    })
            }),
            "HorizontalPodAutoscaler" => {
                let r = &o["spec"]["scaleTargetRef"];
                chosen.contains(&(
                    r["kind"].as_str().unwrap_or("").to_string(),
                    r["name"].as_str().unwrap_or("").to_string(),
                ))
            }
            "PodDisruptionBudget" | "NetworkPolicy" => {
                let s = if kind(o) == "PodDisruptionBudget" {
                    &o["spec"]["selector"]
                } else {
                    &o["spec"]["podSelector"]
                };
                serde_json::from_value::<LabelSelector>(s.clone()).is_ok_and(|ls| {
                    let empty = ls.match_labels.as_ref().is_none_or(|m| m.is_empty())
                        && ls.match_expressions.as_ref().is_none_or(|m| m.is_empty());
                    !empty && templates.iter().any(|t| matches(&ls, t))
                })
            }
            "RoleBinding" => o["subjects"].as_array().into_iter().flatten().any(|s| {
                s["kind"] == "ServiceAccount"
                    && chosen.contains(&(
                        "ServiceAccount".to_string(),
                        s["name"].as_str().unwrap_or("").to_string(),
                    ))
            }),
            _ => false,
        };
        if pulled {
            chosen.insert((kind(o).to_string(), name(o).to_string()));
        }
    }
    // Second pass: what the pulled objects reference (Ingress → Service, RoleBinding → Role).
    for o in objects {
        let id = (kind(o).to_string(), name(o).to_string());
        if !chosen.contains(&id) {
            continue;
        }
        let mut refs: Vec<(String, String, String)> = Vec::new();
        match kind(o) {
            "RoleBinding" if o["roleRef"]["kind"] == "Role" => refs.push((
                "Role".into(),
                o["roleRef"]["name"].as_str().unwrap_or("").into(),
                "roleRef".into(),
            )),
            "Ingress" => {
                for (i, r) in o["spec"]["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    for (j, p) in r["http"]["paths"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        if let Some(n) = p["backend"]["service"]["name"].as_str() {
                            refs.push((
                                "Service".into(),
                                n.into(),
                                format!("spec.rules[{i}].http.paths[{j}].backend"),
                            ));
                        }
                    }
                }
                for (i, t) in o["spec"]["tls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if let Some(n) = t["secretName"].as_str() {
                        refs.push((
                            "Secret".into(),
                            n.into(),
                            format!("spec.tls[{i}].secretName"),
                        ));
                    }
                }
            }
            "HorizontalPodAutoscaler" => refs.push((
                o["spec"]["scaleTargetRef"]["kind"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
                o["spec"]["scaleTargetRef"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
                "spec.scaleTargetRef".into(),
            )),
            _ => {}
        }
        for (k, n, field) in refs {
            if n.is_empty() {
                continue;
            }
            match by_key.get(&(k.clone(), n.clone())) {
                Some(r) if include_ok(r) => {
                    chosen.insert((k, n));
                }
                Some(_) => {}
                None => sel.findings.push(Finding {
                    object: key(o),
                    field,
                    evidence: format!("{k}/{n}"),
                    rule: "what an object references must exist".into(),
                    severity: Severity::Error,
                    remediation: format!("{k}/{n} does not exist in the source namespace"),
                }),
            }
        }
    }
    sel.objects = objects
        .iter()
        .filter(|o| chosen.contains(&(kind(o).to_string(), name(o).to_string())))
        .cloned()
        .collect();
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_movers_own_objects_never_move_even_without_a_selector() {
        let mover = json!({"app.kubernetes.io/managed-by": "sovereign-operator",
                           "sovereign.dev/volume-transfer": "dossier-data-db-0"});
        let objects = [
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "dossier-data-db-0-snap-1", "labels": mover}}),
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                   "metadata": {"name": "dossier-data-db-0-snap-1", "labels": mover}}),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "dossier-data-db-0-send-1-1", "labels": mover}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data-db-0"}}),
        ];
        let sel = select(&objects, None, &[], &[]);
        let chosen: Vec<String> = sel.objects.iter().map(key).collect();
        assert_eq!(chosen, ["PersistentVolumeClaim/data-db-0"]);
        assert_eq!(sel.skipped.len(), 3, "{:?}", sel.skipped);
    }
}
