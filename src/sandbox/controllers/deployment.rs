//! The Deployment controller: one ReplicaSet per pod template (`<deploy>-<pod-template-hash>`),
//! the new one scaled to `spec.replicas`, old ones scaled down once the new one is ready
//! (RollingUpdate) or first (Recreate); status counts and the Available/Progressing conditions
//! with the reasons the real controller writes (no ProgressDeadlineExceeded: the sandbox's
//! pods never stall on their own).

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";
const REVISION: &str = "deployment.kubernetes.io/revision";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let sets = o::list(c, "apps", "replicasets");
    for d in o::list(c, "apps", "deployments") {
        if meta::is_deleting(&d) {
            continue;
        }
        changed |= reconcile(c, &d, &sets);
    }
    changed
}

fn revision(rs: &Value) -> i64 {
    o::str_at(
        rs,
        &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
    )
    .parse()
    .unwrap_or(0)
}

fn replicas(rs: &Value) -> i64 {
    o::i64_at(rs, "/spec/replicas").unwrap_or(0)
}

fn status_count(rs: &Value, field: &str) -> i64 {
    o::i64_at(rs, &format!("/status/{field}")).unwrap_or(0)
}

/// Surge and unavailability allowance of a RollingUpdate (absolute or a percentage of desired).
fn allowance(d: &Value, field: &str, desired: i64, round_up: bool) -> i64 {
    match d.pointer(&format!("/spec/strategy/rollingUpdate/{field}")) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            let x = desired * pct;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => {
            let x = desired * 25;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
    }
}

fn reconcile(c: &Cluster, d: &Arc<Value>, sets: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(d);
    let name = meta::name(d);
    let desired = o::i64_at(d, "/spec/replicas").unwrap_or(1).max(0);
    let Some(template) = d.pointer("/spec/template") else {
        return false;
    };
    let hash = o::template_hash(template);
    let owned: Vec<&Arc<Value>> = o::owned_by(sets, d)
        .into_iter()
        .filter(|rs| meta::namespace(rs) == ns && !meta::is_deleting(rs))
        .collect();
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let mut changed = false;
    let new_rs = owned
        .iter()
        .find(|rs| o::str_at(rs, "/metadata/labels/pod-template-hash") == hash)
        .map(|rs| (*rs).clone());
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let recreate = o::str_at(d, "/spec/strategy/type") == "Recreate";
    let old: Vec<&Arc<Value>> = owned
        .iter()
        .copied()
        .filter(|rs| o::str_at(rs, "/metadata/labels/pod-template-hash") != hash)
        .collect();
    let old_pods: i64 = old.iter().map(|rs| status_count(rs, "replicas")).sum();
    let new_rs = match new_rs {
        Some(rs) => Some(rs),
        None if paused => None,
        None => {
            let mut tmpl = template.clone();
            tmpl["metadata"]["labels"] = o::labels_with(template, &[("pod-template-hash", &hash)]);
            let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let start = if recreate && old_pods > 0 { 0 } else { desired };
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-{hash}"), "namespace": ns,
                             "labels": tmpl["metadata"]["labels"].clone(),
                             "annotations": {REVISION: (max_revision + 1).to_string(),
                                             "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                                             "deployment.kubernetes.io/max-replicas": (desired + allowance(d, "maxSurge", desired, true)).to_string()},
                             "ownerReferences": [o::controller_ref(d, "apps/v1", "Deployment")]},
                "spec": {"replicas": start, "minReadySeconds": o::i64_at(d, "/spec/minReadySeconds").unwrap_or(0),
                         "selector": selector, "template": tmpl}
            });
            match o::create(c, MANAGER, "apps", "replicasets", ns, rs) {
                Ok(rs) => {
                    changed = true;
                    Some(rs)
                }
                Err(e) => {
                    o::warn("deployment", d, &e);
                    None
                }
            }
        }
    };
    if !paused && let Some(new_rs) = &new_rs {
        // The new set: everything, except under Recreate while old pods still run.
        let target = if recreate && old_pods > 0 { 0 } else { desired };
        if replicas(new_rs) != target {
            changed |= scale(c, d, new_rs, target);
        }
        let new_ready = status_count(new_rs, "availableReplicas");
        let min_available = desired - allowance(d, "maxUnavailable", desired, false);
        for rs in &old {
            let target = if recreate || new_ready >= desired {
                0
            } else {
                // Keep enough old pods for the Deployment's minimum availability meanwhile.
                replicas(rs).min((min_available - new_ready).max(0))
            };
            if replicas(rs) != target {
                changed |= scale(c, d, rs, target);
            }
        }
        let latest = max_revision.max(revision(new_rs));
        if revision(new_rs) < latest
            || o::str_at(
                d,
                &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
            ) != revision(new_rs).to_string()
        {
            let rev = revision(new_rs).max(1).to_string();
            match o::update(c, MANAGER, "apps", "deployments", d, |x| {
                x["metadata"]["annotations"][REVISION] = json!(rev);
            }) {
                Ok(_) => changed = true,
                Err(e) => o::warn("deployment", d, &e),
            }
        }
    }
    // Old sets beyond revisionHistoryLimit with no replicas go.
    let limit = o::i64_at(d, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&&Arc<Value>> = old
        .iter()
        .filter(|rs| replicas(rs) == 0 && status_count(rs, "replicas") == 0)
        .collect();
    if idle.len() > limit {
        idle.sort_by_key(|rs| revision(rs));
        for rs in idle.iter().take(idle.len() - limit) {
            if o::delete(c, "apps", "replicasets", rs, None).is_ok() {
                changed = true;
            }
        }
    }
    changed |= write_status(c, d, new_rs.as_deref(), &owned, desired);
    changed
}

fn scale(c: &Cluster, d: &Value, rs: &Value, replicas: i64) -> bool {
    let desired = o::i64_at(d, "/spec/replicas").unwrap_or(1).to_string();
    match o::update(c, MANAGER, "apps", "replicasets", rs, |x| {
        x["spec"]["replicas"] = json!(replicas);
        x["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = json!(desired);
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("deployment", rs, &e);
            false
        }
    }
}

fn write_status(
    c: &Cluster,
    d: &Value,
    new_rs: Option<&Value>,
    owned: &[&Arc<Value>],
    desired: i64,
) -> bool {
    let sum = |f: &str| owned.iter().map(|rs| status_count(rs, f)).sum::<i64>();
    let replicas = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = new_rs.map(|rs| status_count(rs, "replicas")).unwrap_or(0);
    let new_available = new_rs
        .map(|rs| status_count(rs, "availableReplicas"))
        .unwrap_or(0);
    let mut status = d.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    status["observedGeneration"] = json!(o::generation(d));
    status["replicas"] = json!(replicas);
    status["updatedReplicas"] = json!(updated);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["unavailableReplicas"] = json!((replicas.max(desired) - available).max(0));
    let mut holder = json!({"status": status});
    let min_available = desired - allowance(d, "maxUnavailable", desired, false);
    if available >= min_available {
        o::set_condition(
            &mut holder,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        o::set_condition(
            &mut holder,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    if let Some(rs) = new_rs {
        let rs_name = meta::name(rs);
        let complete = updated == desired && replicas == desired && new_available == desired;
        if complete {
            o::set_condition(
                &mut holder,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            );
        } else {
            o::set_condition(
                &mut holder,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
            );
        }
    }
    let status = holder["status"].take();
    if d.get("status") == Some(&status) {
        return false;
    }
    match o::update_status(c, MANAGER, "apps", "deployments", d, |x| {
        x["status"] = status;
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("deployment", d, &e);
            false
        }
    }
}
