//! The StatefulSet controller: pods `<sts>-0..N-1` created in order (OrderedReady: the next only
//! once the previous ones run and are ready), a PVC `<template>-<sts>-<ordinal>` per
//! volumeClaimTemplate that outlives the pods (the default Retain retention policy), scale-down
//! from the highest ordinal, rolling updates from the highest ordinal, and the status counts.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kube-controller-manager";

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let pods = o::list(c, "", "pods");
    for sts in o::list(c, "apps", "statefulsets") {
        if meta::is_deleting(&sts) {
            continue;
        }
        changed |= reconcile(c, &sts, &pods);
    }
    changed
}

fn ordinal(sts_name: &str, pod: &Value) -> Option<i64> {
    meta::name(pod)
        .strip_prefix(sts_name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn reconcile(c: &Cluster, sts: &Arc<Value>, pods: &[Arc<Value>]) -> bool {
    let ns = meta::namespace(sts);
    let name = meta::name(sts);
    let Some(template) = sts.pointer("/spec/template") else {
        return false;
    };
    let want = o::i64_at(sts, "/spec/replicas").unwrap_or(1).max(0);
    let revision = format!("{name}-{}", o::template_hash(template));
    let parallel = o::str_at(sts, "/spec/podManagementPolicy") == "Parallel";
    let on_delete = o::str_at(sts, "/spec/updateStrategy/type") == "OnDelete";
    let mut owned: Vec<(i64, &Arc<Value>)> = o::owned_by(pods, sts)
        .into_iter()
        .filter(|p| meta::namespace(p) == ns)
        .filter_map(|p| ordinal(name, p).map(|i| (i, p)))
        .collect();
    owned.sort_by_key(|(i, _)| *i);
    let mut changed = false;
    let healthy = |p: &Value| !meta::is_deleting(p) && o::phase(p) == "Running" && o::is_ready(p);
    // Failed pods are replaced (deleted here, created again below on a later pass).
    for (_, p) in &owned {
        if o::phase(p) == "Failed" && !meta::is_deleting(p) {
            changed |= o::delete(c, "", "pods", p, None).is_ok();
        }
    }
    // Create the missing ordinals below `want`, in order.
    for i in 0..want {
        if let Some((_, p)) = owned.iter().find(|(j, _)| *j == i) {
            if !parallel && !healthy(p) {
                break;
            }
            continue;
        }
        changed |= ensure_claims(c, sts, i);
        let pod = pod(sts, template, i, &revision);
        match o::create(c, MANAGER, "", "pods", ns, pod) {
            Ok(_) => changed = true,
            Err(e) => o::warn("statefulset", sts, &e),
        }
        if !parallel {
            break;
        }
    }
    // Scale down from the highest ordinal, one at a time unless Parallel.
    let mut extra: Vec<&(i64, &Arc<Value>)> = owned.iter().filter(|(i, _)| *i >= want).collect();
    extra.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    if extra.iter().all(|(_, p)| !meta::is_deleting(p)) {
        for (_, p) in extra.iter().take(if parallel { extra.len() } else { 1 }) {
            changed |= o::delete(c, "", "pods", p, None).is_ok();
        }
    }
    // Rolling update: replace the highest stale pod once all others are healthy.
    let in_range: Vec<&(i64, &Arc<Value>)> = owned.iter().filter(|(i, _)| *i < want).collect();
    let all_healthy = in_range.len() as i64 == want && in_range.iter().all(|(_, p)| healthy(p));
    if !on_delete
        && all_healthy
        && let Some((_, stale)) = in_range
            .iter()
            .rev()
            .find(|(_, p)| o::str_at(p, "/metadata/labels/controller-revision-hash") != revision)
    {
        changed |= o::delete(c, "", "pods", stale, None).is_ok();
    }
    // Status.
    let active: Vec<&Arc<Value>> = owned
        .iter()
        .map(|(_, p)| *p)
        .filter(|p| !meta::is_deleting(p))
        .collect();
    let ready = active.iter().filter(|p| o::is_ready(p)).count();
    let updated = active
        .iter()
        .filter(|p| o::str_at(p, "/metadata/labels/controller-revision-hash") == revision)
        .count();
    let min_ready = o::i64_at(sts, "/spec/minReadySeconds").unwrap_or(0);
    let available = active
        .iter()
        .filter(|p| super::replicaset::available_for(p, min_ready))
        .count();
    let complete = updated == active.len() && active.len() as i64 == want;
    let current_revision = if complete {
        revision.clone()
    } else {
        let cur = o::str_at(sts, "/status/currentRevision");
        if cur.is_empty() {
            revision.clone()
        } else {
            cur.to_string()
        }
    };
    let current = active
        .iter()
        .filter(|p| o::str_at(p, "/metadata/labels/controller-revision-hash") == current_revision)
        .count();
    let status = json!({
        "observedGeneration": o::generation(sts), "replicas": active.len(), "readyReplicas": ready,
        "currentReplicas": current, "updatedReplicas": updated, "availableReplicas": available,
        "currentRevision": current_revision, "updateRevision": revision, "collisionCount": 0,
    });
    if sts.get("status") != Some(&status) {
        match o::update_status(c, MANAGER, "apps", "statefulsets", sts, |x| {
            x["status"] = status;
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("statefulset", sts, &e),
        }
    }
    changed
}

/// The claims of one ordinal, created when missing; never deleted with the pod.
fn ensure_claims(c: &Cluster, sts: &Value, i: i64) -> bool {
    let ns = meta::namespace(sts);
    let name = meta::name(sts);
    let mut changed = false;
    let templates = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in templates {
        let claim = format!("{}-{name}-{i}", meta::name(&t));
        if o::get(c, "", "persistentvolumeclaims", ns, &claim).is_some() {
            continue;
        }
        let mut labels = t
            .pointer("/metadata/labels")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        if let Some(ml) = sts
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
        {
            for (k, v) in ml {
                labels[k] = v.clone();
            }
        }
        let mut metadata = json!({"name": claim, "namespace": ns, "labels": labels});
        if let Some(a) = t.pointer("/metadata/annotations") {
            metadata["annotations"] = a.clone();
        }
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
                         "spec": t.get("spec").cloned().unwrap_or_else(|| json!({}))});
        match o::create(c, MANAGER, "", "persistentvolumeclaims", ns, pvc) {
            Ok(_) => changed = true,
            Err(e) if e.code == 409 => {}
            Err(e) => o::warn("statefulset", sts, &e),
        }
    }
    changed
}

fn pod(sts: &Value, template: &Value, i: i64, revision: &str) -> Value {
    let name = meta::name(sts);
    let pod_name = format!("{name}-{i}");
    let index = i.to_string();
    let labels = o::labels_with(
        template,
        &[
            ("controller-revision-hash", revision),
            ("statefulset.kubernetes.io/pod-name", &pod_name),
            ("apps.kubernetes.io/pod-index", &index),
        ],
    );
    let mut pod = o::pod_from_template(
        template,
        meta::namespace(sts),
        Some(&pod_name),
        "",
        labels,
        o::controller_ref(sts, "apps/v1", "StatefulSet"),
    );
    pod["spec"]["hostname"] = json!(pod_name);
    if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str)
        && !svc.is_empty()
    {
        pod["spec"]["subdomain"] = json!(svc);
    }
    // Each claim template becomes a volume of the same name bound to this ordinal's claim.
    let claims: Vec<Value> = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    let v = meta::name(t);
                    json!({"name": v, "persistentVolumeClaim": {"claimName": format!("{v}-{name}-{i}")}})
                })
                .collect()
        })
        .unwrap_or_default();
    if !claims.is_empty() {
        let mut volumes: Vec<Value> = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        volumes.retain(|v| !claims.iter().any(|c| c["name"] == v["name"]));
        volumes.extend(claims);
        pod["spec"]["volumes"] = json!(volumes);
    }
    pod
}
