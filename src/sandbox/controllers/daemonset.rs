//! The DaemonSet controller: one pod per node the pod fits (node selector, required affinity,
//! NoSchedule taints), pinned with the `metadata.name` node affinity the real controller sets so
//! the scheduler places it; status desired/current/ready/available counts.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use super::scheduler;
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let pods = o::list(c, "", "pods");
    let nodes = o::list(c, "", "nodes");
    for ds in o::list(c, "apps", "daemonsets") {
        if meta::is_deleting(&ds) {
            continue;
        }
        changed |= reconcile(c, &ds, &pods, &nodes);
    }
    changed
}

/// The node a daemon pod is pinned to.
fn pinned_node(pod: &Value) -> &str {
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str);
    match terms {
        Some(n) => n,
        None => o::str_at(pod, "/spec/nodeName"),
    }
}

fn reconcile(c: &Cluster, ds: &Arc<Value>, pods: &[Arc<Value>], nodes: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(ds);
    let Some(template) = ds.pointer("/spec/template") else {
        return false;
    };
    let hash = o::template_hash(template);
    let mut template_pod = json!({"spec": template.get("spec").cloned().unwrap_or(json!({}))});
    // Daemon pods tolerate the node-lifecycle taints, as the real controller adds.
    let mut tolerations = template_pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoSchedule"}));
    }
    template_pod["spec"]["tolerations"] = json!(tolerations);
    let eligible: Vec<&Arc<Value>> = nodes
        .iter()
        .filter(|n| scheduler::placement_fits(&template_pod, n).is_ok())
        .collect();
    let owned: Vec<&Arc<Value>> = o::owned_by(pods, ds)
        .into_iter()
        .filter(|p| meta::namespace(p) == ns && o::is_active(p))
        .collect();
    let mut changed = false;
    for node in &eligible {
        let node_name = meta::name(node);
        if owned.iter().any(|p| pinned_node(p) == node_name) {
            continue;
        }
        let labels = o::labels_with(
            template,
            &[
                ("controller-revision-hash", &hash),
                ("pod-template-generation", &o::generation(ds).to_string()),
            ],
        );
        let mut pod = o::pod_from_template(
            template,
            ns,
            None,
            &format!("{}-", meta::name(ds)),
            labels,
            o::controller_ref(ds, "apps/v1", "DaemonSet"),
        );
        pod["spec"]["tolerations"] = json!(tolerations);
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]
        });
        match o::create(c, MANAGER, "", "pods", ns, pod) {
            Ok(_) => changed = true,
            Err(e) => o::warn("daemonset", ds, &e),
        }
    }
    // Pods on nodes that no longer fit (or are gone), and pods of an old template, are deleted.
    for p in &owned {
        let on = pinned_node(p);
        let stale = o::str_at(p, "/metadata/labels/controller-revision-hash") != hash;
        if stale || !eligible.iter().any(|n| meta::name(n) == on) {
            changed |= o::delete(c, "", "pods", p, None).is_ok();
        }
    }
    let scheduled = owned
        .iter()
        .filter(|p| !o::str_at(p, "/spec/nodeName").is_empty())
        .count();
    let ready = owned.iter().filter(|p| o::is_ready(p)).count();
    let updated = owned
        .iter()
        .filter(|p| o::str_at(p, "/metadata/labels/controller-revision-hash") == hash)
        .count();
    let status = json!({
        "desiredNumberScheduled": eligible.len(), "currentNumberScheduled": scheduled,
        "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
        "numberUnavailable": eligible.len().saturating_sub(ready),
        "updatedNumberScheduled": updated, "observedGeneration": o::generation(ds),
    });
    if ds.get("status") != Some(&status) {
        match o::update_status(c, MANAGER, "apps", "daemonsets", ds, |x| {
            x["status"] = status;
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("daemonset", ds, &e),
        }
    }
    changed
}
