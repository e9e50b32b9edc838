//! Kubernetes protobuf request bodies (`k8s\0` + `runtime.Unknown`), decoded to JSON with a table
//! of field numbers and JSON names (from the upstream `generated.proto` files) for the kinds
//! kubectl's generators and auth commands send. A kind or a field not in the table is refused
//! with a 415 naming it, never silently dropped.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::errors::ApiError;

#[derive(Clone, Copy)]
enum K {
    Str,
    Bytes,
    Int,
    Bool,
    Msg(&'static str),
    MapStr,
    MapBytes,
    MapQuantity,
    Time,
    IntOrString,
}

/// (field number, JSON name, kind, repeated)
type Field = (u64, &'static str, K, bool);

fn fields(msg: &str) -> Option<&'static [Field]> {
    use K::*;
    Some(match msg {
        "TypeMeta" => &[(1, "apiVersion", Str, false), (2, "kind", Str, false)],
        "Unknown" => &[
            (1, "typeMeta", Msg("TypeMeta"), false),
            (2, "raw", Bytes, false),
            (3, "contentEncoding", Str, false),
            (4, "contentType", Str, false),
        ],
        "ObjectMeta" => &[
            (1, "name", Str, false),
            (2, "generateName", Str, false),
            (3, "namespace", Str, false),
            (4, "selfLink", Str, false),
            (5, "uid", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "generation", Int, false),
            (8, "creationTimestamp", Time, false),
            (9, "deletionTimestamp", Time, false),
            (10, "deletionGracePeriodSeconds", Int, false),
            (11, "labels", MapStr, false),
            (12, "annotations", MapStr, false),
            (13, "ownerReferences", Msg("OwnerReference"), true),
            (14, "finalizers", Str, true),
        ],
        "OwnerReference" => &[
            (1, "kind", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "controller", Bool, false),
            (7, "blockOwnerDeletion", Bool, false),
        ],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapStr, false),
            (3, "binaryData", MapBytes, false),
            (4, "immutable", Bool, false),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapBytes, false),
            (3, "type", Str, false),
            (4, "stringData", MapStr, false),
            (5, "immutable", Bool, false),
        ],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("NamespaceSpec"), false),
            (3, "status", Msg("Empty"), false),
        ],
        "NamespaceSpec" => &[(1, "finalizers", Str, true)],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "secrets", Msg("ObjectReference"), true),
            (3, "imagePullSecrets", Msg("LocalObjectReference"), true),
            (4, "automountServiceAccountToken", Bool, false),
        ],
        "ObjectReference" => &[
            (1, "kind", Str, false),
            (2, "namespace", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
        ],
        "LocalObjectReference" => &[(1, "name", Str, false)],
        "Deployment" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("DeploymentSpec"), false),
            (3, "status", Msg("Empty"), false),
        ],
        "DeploymentSpec" => &[
            (1, "replicas", Int, false),
            (2, "selector", Msg("LabelSelector"), false),
            (3, "template", Msg("PodTemplateSpec"), false),
            (4, "strategy", Msg("DeploymentStrategy"), false),
            (5, "minReadySeconds", Int, false),
            (6, "revisionHistoryLimit", Int, false),
            (7, "paused", Bool, false),
            (9, "progressDeadlineSeconds", Int, false),
        ],
        "DeploymentStrategy" => &[
            (1, "type", Str, false),
            (2, "rollingUpdate", Msg("RollingUpdateDeployment"), false),
        ],
        "RollingUpdateDeployment" => &[
            (1, "maxUnavailable", IntOrString, false),
            (2, "maxSurge", IntOrString, false),
        ],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr, false),
            (2, "matchExpressions", Msg("LabelSelectorRequirement"), true),
        ],
        "LabelSelectorRequirement" => &[
            (1, "key", Str, false),
            (2, "operator", Str, false),
            (3, "values", Str, true),
        ],
        "PodTemplateSpec" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("PodSpec"), false),
        ],
        "PodSpec" => &[
            (2, "containers", Msg("Container"), true),
            (3, "restartPolicy", Str, false),
            (4, "terminationGracePeriodSeconds", Int, false),
            (6, "dnsPolicy", Str, false),
            (7, "nodeSelector", MapStr, false),
            (8, "serviceAccountName", Str, false),
            (9, "serviceAccount", Str, false),
            (10, "nodeName", Str, false),
            (11, "hostNetwork", Bool, false),
            (12, "hostPID", Bool, false),
            (13, "hostIPC", Bool, false),
            (16, "hostname", Str, false),
            (17, "subdomain", Str, false),
            (19, "schedulerName", Str, false),
            (20, "initContainers", Msg("Container"), true),
            (24, "priorityClassName", Str, false),
            (27, "hostUsers", Bool, false),
        ],
        "Container" => &[
            (1, "name", Str, false),
            (2, "image", Str, false),
            (3, "command", Str, true),
            (4, "args", Str, true),
            (5, "workingDir", Str, false),
            (6, "ports", Msg("ContainerPort"), true),
            (7, "env", Msg("EnvVar"), true),
            (8, "resources", Msg("ResourceRequirements"), false),
            (13, "terminationMessagePath", Str, false),
            (14, "imagePullPolicy", Str, false),
            (16, "stdin", Bool, false),
            (17, "stdinOnce", Bool, false),
            (18, "tty", Bool, false),
            (20, "terminationMessagePolicy", Str, false),
        ],
        "ContainerPort" => &[
            (1, "name", Str, false),
            (2, "hostPort", Int, false),
            (3, "containerPort", Int, false),
            (4, "protocol", Str, false),
            (5, "hostIP", Str, false),
        ],
        "EnvVar" => &[(1, "name", Str, false), (2, "value", Str, false)],
        "ResourceRequirements" => &[
            (1, "limits", MapQuantity, false),
            (2, "requests", MapQuantity, false),
        ],
        "SelfSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectAccessReviewSpec"), false),
            (3, "status", Msg("Empty"), false),
        ],
        "SelfSubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (
                2,
                "nonResourceAttributes",
                Msg("NonResourceAttributes"),
                false,
            ),
        ],
        "ResourceAttributes" => &[
            (1, "namespace", Str, false),
            (2, "verb", Str, false),
            (3, "group", Str, false),
            (4, "version", Str, false),
            (5, "resource", Str, false),
            (6, "subresource", Str, false),
            (7, "name", Str, false),
        ],
        "NonResourceAttributes" => &[(1, "path", Str, false), (2, "verb", Str, false)],
        "SelfSubjectRulesReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectRulesReviewSpec"), false),
            (3, "status", Msg("Empty"), false),
        ],
        "SelfSubjectRulesReviewSpec" => &[(1, "namespace", Str, false)],
        "SelfSubjectReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "status", Msg("Empty"), false),
        ],
        "Empty" => &[],
        _ => return None,
    })
}

fn unsupported(what: String) -> ApiError {
    ApiError::unsupported_media_type(format!(
        "the sandbox cannot decode this protobuf body: {what}; send JSON instead"
    ))
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.i)
                .ok_or_else(|| unsupported("truncated varint".into()))?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(unsupported("varint too long".into()))
    }

    fn bytes(&mut self) -> Result<&[u8], ApiError> {
        let n =
            usize::try_from(self.varint()?).map_err(|_| unsupported("length overflow".into()))?;
        let end = self
            .i
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| unsupported("truncated field".into()))?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn skip(&mut self, wire: u64) -> Result<(), ApiError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => {
                self.i += 8;
                Ok(())
            }
            2 => self.bytes().map(|_| ()),
            5 => {
                self.i += 4;
                Ok(())
            }
            w => Err(unsupported(format!("wire type {w}"))),
        }
    }
}

fn string(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| unsupported("a string field is not UTF-8".into()))
}

/// Decode a map entry (`1: key`, `2: value`).
fn map_entry(b: &[u8]) -> Result<(String, Vec<u8>), ApiError> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), Vec::new());
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = string(r.bytes()?)?,
            (2, 2) => v = r.bytes()?.to_vec(),
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn decode_message(msg: &str, b: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let table = fields(msg).ok_or_else(|| unsupported(format!("message {msg}")))?;
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while r.i < b.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some(&(_, name, kind, repeated)) = table.iter().find(|f| f.0 == num) else {
            if msg == "Empty" {
                r.skip(wire)?;
                continue;
            }
            return Err(unsupported(format!("field {num} of {msg}")));
        };
        let value: Value = match kind {
            K::Int => {
                let v = r.varint()? as i64;
                json!(v)
            }
            K::Bool => json!(r.varint()? != 0),
            K::Str => json!(string(r.bytes()?)?),
            K::Bytes => json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
            K::Msg(m) => Value::Object(decode_message(m, r.bytes()?)?),
            K::Time => {
                let t = decode_time(r.bytes()?)?;
                match t {
                    Some(s) => json!(s),
                    None => continue,
                }
            }
            K::IntOrString => decode_int_or_string(r.bytes()?)?,
            K::MapStr | K::MapBytes | K::MapQuantity => {
                let (k, v) = map_entry(r.bytes()?)?;
                let v = match kind {
                    K::MapStr => json!(string(&v)?),
                    K::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(&v)),
                    _ => json!(decode_quantity(&v)?),
                };
                let m = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
        };
        if repeated {
            let a = out.entry(name).or_insert_with(|| json!([]));
            if let Some(a) = a.as_array_mut() {
                a.push(value);
            }
        } else {
            out.insert(name.to_string(), value);
        }
    }
    // gogo-protobuf writes non-pointer zero values; JSON's omitempty would not.
    out.retain(|k, v| match v {
        Value::String(s) => !s.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() != Some(0) || k == "replicas",
        Value::Object(o) => {
            !o.is_empty() || matches!(k.as_str(), "resources" | "spec" | "metadata")
        }
        _ => true,
    });
    Ok(out)
}

fn decode_quantity(b: &[u8]) -> Result<String, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut s = String::new();
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => s = string(r.bytes()?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(s)
}

fn decode_time(b: &[u8]) -> Result<Option<String>, ApiError> {
    let mut r = Reader { b, i: 0 };
    let mut secs: i64 = 0;
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => secs = r.varint()? as i64,
            (_, w) => r.skip(w)?,
        }
    }
    if secs == -62_135_596_800 || secs == 0 {
        return Ok(None);
    }
    Ok(jiff::Timestamp::from_second(secs)
        .ok()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn decode_int_or_string(b: &[u8]) -> Result<Value, ApiError> {
    let mut r = Reader { b, i: 0 };
    let (mut ty, mut iv, mut sv) = (0u64, 0i64, String::new());
    while r.i < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 0) => ty = r.varint()?,
            (2, 0) => iv = r.varint()? as i64,
            (3, 2) => sv = string(r.bytes()?)?,
            (_, w) => r.skip(w)?,
        }
    }
    Ok(if ty == 1 { json!(sv) } else { json!(iv) })
}

/// Decode a `k8s\0`-prefixed protobuf body to the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or_else(|| unsupported("missing the k8s protobuf magic".into()))?;
    let unknown = Value::Object(decode_message("Unknown", rest)?);
    let api_version = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| unsupported("raw is not bytes".into()))?;
    if fields(&kind).is_none() || kind == "Empty" {
        return Err(unsupported(format!("kind {kind} ({api_version})")));
    }
    let mut obj = decode_message(&kind, &raw)?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}
