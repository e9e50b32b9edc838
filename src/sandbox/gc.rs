//! The garbage collector and the namespace and CRD finalization controllers: owner-reference GC
//! (background, foreground with blockOwnerDeletion, orphan), namespace deletion, and CRD cleanup.
//! It runs as a task reacting to deletions, through the same in-process API as everything else.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::api::{Cluster, DeleteOptions, Propagation, Sub, WriteOptions};
use super::meta;
use super::registry::ResourceInfo;

/// Run until the cluster is dropped.
pub async fn run(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let woke = tokio::time::timeout(Duration::from_millis(500), c.gc_wakeup.notified()).await;
        // Let bursts of deletions settle into one pass.
        if woke.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Several passes: one deletion can unblock the next.
        for _ in 0..8 {
            if !pass(&c) {
                break;
            }
        }
        drop(c);
    }
}

fn all_objects(c: &Cluster) -> Vec<(Arc<ResourceInfo>, Arc<Value>)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for r in c.registry.all() {
        if r.is_virtual() || !seen.insert(r.qualified()) {
            continue;
        }
        let (items, _) = c.store.list(&r.qualified(), None);
        for o in items {
            out.push((r.clone(), o));
        }
    }
    out
}

fn owner_uids(o: &Value) -> Vec<(String, bool)> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some((
                        r.get("uid")?.as_str()?.to_string(),
                        r.get("blockOwnerDeletion")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn remove_finalizer(c: &Cluster, r: &Arc<ResourceInfo>, o: &Value, finalizer: &str) {
    let f = finalizer.to_string();
    let _ = c.write_existing(
        r,
        meta::namespace(o),
        meta::name(o),
        Sub::Main,
        &WriteOptions::default(),
        false,
        move |old| {
            let mut new = old.clone();
            let kept: Vec<String> = meta::finalizers(old)
                .into_iter()
                .filter(|x| *x != f)
                .collect();
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                if kept.is_empty() {
                    m.remove("finalizers");
                } else {
                    m.insert("finalizers".into(), json!(kept));
                }
            }
            Ok(new)
        },
    );
}

fn delete(c: &Cluster, r: &Arc<ResourceInfo>, o: &Value, propagation: Propagation) {
    let opts = DeleteOptions {
        propagation: Some(propagation),
        ..Default::default()
    };
    if let Err(e) = c.delete(r, meta::namespace(o), meta::name(o), &opts)
        && e.code != 404
    {
        tracing::warn!(object = meta::name(o), error = %e, "garbage collector could not delete");
    }
}

/// One pass; true if it changed anything.
fn pass(c: &Cluster) -> bool {
    let objects = all_objects(c);
    let uids: HashMap<String, usize> = objects
        .iter()
        .enumerate()
        .map(|(i, (_, o))| (meta::uid(o).to_string(), i))
        .collect();
    let mut changed = false;
    // Dependents by owner uid.
    let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        for (u, _) in owner_uids(o) {
            dependents.entry(u).or_default().push(i);
        }
    }
    for (r, o) in &objects {
        let uid = meta::uid(o).to_string();
        let deps = dependents.get(&uid).cloned().unwrap_or_default();
        if meta::is_deleting(o) {
            let finalizers = meta::finalizers(o);
            if finalizers.iter().any(|f| f == "orphan") {
                for &d in &deps {
                    let (dr, dobj) = &objects[d];
                    let owner = uid.clone();
                    let _ = c.write_existing(
                        dr,
                        meta::namespace(dobj),
                        meta::name(dobj),
                        Sub::Main,
                        &WriteOptions::default(),
                        false,
                        move |old| {
                            let mut new = old.clone();
                            if let Some(refs) = new
                                .pointer_mut("/metadata/ownerReferences")
                                .and_then(Value::as_array_mut)
                            {
                                refs.retain(|x| {
                                    x.get("uid").and_then(Value::as_str) != Some(owner.as_str())
                                });
                            }
                            if new
                                .pointer("/metadata/ownerReferences")
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.is_empty())
                                && let Some(m) =
                                    new.get_mut("metadata").and_then(Value::as_object_mut)
                            {
                                m.remove("ownerReferences");
                            }
                            Ok(new)
                        },
                    );
                }
                remove_finalizer(c, r, o, "orphan");
                changed = true;
            } else if finalizers.iter().any(|f| f == "foregroundDeletion") {
                let mut blocking = false;
                for &d in &deps {
                    let (dr, dobj) = &objects[d];
                    if !meta::is_deleting(dobj) {
                        delete(c, dr, dobj, Propagation::Foreground);
                        changed = true;
                    }
                    if owner_uids(dobj)
                        .iter()
                        .any(|(u, block)| *u == uid && *block)
                    {
                        blocking = true;
                    }
                }
                if !blocking {
                    remove_finalizer(c, r, o, "foregroundDeletion");
                    changed = true;
                }
            }
            if r.group.is_empty()
                && r.plural == "namespaces"
                && finalize_namespace(c, r, o, &objects)
            {
                changed = true;
            }
            if r.group == "apiextensions.k8s.io"
                && r.plural == "customresourcedefinitions"
                && finalize_crd(c, r, o)
            {
                changed = true;
            }
        }
        // Background: dependents whose every owner is gone are deleted.
        let refs = owner_uids(o);
        if !refs.is_empty()
            && !meta::is_deleting(o)
            && refs.iter().all(|(u, _)| !uids.contains_key(u))
        {
            delete(c, r, o, Propagation::Background);
            changed = true;
        }
    }
    changed
}

fn finalize_namespace(
    c: &Cluster,
    r: &Arc<ResourceInfo>,
    ns_obj: &Value,
    objects: &[(Arc<ResourceInfo>, Arc<Value>)],
) -> bool {
    let ns = meta::name(ns_obj).to_string();
    let mut remaining = 0;
    let mut changed = false;
    for (dr, o) in objects {
        if !dr.namespaced || meta::namespace(o) != ns {
            continue;
        }
        remaining += 1;
        if !meta::is_deleting(o) {
            delete(c, dr, o, Propagation::Background);
            changed = true;
        }
    }
    if remaining == 0 {
        let has_spec_finalizer = ns_obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_spec_finalizer {
            let _ = c.write_existing(
                r,
                "",
                &ns,
                Sub::Main,
                &WriteOptions::default(),
                false,
                |old| {
                    let mut new = old.clone();
                    new["spec"]["finalizers"] = json!([]);
                    Ok(new)
                },
            );
            changed = true;
        }
    }
    changed
}

fn finalize_crd(c: &Cluster, r: &Arc<ResourceInfo>, crd: &Value) -> bool {
    if !meta::finalizers(crd)
        .iter()
        .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
    {
        return false;
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let plural = crd
        .pointer("/spec/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = format!("{plural}.{group}");
    let res = c.registry.all().into_iter().find(|x| x.qualified() == key);
    let (items, _) = c.store.list(&key, None);
    if let Some(res) = &res {
        for o in &items {
            if !meta::is_deleting(o) {
                delete(c, res, o, Propagation::Background);
            }
        }
    }
    if items.is_empty() {
        c.registry.unregister_crd(meta::name(crd));
        remove_finalizer(c, r, crd, "customresourcecleanup.apiextensions.k8s.io");
    }
    true
}
