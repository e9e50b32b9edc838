//! CRD structural schemas: pruning of unknown fields, defaulting, and validation (types, required,
//! enum, bounds, lengths, item counts, patterns, a few formats, nullable), plus the CEL rules of
//! `x-kubernetes-validations` (transition rules with `oldSelf` included) through `kube-cel`.
//! Messages follow the real apiserver's wording.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use serde_json::{Map, Value};

use super::errors::Cause;

/// A CRD version's `openAPIV3Schema`, with its CEL rules compiled once.
pub struct CompiledCrdSchema {
    pub raw: Value,
    cel: kube_cel::CompiledSchema,
    /// CEL rule text → the schema type of the node that carries it ("object", "string", …).
    rule_types: HashMap<String, String>,
    patterns: Mutex<HashMap<String, Option<Regex>>>,
}

impl std::fmt::Debug for CompiledCrdSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCrdSchema").finish_non_exhaustive()
    }
}

thread_local! {
    static VALIDATOR: RefCell<Option<kube_cel::Validator>> = const { RefCell::new(None) };
}

fn collect_rule_types(s: &Value, out: &mut HashMap<String, String>) {
    let Some(obj) = s.as_object() else { return };
    if let Some(rules) = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_string();
        for r in rules {
            if let Some(rule) = r.get("rule").and_then(Value::as_str) {
                out.entry(rule.to_string()).or_insert_with(|| ty.clone());
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for p in props.values() {
            collect_rule_types(p, out);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(c) = obj.get(k) {
            collect_rule_types(c, out);
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Go's `%v` of a float64 bound: `0`, `0.5`, `100`.
fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn preserves_unknown(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

impl CompiledCrdSchema {
    pub fn new(raw: Value) -> Self {
        let cel = kube_cel::compile_schema(&raw);
        let mut rule_types = HashMap::new();
        collect_rule_types(&raw, &mut rule_types);
        CompiledCrdSchema {
            raw,
            cel,
            rule_types,
            patterns: Mutex::new(HashMap::new()),
        }
    }

    /// Prune unknown fields (returned as paths like `spec.bogus`), drop nulls of non-nullable
    /// fields, and apply `default`s. `apiVersion`, `kind` and `metadata` at the root are kept.
    pub fn prune_and_default(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune_default(&self.raw, obj, "", true, &mut unknown);
        unknown
    }

    /// Structural validation: types, required, enum, bounds, lengths, item counts, patterns, formats.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        self.validate_node(&self.raw, obj, "", true, &mut causes);
        causes
    }

    fn pattern_matches(&self, pattern: &str, s: &str) -> bool {
        let mut cache = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
        let re = cache
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).ok());
        match re {
            Some(re) => re.is_match(s),
            // A pattern Go accepts but Rust's regex does not: do not refuse the object for it.
            None => true,
        }
    }

    fn validate_node(&self, s: &Value, v: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
        let Some(sch) = s.as_object() else { return };
        if v.is_null() {
            return;
        }
        let int_or_string = sch
            .get("x-kubernetes-int-or-string")
            .and_then(Value::as_bool)
            == Some(true);
        if let Some(ty) = sch.get("type").and_then(Value::as_str) {
            let actual = json_type_name(v);
            let ok = match ty {
                "number" => matches!(actual, "number" | "integer"),
                t => t == actual,
            } || (int_or_string && matches!(actual, "integer" | "string"));
            if !ok {
                out.push(Cause::new(
                    "FieldValueTypeInvalid",
                    path,
                    format!("Invalid value: \"{actual}\": {path} in body must be of type {ty}: \"{actual}\""),
                ));
                return;
            }
        }
        if let Some(en) = sch.get("enum").and_then(Value::as_array)
            && !en.contains(v)
        {
            let supported: Vec<String> = en.iter().map(fmt_value).collect();
            out.push(Cause::new(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    fmt_value(v),
                    supported.join(", ")
                ),
            ));
        }
        match v {
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                let excl_min = sch.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
                let excl_max = sch.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
                if let Some(min) = sch.get("minimum").and_then(Value::as_f64)
                    && ((excl_min && x <= min) || (!excl_min && x < min))
                {
                    let rel = if excl_min {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should be {rel} {}",
                            fmt_num(min)
                        ),
                    ));
                }
                if let Some(max) = sch.get("maximum").and_then(Value::as_f64)
                    && ((excl_max && x >= max) || (!excl_max && x > max))
                {
                    let rel = if excl_max {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should be {rel} {}",
                            fmt_num(max)
                        ),
                    ));
                }
                if let Some(m) = sch.get("multipleOf").and_then(Value::as_f64)
                    && m != 0.0
                    && (x / m).fract() != 0.0
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should be a multiple of {}",
                            fmt_num(m)
                        ),
                    ));
                }
            }
            Value::String(st) => {
                let len = st.chars().count() as u64;
                if let Some(max) = sch.get("maxLength").and_then(Value::as_u64)
                    && len > max
                {
                    out.push(Cause::new(
                        "FieldValueTooLong",
                        path,
                        format!("Too long: may not be more than {max} bytes"),
                    ));
                }
                if let Some(min) = sch.get("minLength").and_then(Value::as_u64)
                    && len < min
                {
                    out.push(Cause::new("FieldValueInvalid", path, format!("Invalid value: {st:?}: {path} in body should be at least {min} chars long")));
                }
                if let Some(p) = sch.get("pattern").and_then(Value::as_str)
                    && !self.pattern_matches(p, st)
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!("Invalid value: {st:?}: {path} in body should match '{p}'"),
                    ));
                }
                if let Some(f) = sch.get("format").and_then(Value::as_str)
                    && !format_ok(f, st)
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {st:?}: {path} in body must be of type {f}: {st:?}"
                        ),
                    ));
                }
            }
            Value::Array(items) => {
                let n = items.len() as u64;
                if let Some(max) = sch.get("maxItems").and_then(Value::as_u64)
                    && n > max
                {
                    out.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {n}: must have at most {max} items"),
                    ));
                }
                if let Some(min) = sch.get("minItems").and_then(Value::as_u64)
                    && n < min
                {
                    out.push(Cause::new(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {n}: {path} in body should have at least {min} items"
                        ),
                    ));
                }
                let list_type = sch.get("x-kubernetes-list-type").and_then(Value::as_str);
                if list_type == Some("set") {
                    for (i, it) in items.iter().enumerate() {
                        if items[..i].contains(it) {
                            out.push(Cause::new(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {}", fmt_value(it)),
                            ));
                        }
                    }
                }
                if list_type == Some("map") {
                    let keys: Vec<&str> = sch
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let key_of = |it: &Value| {
                        keys.iter()
                            .map(|k| it.get(*k).cloned().unwrap_or(Value::Null))
                            .collect::<Vec<_>>()
                    };
                    for (i, it) in items.iter().enumerate() {
                        let k = key_of(it);
                        if items[..i].iter().any(|o| key_of(o) == k) {
                            let shown: Map<String, Value> = keys
                                .iter()
                                .zip(k.iter())
                                .map(|(a, b)| (a.to_string(), b.clone()))
                                .collect();
                            out.push(Cause::new(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {}", Value::Object(shown)),
                            ));
                        }
                    }
                }
                if let Some(is) = sch.get("items") {
                    for (i, it) in items.iter().enumerate() {
                        self.validate_node(is, it, &format!("{path}[{i}]"), false, out);
                    }
                }
            }
            Value::Object(m) => {
                if let Some(req) = sch.get("required").and_then(Value::as_array) {
                    for r in req.iter().filter_map(Value::as_str) {
                        if m.get(r).is_none_or(Value::is_null) {
                            out.push(Cause::new(
                                "FieldValueRequired",
                                &join(path, r),
                                "Required value",
                            ));
                        }
                    }
                }
                if let Some(max) = sch.get("maxProperties").and_then(Value::as_u64)
                    && m.len() as u64 > max
                {
                    out.push(Cause::new(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", m.len()),
                    ));
                }
                if let Some(min) = sch.get("minProperties").and_then(Value::as_u64)
                    && (m.len() as u64) < min
                {
                    out.push(Cause::new("FieldValueInvalid", path, format!("Invalid value: {}: {path} in body should have at least {min} properties", m.len())));
                }
                let props = sch.get("properties").and_then(Value::as_object);
                for (k, child) in m {
                    if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
                        continue;
                    }
                    let cp = join(path, k);
                    match props.and_then(|p| p.get(k)) {
                        Some(cs) => self.validate_node(cs, child, &cp, false, out),
                        None => {
                            if let Some(ap) =
                                sch.get("additionalProperties").filter(|a| a.is_object())
                            {
                                self.validate_node(ap, child, &format!("{path}[{k}]"), false, out);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// The CEL rules, evaluated on the (defaulted) object, with `oldSelf` bound on updates.
    pub fn validate_cel(
        &self,
        obj: &Value,
        old: Option<&Value>,
        api_version: &str,
        group: &str,
        kind: &str,
    ) -> Vec<Cause> {
        let ctx = kube_cel::RootContext {
            api_version: api_version.to_string(),
            api_group: group.to_string(),
            kind: kind.to_string(),
        };
        let result = VALIDATOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let validator = slot.get_or_insert_with(kube_cel::Validator::new);
            validator.validate_compiled_with_context(&self.cel, obj, old, Some(&ctx))
        });
        let Err(errors) = result else { return vec![] };
        errors
            .into_vec()
            .into_iter()
            .map(|e| {
                let ty = self
                    .rule_types
                    .get(&e.rule)
                    .cloned()
                    .unwrap_or_else(|| "object".to_string());
                let field = if e.field_path.is_empty() {
                    "<nil>".to_string()
                } else {
                    e.field_path.clone()
                };
                match e.kind {
                    kube_cel::ErrorKind::ValidationFailure => {
                        let reason = e
                            .reason
                            .clone()
                            .unwrap_or_else(|| "FieldValueInvalid".to_string());
                        let message = match reason.as_str() {
                            "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                            "FieldValueRequired" => format!("Required value: {}", e.message),
                            "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
                            _ => format!("Invalid value: \"{ty}\": {}", e.message),
                        };
                        Cause {
                            reason,
                            message,
                            field,
                        }
                    }
                    // Fail loudly: a rule the sandbox cannot evaluate refuses the object.
                    _ => Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!("Invalid value: \"{ty}\": {}", e.message),
                        field,
                    },
                }
            })
            .collect()
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => s.parse::<jiff::Timestamp>().is_ok(),
        "date" => s.parse::<jiff::civil::Date>().is_ok(),
        "uuid" => s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

fn prune_default(s: &Value, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    let Some(sch) = s.as_object() else { return };
    match v {
        Value::Object(m) => {
            let props = sch.get("properties").and_then(Value::as_object);
            let additional = sch.get("additionalProperties");
            let embedded = sch
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let preserve =
                preserves_unknown(s) || additional.is_some_and(|a| a == &Value::Bool(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let keep_meta =
                    (root || embedded) && (k == "apiVersion" || k == "kind" || k == "metadata");
                if keep_meta {
                    continue;
                }
                let child_schema = props
                    .and_then(|p| p.get(&k))
                    .or_else(|| additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(cs) => {
                        let nullable = cs.get("nullable").and_then(Value::as_bool) == Some(true);
                        if m.get(&k).is_some_and(Value::is_null) && !nullable {
                            if let Some(d) = cs.get("default") {
                                m.insert(k.clone(), d.clone());
                            } else {
                                m.remove(&k);
                            }
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
            if let Some(p) = props {
                for (k, cs) in p {
                    if !m.contains_key(k)
                        && let Some(d) = cs.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if (root || embedded) && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let child_schema = props
                    .and_then(|p| p.get(&k))
                    .or_else(|| additional.filter(|a| a.is_object()));
                if let (Some(cs), Some(child)) = (child_schema, m.get_mut(&k)) {
                    let cp = if props.is_some_and(|p| p.contains_key(&k)) {
                        join(path, &k)
                    } else {
                        format!("{path}[{k}]")
                    };
                    prune_default(cs, child, &cp, false, unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = sch.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    prune_default(is, it, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}
