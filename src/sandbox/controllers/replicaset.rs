//! The ReplicaSet controller: keeps `spec.replicas` active pods from the template, each named
//! `<rs>-<random>` with a controller reference, and reports replicas/ready/available counts.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let pods = o::list(c, "", "pods");
    for rs in o::list(c, "apps", "replicasets") {
        if meta::is_deleting(&rs) {
            continue;
        }
        changed |= reconcile(c, &rs, &pods);
    }
    changed
}

fn reconcile(c: &Cluster, rs: &Arc<Value>, pods: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(rs);
    let mut changed = false;
    let owned: Vec<&Arc<Value>> = o::owned_by(pods, rs)
        .into_iter()
        .filter(|p| meta::namespace(p) == ns)
        .collect();
    let active: Vec<&Arc<Value>> = owned.iter().copied().filter(|p| o::is_active(p)).collect();
    let want = o::i64_at(rs, "/spec/replicas").unwrap_or(1).max(0) as usize;
    if active.len() < want {
        let Some(template) = rs.pointer("/spec/template") else {
            return false;
        };
        let labels = o::labels_with(template, &[]);
        for _ in active.len()..want {
            let pod = o::pod_from_template(
                template,
                ns,
                None,
                &format!("{}-", meta::name(rs)),
                labels.clone(),
                o::controller_ref(rs, "apps/v1", "ReplicaSet"),
            );
            match o::create(c, MANAGER, "", "pods", ns, pod) {
                Ok(_) => changed = true,
                Err(e) => {
                    o::warn("replicaset", rs, &e);
                    break;
                }
            }
        }
    } else if active.len() > want {
        // Delete the least useful first: unscheduled, then not ready, then the newest.
        let mut victims = active.clone();
        victims.sort_by_key(|p| {
            (
                !o::str_at(p, "/spec/nodeName").is_empty(),
                o::is_ready(p),
                std::cmp::Reverse(o::str_at(p, "/metadata/creationTimestamp").to_string()),
            )
        });
        for p in victims.iter().take(active.len() - want) {
            match o::delete(c, "", "pods", p, None) {
                Ok(()) => changed = true,
                Err(e) => o::warn("replicaset", p, &e),
            }
        }
    }
    let ready = active.iter().filter(|p| o::is_ready(p)).count();
    let min_ready = o::i64_at(rs, "/spec/minReadySeconds").unwrap_or(0);
    let available = active
        .iter()
        .filter(|p| available_for(p, min_ready))
        .count();
    let fully_labeled = active.iter().filter(|p| o::selects(rs, p)).count();
    let status = json!({
        "replicas": active.len(), "fullyLabeledReplicas": fully_labeled, "readyReplicas": ready,
        "availableReplicas": available, "observedGeneration": o::generation(rs),
    });
    if rs.get("status") != Some(&status) {
        match o::update_status(c, MANAGER, "apps", "replicasets", rs, |new| {
            new["status"] = status;
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("replicaset", rs, &e),
        }
    }
    changed
}

/// Ready for at least `minReadySeconds`.
pub fn available_for(pod: &Value, min_ready_seconds: i64) -> bool {
    if !o::is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
        .and_then(meta::age_seconds)
        .is_some_and(|age| age >= min_ready_seconds as f64)
}
