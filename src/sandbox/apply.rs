//! Server-side apply and field ownership: `metadata.managedFields` (FieldsV1), Apply and Update
//! managers, conflicts (with `force`), removal of fields an applier stops applying, and the
//! client-side → server-side apply migration rule for manager `kubectl`.
//!
//! List semantics: built-in lists follow their merge keys (containers by name, …; `finalizers` as a
//! set); CRD lists follow `x-kubernetes-list-type` / `x-kubernetes-list-map-keys`; other lists are atomic.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::api::{Cluster, Sub, WriteOptions, WriteResult, parse_body};
use super::errors::{ApiError, Cause};
use super::meta::{self, ensure_meta};
use super::patch::merge_key;
use super::registry::ResourceInfo;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A set of field paths; each path is a list of FieldsV1 keys (`f:spec`, `k:{"name":"x"}`, `v:"a"`, `.`).
pub type FieldSet = BTreeSet<Vec<String>>;

#[derive(Clone, Debug)]
enum ListType {
    Map(Vec<String>),
    Set,
    Atomic,
}

fn child_schema<'a>(schema: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    let s = schema?;
    s.get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

fn list_type(
    schema: Option<&Value>,
    custom: bool,
    field: &str,
    sample: Option<&Value>,
) -> ListType {
    if custom && let Some(s) = schema {
        return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => ListType::Map(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|k| k.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Some("set") => ListType::Set,
            _ => ListType::Atomic,
        };
    }
    if field == "finalizers" {
        return ListType::Set;
    }
    match merge_key(field, sample) {
        Some(k) => ListType::Map(vec![k.to_string()]),
        None => ListType::Atomic,
    }
}

fn key_of(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Context for walking an object alongside its schema.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    schema: Option<&'a Value>,
    custom: bool,
}

/// The fields an object (or applied configuration) sets.
fn fields_of(v: &Value, ctx: Ctx<'_>, prefix: &mut Vec<String>, out: &mut FieldSet) {
    let Value::Object(m) = v else {
        out.insert(prefix.clone());
        return;
    };
    if m.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
        return;
    }
    for (k, c) in m {
        if c.is_null() {
            continue;
        }
        prefix.push(format!("f:{k}"));
        let cs = child_schema(ctx.schema, k);
        field_child(
            c,
            Ctx {
                schema: cs,
                custom: ctx.custom,
            },
            k,
            prefix,
            out,
        );
        prefix.pop();
    }
}

fn field_child(c: &Value, ctx: Ctx<'_>, field: &str, prefix: &mut Vec<String>, out: &mut FieldSet) {
    match c {
        Value::Array(items) if !items.is_empty() => {
            match list_type(ctx.schema, ctx.custom, field, items.first()) {
                ListType::Map(keys) if items.iter().all(Value::is_object) => {
                    let item_schema = ctx.schema.and_then(|s| s.get("items"));
                    for it in items {
                        prefix.push(key_of(it, &keys));
                        prefix.push(".".into());
                        out.insert(prefix.clone());
                        prefix.pop();
                        fields_of(
                            it,
                            Ctx {
                                schema: item_schema,
                                custom: ctx.custom,
                            },
                            prefix,
                            out,
                        );
                        prefix.pop();
                    }
                }
                ListType::Set => {
                    for it in items {
                        prefix.push(format!("v:{it}"));
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                }
                _ => {
                    out.insert(prefix.clone());
                }
            }
        }
        Value::Object(_) => fields_of(c, ctx, prefix, out),
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// Strip what no manager owns (identity, server-set metadata) before computing field sets.
fn ownable(obj: &Value, sub: Option<&str>, status_sub: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if sub == Some("status") {
            m.retain(|k, _| k == "status");
        } else if status_sub {
            m.remove("status");
        }
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                md.remove(k);
            }
            if md.is_empty() {
                m.remove("metadata");
            }
        }
    }
    v
}

fn field_set(obj: &Value, res: &ResourceInfo, sub: Option<&str>) -> FieldSet {
    let schema = res.custom.as_ref().and_then(|c| c.raw_schema.as_ref());
    let mut out = FieldSet::new();
    fields_of(
        &ownable(obj, sub, res.status),
        Ctx {
            schema,
            custom: res.is_custom(),
        },
        &mut Vec::new(),
        &mut out,
    );
    out
}

/// FieldsV1 tree → set.
pub fn set_from_tree(tree: &Value) -> FieldSet {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, c) in m {
                    prefix.push(k.clone());
                    walk(c, prefix, out);
                    prefix.pop();
                }
            }
            _ => {
                if !prefix.is_empty() {
                    out.insert(prefix.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

/// Set → FieldsV1 tree.
pub fn tree_from_set(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for p in path {
            let e = cur.entry(p.clone()).or_insert_with(|| json!({}));
            let Value::Object(next) = e else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// A readable path: `.spec.containers[name="web"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let inner: Vec<String> = kv
                .as_object()
                .map(|m| m.iter().map(|(a, b)| format!("{a}={b}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(v) = p.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// The value at a field path, if set.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for p in path {
        if p == "." {
            return Some(cur);
        }
        if let Some(f) = p.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = p.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).ok()?;
            let km = kv.as_object()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|e| km.iter().all(|(a, b)| e.get(a) == Some(b)))?;
        } else if let Some(v) = p.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            return cur.as_array()?.iter().find(|e| **e == want);
        }
    }
    Some(cur)
}

/// Remove the field at a path (a list element for `k:…/.` and `v:…`).
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    if last == "." {
        let Some((elem, list_path)) = parent_path.split_last() else {
            return;
        };
        let Some(k) = elem.strip_prefix("k:") else {
            return;
        };
        let Ok(Value::Object(km)) = serde_json::from_str::<Value>(k) else {
            return;
        };
        if let Some(Value::Array(a)) = value_at_mut(obj, list_path) {
            a.retain(|e| !km.iter().all(|(x, y)| e.get(x) == Some(y)));
        }
        return;
    }
    if let Some(v) = last.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(v) else {
            return;
        };
        if let Some(Value::Array(a)) = value_at_mut(obj, parent_path) {
            a.retain(|e| *e != want);
        }
        return;
    }
    if let Some(f) = last.strip_prefix("f:")
        && let Some(Value::Object(m)) = value_at_mut(obj, parent_path)
    {
        m.remove(f);
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            cur = cur.get_mut(f)?;
        } else if let Some(k) = p.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).ok()?;
            let km = kv.as_object()?.clone();
            cur = cur
                .as_array_mut()?
                .iter_mut()
                .find(|e| km.iter().all(|(a, b)| e.get(a) == Some(b)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Merge an applied configuration into the live object, following list types.
fn merge(live: &Value, applied: &Value, ctx: Ctx<'_>) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    continue;
                }
                let cs = Ctx {
                    schema: child_schema(ctx.schema, k),
                    custom: ctx.custom,
                };
                let merged = merge_child(l.get(k), av, cs, k);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => applied.clone(),
    }
}

fn merge_child(lv: Option<&Value>, av: &Value, ctx: Ctx<'_>, field: &str) -> Value {
    match av {
        Value::Array(items) => {
            let live_items: Vec<Value> = lv.and_then(Value::as_array).cloned().unwrap_or_default();
            match list_type(
                ctx.schema,
                ctx.custom,
                field,
                items.first().or(live_items.first()),
            ) {
                ListType::Map(keys) if items.iter().all(Value::is_object) => {
                    let item_ctx = Ctx {
                        schema: ctx.schema.and_then(|s| s.get("items")),
                        custom: ctx.custom,
                    };
                    let mut out = live_items;
                    for it in items {
                        let k = key_of(it, &keys);
                        match out.iter().position(|e| key_of(e, &keys) == k) {
                            Some(p) => out[p] = merge(&out[p], it, item_ctx),
                            None => out.push(it.clone()),
                        }
                    }
                    Value::Array(out)
                }
                ListType::Set => {
                    let mut out = live_items;
                    for it in items {
                        if !out.contains(it) {
                            out.push(it.clone());
                        }
                    }
                    Value::Array(out)
                }
                _ => av.clone(),
            }
        }
        Value::Object(_) => merge(lv.unwrap_or(&json!({})), av, ctx),
        _ => av.clone(),
    }
}

#[derive(Clone, Debug)]
struct Entry {
    raw: Map<String, Value>,
    manager: String,
    operation: String,
    subresource: Option<String>,
    set: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_object())
                .map(|e| Entry {
                    raw: e.clone(),
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(String::from),
                    set: e.get("fieldsV1").map(set_from_tree).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut m = e.raw;
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), tree_from_set(&e.set));
            Value::Object(m)
        })
        .collect();
    let md = ensure_meta(obj);
    if list.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(list));
    }
}

fn new_entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    sub: Option<&str>,
    set: FieldSet,
) -> Entry {
    let mut raw = Map::new();
    raw.insert("manager".into(), json!(manager));
    raw.insert("operation".into(), json!(operation));
    raw.insert("apiVersion".into(), json!(api_version));
    raw.insert("time".into(), json!(meta::now()));
    if let Some(s) = sub {
        raw.insert("subresource".into(), json!(s));
    }
    Entry {
        raw,
        manager: manager.into(),
        operation: operation.into(),
        subresource: sub.map(String::from),
        set,
    }
}

/// Record a non-apply write (create, update, patch) by `manager`: the fields it changed become its
/// own (operation `Update`) and leave other managers; fields that disappeared leave every manager.
pub fn record_update(
    obj: &mut Value,
    old: Option<&Value>,
    manager: &str,
    res: &ResourceInfo,
    sub: Option<&str>,
) {
    // A client that rewrites managedFields explicitly (kubectl's CSA→SSA migration) is obeyed.
    if let Some(old) = old
        && obj.pointer("/metadata/managedFields") != old.pointer("/metadata/managedFields")
        && obj.pointer("/metadata/managedFields").is_some()
    {
        return;
    }
    let new_set = field_set(obj, res, sub);
    let old_set = old.map(|o| field_set(o, res, sub)).unwrap_or_default();
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) => !old_set.contains(*p) || value_at(o, p) != value_at(obj, p),
        })
        .cloned()
        .collect();
    let gone: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut es = old.map(entries).unwrap_or_default();
    for e in es.iter_mut() {
        e.set.retain(|p| !gone.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match es.iter_mut().find(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource.as_deref() == sub
        }) {
            Some(e) => {
                e.set.extend(changed);
                e.raw.insert("time".into(), json!(meta::now()));
                e.raw.insert("apiVersion".into(), json!(res.api_version()));
            }
            None => es.push(new_entry(
                manager,
                "Update",
                &res.api_version(),
                sub,
                changed,
            )),
        }
    }
    write_entries(obj, es);
}

/// PATCH with `application/apply-patch+yaml`.
pub fn server_side_apply(
    cluster: &Cluster,
    res: &Arc<ResourceInfo>,
    ns: &str,
    name: &str,
    body: &[u8],
    sub: Sub,
    opts: &WriteOptions,
) -> Result<WriteResult, ApiError> {
    let Some(manager) = opts.field_manager.clone().filter(|m| !m.is_empty()) else {
        return Err(ApiError::invalid_kind(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![Cause::new(
                "FieldValueRequired",
                "fieldManager",
                "Required value: is required for apply patch",
            )],
        ));
    };
    let applied = parse_body(body)?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration must be an object",
        ));
    }
    for (k, want) in [
        ("apiVersion", res.api_version()),
        ("kind", res.kind.clone()),
    ] {
        match applied.get(k).and_then(Value::as_str) {
            None | Some("") => {
                return Err(ApiError::bad_request(format!(
                    "{k} must be set in an apply configuration"
                )));
            }
            Some(v) if k == "kind" && v != want => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({v}) does not match the expected kind ({want})"
                )));
            }
            _ => {}
        }
    }
    let applied_name = meta::name(&applied);
    if !applied_name.is_empty() && applied_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    let sub_name = sub.name();
    let inner_opts = WriteOptions {
        field_manager: None,
        ..opts.clone()
    };
    let api_version = res.api_version();
    let ns_key = if res.namespaced { ns } else { "" };
    if sub == Sub::Main && cluster.store.get(&res.qualified(), ns_key, name).is_none() {
        let mut obj = applied.clone();
        {
            let md = ensure_meta(&mut obj);
            md.insert("name".into(), json!(name));
            md.remove("managedFields");
        }
        let set = field_set(&obj, res, None);
        write_entries(
            &mut obj,
            vec![new_entry(&manager, "Apply", &api_version, None, set)],
        );
        match cluster.create(res, ns, obj, &inner_opts) {
            Err(e) if e.reason == "AlreadyExists" => {}
            other => return other,
        }
    }
    let schema = res.custom.as_ref().and_then(|c| c.raw_schema.as_ref());
    let ctx = Ctx {
        schema,
        custom: res.is_custom(),
    };
    let force = opts.force;
    cluster.write_existing(res, ns, name, sub, &inner_opts, false, |live| {
        let applied_set = field_set(&applied, res, sub_name);
        let mut es = entries(live);
        let last_applied_set: Option<FieldSet> = if manager == "kubectl" {
            live.pointer("/metadata/annotations")
                .and_then(|a| a.get(LAST_APPLIED))
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .map(|la| field_set(&la, res, sub_name))
        } else {
            None
        };
        let mut conflicts: Vec<(String, Vec<String>)> = Vec::new();
        for e in &es {
            let mine = e.manager == manager
                && e.operation == "Apply"
                && e.subresource.as_deref() == sub_name;
            if mine || e.subresource.as_deref() != sub_name {
                continue;
            }
            for p in applied_set.intersection(&e.set) {
                if p.last().is_some_and(|l| l == ".") {
                    continue;
                }
                if value_at(live, p) != value_at(&applied, p) {
                    conflicts.push((e.manager.clone(), p.clone()));
                }
            }
        }
        let blocking: Vec<&(String, Vec<String>)> = conflicts
            .iter()
            .filter(|(_, p)| !last_applied_set.as_ref().is_some_and(|la| la.contains(p)))
            .collect();
        if !blocking.is_empty() && !force {
            return Err(conflict_error(&blocking, &api_version));
        }
        let taken: BTreeSet<&Vec<String>> = conflicts.iter().map(|(_, p)| p).collect();
        for e in es.iter_mut() {
            e.set.retain(|p| !taken.contains(p));
        }
        let prev: FieldSet = es
            .iter()
            .find(|e| {
                e.manager == manager
                    && e.operation == "Apply"
                    && e.subresource.as_deref() == sub_name
            })
            .map(|e| e.set.clone())
            .unwrap_or_default();
        let mut new = merge(live, &applied, ctx);
        let others: FieldSet = es
            .iter()
            .filter(|e| {
                !(e.manager == manager
                    && e.operation == "Apply"
                    && e.subresource.as_deref() == sub_name)
            })
            .flat_map(|e| e.set.iter().cloned())
            .collect();
        // Remove deepest paths first so list elements go after their fields.
        let mut removed: Vec<&Vec<String>> = prev
            .difference(&applied_set)
            .filter(|p| !others.contains(*p))
            .collect();
        removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in removed {
            // A field is only removed if nothing under it is still applied.
            if applied_set
                .iter()
                .any(|a| a.starts_with(p) && a.len() > p.len())
            {
                continue;
            }
            remove_at(&mut new, p);
        }
        es.retain(|e| {
            !(e.manager == manager
                && e.operation == "Apply"
                && e.subresource.as_deref() == sub_name)
        });
        es.push(new_entry(
            &manager,
            "Apply",
            &api_version,
            sub_name,
            applied_set,
        ));
        if let Some(anns) = new
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && anns.contains_key(LAST_APPLIED)
            && manager == "kubectl"
        {
            let mut la = applied.clone();
            if let Some(m) = la.get_mut("metadata").and_then(Value::as_object_mut)
                && let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut)
            {
                a.remove(LAST_APPLIED);
                if a.is_empty() {
                    m.remove("annotations");
                }
            }
            anns.insert(LAST_APPLIED.into(), json!(format!("{la}\n")));
        }
        // The stored resourceVersion is the live one: apply has no precondition unless it sets one.
        let applied_rv = meta::str_field(&applied, "resourceVersion").to_string();
        let md = ensure_meta(&mut new);
        md.remove("managedFields");
        if applied_rv.is_empty() {
            md.remove("resourceVersion");
        } else {
            md.insert("resourceVersion".into(), json!(applied_rv));
        }
        write_entries(&mut new, es);
        Ok(new)
    })
}

fn conflict_error(conflicts: &[&(String, Vec<String>)], api_version: &str) -> ApiError {
    let n = conflicts.len();
    let mut lines = Vec::new();
    let mut causes = Vec::new();
    for (m, p) in conflicts {
        let path = display_path(p);
        lines.push(format!("conflict with \"{m}\" using {api_version}: {path}"));
        causes.push(json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\" using {api_version}"), "field": path}));
    }
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(json!({"causes": causes}));
    e
}
