//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the strategic merge patch of
//! built-in kinds (merge keys of the lists that matter, and the `$patch`, `$setElementOrder`,
//! `$retainKeys` and `$deleteFromPrimitiveList` directives). Server-side apply is in `apply`.

use serde_json::{Map, Value};

use super::errors::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Apply a merge, JSON or strategic patch to `target`.
pub fn apply_patch(ptype: PatchType, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    match ptype {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            Ok(merge_patch(target, patch))
        }
        PatchType::Json => json_patch(target, patch),
        PatchType::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(target, patch, "")
        }
        PatchType::Apply => Err(ApiError::internal(
            "apply patches are handled by server-side apply",
        )),
    }
}

/// RFC 7386.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let cur = out.get(k).cloned().unwrap_or(Value::Null);
            out.insert(k.clone(), merge_patch(&cur, v));
        }
    }
    Value::Object(out)
}

/// RFC 6902; a failing `test` or a bad path is a 422. As in the apiserver's json-patch library, a
/// `test` of a missing member against `null` succeeds: kube's finalizer helper relies on it when an
/// object has no finalizers yet.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = target.clone();
    for op in &ops.0 {
        if let json_patch::PatchOperation::Test(t) = op
            && t.value.is_null()
            && doc.pointer(t.path.as_str()).is_none_or(Value::is_null)
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(doc)
}

/// The merge key of a built-in list, from its field name (and its elements).
pub fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "hostAliases_" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some(if field == "volumeMounts" {
            "mountPath"
        } else {
            "devicePath"
        }),
        "ports" => match sample {
            Some(s) if s.get("containerPort").is_some() => Some("containerPort"),
            _ => Some("port"),
        },
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "tolerations" | "topologySpreadConstraints" => None,
        "hostAliases" => Some("ip"),
        "readinessGates" => Some("conditionType"),
        "resourceClaims" => Some("name"),
        "subsets" => None,
        _ => None,
    }
}

/// Primitive lists merged as sets (`patchStrategy: merge` on a list of strings).
fn is_merged_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

/// A strategic merge patch (the subset built-in clients send).
pub fn strategic_merge(target: &Value, patch: &Value, path: &str) -> Result<Value, ApiError> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut r = p.clone();
        r.remove("$patch");
        return Ok(Value::Object(r));
    }
    if p.get("$patch").and_then(Value::as_str) == Some("delete") {
        return Ok(Value::Null);
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    // $deleteFromPrimitiveList/<field>
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(cur)), Value::Array(del)) = (out.get_mut(field), v)
        {
            cur.retain(|x| !del.contains(x));
        }
    }
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        let child_path = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let cur = out.get(k).cloned().unwrap_or(Value::Null);
        let merged = match v {
            Value::Object(_) => {
                let m = strategic_merge(&cur, v, &child_path)?;
                if m.is_null() {
                    out.remove(k);
                    continue;
                }
                m
            }
            Value::Array(items) => {
                let order = p
                    .get(&format!("$setElementOrder/{k}"))
                    .and_then(Value::as_array);
                merge_list(k, &cur, items, order, &child_path)?
            }
            other => other.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(Value::Object(out))
}

fn merge_list(
    field: &str,
    cur: &Value,
    items: &[Value],
    order: Option<&Vec<Value>>,
    path: &str,
) -> Result<Value, ApiError> {
    let current: Vec<Value> = cur.as_array().cloned().unwrap_or_default();
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    if is_merged_primitive_list(field) {
        let mut out = current;
        for i in items {
            if !out.contains(i) {
                out.push(i.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    let sample = items.first().or(current.first());
    let Some(key) = merge_key(field, sample) else {
        // Atomic list: replaced.
        return Ok(Value::Array(items.to_vec()));
    };
    if !items.iter().all(Value::is_object) {
        return Ok(Value::Array(items.to_vec()));
    }
    let mut out = current;
    for item in items {
        let Some(kv) = item.get(key) else {
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = out.iter().position(|e| e.get(key) == Some(kv));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(pos) = pos {
                out.remove(pos);
            }
            continue;
        }
        match pos {
            Some(pos) => {
                let merged = strategic_merge(&out[pos], item, path)?;
                out[pos] = merged;
            }
            None => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                out.push(clean);
            }
        }
    }
    if let Some(order) = order {
        let keys: Vec<&Value> = order.iter().filter_map(|o| o.get(key)).collect();
        let mut ordered: Vec<Value> = Vec::new();
        for k in &keys {
            if let Some(e) = out.iter().find(|e| e.get(key) == Some(*k)) {
                ordered.push(e.clone());
            }
        }
        for e in &out {
            if !e.get(key).is_some_and(|k| keys.contains(&k)) {
                ordered.push(e.clone());
            }
        }
        out = ordered;
    }
    Ok(Value::Array(out))
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for c in m.values_mut() {
                strip_directives(c);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}
