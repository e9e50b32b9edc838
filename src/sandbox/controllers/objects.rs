//! Helpers the simulated controllers share: reading objects from the store, writing them through
//! the in-process API under a controller's field manager, owner references, pod predicates.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::sandbox::api::{Cluster, DeleteOptions, Sub, WriteOptions};
use crate::sandbox::errors::ApiError;
use crate::sandbox::meta;
use crate::sandbox::registry::ResourceInfo;
use crate::sandbox::selectors::LabelSelector;

/// The resource a controller writes, by group and plural (always registered for built-ins).
pub fn resource(c: &Cluster, group: &str, plural: &str) -> Result<Arc<ResourceInfo>, ApiError> {
    c.resource(group, plural)
        .ok_or_else(|| ApiError::internal(format!("the sandbox does not serve {plural}.{group}")))
}

fn store_key(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// Every stored object of a resource, in all namespaces.
pub fn list(c: &Cluster, group: &str, plural: &str) -> Vec<Arc<Value>> {
    c.store.list(&store_key(group, plural), None).0
}

/// Stored objects of a resource in one namespace.
pub fn list_in(c: &Cluster, group: &str, plural: &str, ns: &str) -> Vec<Arc<Value>> {
    c.store.list(&store_key(group, plural), Some(ns)).0
}

pub fn get(c: &Cluster, group: &str, plural: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
    c.store.get(&store_key(group, plural), ns, name)
}

fn options(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: Some(manager.to_string()),
        ..Default::default()
    }
}

/// Create an object as the named controller.
pub fn create(
    c: &Cluster,
    manager: &str,
    group: &str,
    plural: &str,
    ns: &str,
    obj: Value,
) -> Result<Arc<Value>, ApiError> {
    let res = resource(c, group, plural)?;
    Ok(c.create(&res, ns, obj, &options(manager))?.object)
}

/// Rewrite the main object (spec, metadata) of an existing object; no write when unchanged.
pub fn update(
    c: &Cluster,
    manager: &str,
    group: &str,
    plural: &str,
    obj: &Value,
    f: impl FnOnce(&mut Value),
) -> Result<Arc<Value>, ApiError> {
    write(c, manager, group, plural, obj, Sub::Main, f)
}

/// Rewrite the status of an existing object through its status subresource.
pub fn update_status(
    c: &Cluster,
    manager: &str,
    group: &str,
    plural: &str,
    obj: &Value,
    f: impl FnOnce(&mut Value),
) -> Result<Arc<Value>, ApiError> {
    write(c, manager, group, plural, obj, Sub::Status, f)
}

fn write(
    c: &Cluster,
    manager: &str,
    group: &str,
    plural: &str,
    obj: &Value,
    sub: Sub,
    f: impl FnOnce(&mut Value),
) -> Result<Arc<Value>, ApiError> {
    let res = resource(c, group, plural)?;
    let r = c.write_existing(
        &res,
        meta::namespace(obj),
        meta::name(obj),
        sub,
        &options(manager),
        false,
        |old| {
            let mut new = old.clone();
            f(&mut new);
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(new)
        },
    )?;
    Ok(r.object)
}

/// Delete an object (404 is success: someone else got there first).
pub fn delete(
    c: &Cluster,
    group: &str,
    plural: &str,
    obj: &Value,
    grace_period: Option<i64>,
) -> Result<(), ApiError> {
    let res = resource(c, group, plural)?;
    let opts = DeleteOptions {
        grace_period,
        ..Default::default()
    };
    match c.delete(&res, meta::namespace(obj), meta::name(obj), &opts) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Log a failed write once per pass; the next pass retries (controllers are level-triggered).
pub fn warn(controller: &str, obj: &Value, e: &ApiError) {
    if e.code == 409 || e.code == 404 {
        // Raced with another writer: the next pass sees the new state.
        tracing::debug!(controller, object = meta::name(obj), error = %e, "write raced");
    } else {
        tracing::warn!(controller, object = meta::name(obj), error = %e, "simulated controller write failed");
    }
}

/// Records a core/v1 Event about `regarding`, as `component` does: one per distinct reason and
/// message (a repeat is not recorded again). True when an Event was written.
pub fn event(
    c: &Cluster,
    component: &str,
    regarding: &Value,
    type_: &str,
    reason: &str,
    message: &str,
) -> bool {
    use sha2::{Digest, Sha256};
    let id = hex::encode(
        &Sha256::digest(format!("{}\0{reason}\0{message}", meta::uid(regarding)).as_bytes())[..8],
    );
    let ns = meta::namespace(regarding);
    let name = format!("{}.{id}", meta::name(regarding));
    if get(c, "", "events", ns, &name).is_some() {
        return false;
    }
    let now = meta::now();
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"apiVersion": regarding.get("apiVersion").cloned().unwrap_or(json!("v1")),
                           "kind": regarding.get("kind").cloned().unwrap_or_default(),
                           "namespace": ns, "name": meta::name(regarding), "uid": meta::uid(regarding),
                           "resourceVersion": str_at(regarding, "/metadata/resourceVersion")},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": "",
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    match create(c, component, "", "events", ns, ev) {
        Ok(_) => true,
        Err(e) => {
            warn(component, regarding, &e);
            false
        }
    }
}

/// An ownerReference with controller=true, as controllers set on what they create.
pub fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": meta::name(owner), "uid": meta::uid(owner),
           "controller": true, "blockOwnerDeletion": true})
}

/// The uid of the object's controller, if any.
pub fn controller_uid(o: &Value) -> Option<&str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// The kind of the object's controller, if any.
pub fn controller_kind(o: &Value) -> Option<&str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("kind")?
        .as_str()
}

/// Objects of `items` controlled by `owner`.
pub fn owned_by<'a>(items: &'a [Arc<Value>], owner: &Value) -> Vec<&'a Arc<Value>> {
    let uid = meta::uid(owner);
    items
        .iter()
        .filter(|o| controller_uid(o) == Some(uid))
        .collect()
}

pub fn i64_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

pub fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

pub fn generation(o: &Value) -> i64 {
    i64_at(o, "/metadata/generation").unwrap_or(1)
}

/// Whether a workload's label selector matches a pod.
pub fn selects(owner: &Value, pod: &Value) -> bool {
    let Some(sel) = owner.pointer("/spec/selector") else {
        return false;
    };
    let s = LabelSelector::from_object(sel);
    !s.is_empty() && s.matches(pod)
}

pub fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

/// Neither finished nor being deleted: the pods a workload counts as its own running ones.
pub fn is_active(pod: &Value) -> bool {
    !meta::is_deleting(pod) && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_ready(pod: &Value) -> bool {
    condition_true(pod, "Ready")
}

pub fn condition_true(o: &Value, ty: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ty)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// A pod's labels, merged with extra ones.
pub fn labels_with(template: &Value, extra: &[(&str, &str)]) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    for (k, v) in extra {
        labels[*k] = json!(v);
    }
    labels
}

/// A pod from a workload's template: its labels and annotations, the given name (or generateName)
/// and controller reference.
pub fn pod_from_template(
    template: &Value,
    ns: &str,
    name: Option<&str>,
    generate_name: &str,
    labels: Value,
    owner_ref: Value,
) -> Value {
    let mut metadata = json!({"namespace": ns, "labels": labels, "ownerReferences": [owner_ref]});
    match name {
        Some(n) => metadata["name"] = json!(n),
        None => metadata["generateName"] = json!(generate_name),
    }
    if let Some(a) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// A hash of a pod template as the controllers name revisions: a 32-bit FNV-1a over the
/// template's JSON, its decimal digits mapped onto the alphabet of `rand.SafeEncodeString`.
pub fn template_hash(template: &Value) -> String {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove("pod-template-hash");
        l.remove("controller-revision-hash");
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in t.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHANUMS[usize::from(d) % ALPHANUMS.len()] as char)
        .collect()
}

/// Set a condition, keeping lastTransitionTime when the status did not change.
pub fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    crate::sandbox::api::set_condition(obj, ty, status, reason, message);
}

/// Remove fields whose value is JSON null from a status object (real controllers omit zeros
/// that are `omitempty`; nulls would just be noise).
pub fn strip_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hash_ignores_its_own_label_and_changes_with_the_template() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut b = a.clone();
        b["metadata"]["labels"]["pod-template-hash"] = json!("zzz");
        assert_eq!(template_hash(&a), template_hash(&b));
        let mut c = a.clone();
        c["spec"]["containers"][0]["image"] = json!("x:2");
        assert_ne!(template_hash(&a), template_hash(&c));
        assert!(
            template_hash(&a)
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
    }
}
