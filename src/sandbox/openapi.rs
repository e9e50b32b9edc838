//! OpenAPI v3: the root index and one document per group-version. Every kind gets PATCH/PUT/POST
//! operations carrying `fieldValidation`, `fieldManager`, `dryRun` (and `force` on PATCH), which is
//! how kubectl decides that the server validates. CRDs publish their `openAPIV3Schema`, so
//! `kubectl explain` works on them. Built-in kinds get an open schema (no strategic-merge content
//! type is advertised, so kubectl computes strategic patches from its compiled-in types).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::registry::{Registry, ResourceInfo};

fn reverse_group(group: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

/// The component name of a kind's schema (`io.k8s.api.core.v1.ConfigMap`, `dev.sovereign.v1alpha1.SovereignCluster`).
pub fn schema_name(r: &ResourceInfo) -> String {
    if r.is_custom() {
        return format!("{}.{}.{}", reverse_group(&r.group), r.version, r.kind);
    }
    let g = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.trim_end_matches(".k8s.io").replace('.', "")
    };
    let base = if r.group == "apiextensions.k8s.io" {
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string()
    } else {
        format!("io.k8s.api.{g}")
    };
    format!("{base}.{}.{}", r.version, r.kind)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(v: &Value) -> String {
    let mut h = Sha256::new();
    h.update(v.to_string().as_bytes());
    hex::encode_upper(&h.finalize()[..32])
}

fn object_meta_schema() -> Value {
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "annotations": {"description": "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata.", "type": "object", "additionalProperties": {"type": "string", "default": ""}},
            "creationTimestamp": {"description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "type": "string", "format": "date-time"},
            "deletionTimestamp": {"description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted.", "type": "string", "format": "date-time"},
            "finalizers": {"description": "Must be empty before the object is deleted from the registry.", "type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
            "generateName": {"description": "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided.", "type": "string"},
            "generation": {"description": "A sequence number representing a specific generation of the desired state.", "type": "integer", "format": "int64"},
            "labels": {"description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects.", "type": "object", "additionalProperties": {"type": "string", "default": ""}},
            "managedFields": {"description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow.", "type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "name": {"description": "Name must be unique within a namespace.", "type": "string"},
            "namespace": {"description": "Namespace defines the space within which each name must be unique.", "type": "string"},
            "ownerReferences": {"description": "List of objects depended by this object.", "type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
            "resourceVersion": {"description": "An opaque value that represents the internal version of this object.", "type": "string"},
            "uid": {"description": "UID is the unique in time and space value for this object.", "type": "string"}
        }
    })
}

fn kind_schema(r: &ResourceInfo) -> Value {
    let gvk = json!([{"group": r.group, "kind": r.kind, "version": r.version}]);
    let type_meta = |mut s: Value| {
        let props = s
            .as_object_mut()
            .map(|o| o.entry("properties").or_insert_with(|| json!({})));
        if let Some(Value::Object(p)) = props {
            p.insert("apiVersion".into(), json!({"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"}));
            p.insert("kind".into(), json!({"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"}));
            p.insert("metadata".into(), json!({"description": "Standard object's metadata.", "default": {}, "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}));
        }
        s["x-kubernetes-group-version-kind"] = gvk.clone();
        s
    };
    match r.custom.as_ref().and_then(|c| c.raw_schema.clone()) {
        Some(s) => type_meta(s),
        None => type_meta(json!({
            "description": format!("{} ({}).", r.kind, if r.group.is_empty() { "core/v1".to_string() } else { format!("{}/{}", r.group, r.version) }),
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })),
    }
}

fn param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        ),
    ];
    if patch {
        p.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    p
}

fn op(
    r: &ResourceInfo,
    action: &str,
    op_id: &str,
    params: Vec<Value>,
    body: Option<Value>,
) -> Value {
    let sref = json!({"$ref": format!("#/components/schemas/{}", schema_name(r))});
    let mut o = json!({
        "description": format!("{action} {}", r.kind),
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": sref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

/// The OpenAPI v3 document of one group-version.
pub fn gv_document(reg: &Registry, group: &str, version: &str, git_version: &str) -> Option<Value> {
    let rs: Vec<_> = reg
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        object_meta_schema(),
    );
    let prefix = format!("/{}", gv_path(group, version));
    for r in &rs {
        schemas.insert(schema_name(r), kind_schema(r));
        let sref = json!({"schema": {"$ref": format!("#/components/schemas/{}", schema_name(r))}});
        let coll = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let item = format!("{coll}/{{name}}");
        let id = format!("{}{}", r.kind, r.version);
        let json_body = json!({"content": {"application/json": sref, "application/yaml": sref}, "required": true});
        if r.is_virtual() {
            paths.insert(coll, json!({"post": op(r, "post", &format!("create{id}"), write_params(false), Some(json_body))}));
            continue;
        }
        let patch_body = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }, "required": true});
        paths.insert(
            coll.clone(),
            json!({
                "get": op(r, "list", &format!("list{id}"), vec![], None),
                "post": op(r, "post", &format!("create{id}"), write_params(false), Some(json_body.clone())),
                "delete": op(r, "deletecollection", &format!("deletecollection{id}"), vec![], None),
            }),
        );
        paths.insert(
            item.clone(),
            json!({
                "get": op(r, "get", &format!("read{id}"), vec![], None),
                "put": op(r, "put", &format!("replace{id}"), write_params(false), Some(json_body.clone())),
                "patch": op(r, "patch", &format!("patch{id}"), write_params(true), Some(patch_body.clone())),
                "delete": op(r, "delete", &format!("delete{id}"), vec![], None),
            }),
        );
        if r.status {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": op(r, "get", &format!("read{id}Status"), vec![], None),
                    "put": op(r, "put", &format!("replace{id}Status"), write_params(false), Some(json_body.clone())),
                    "patch": op(r, "patch", &format!("patch{id}Status"), write_params(true), Some(patch_body.clone())),
                }),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": git_version},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The root index, `{"paths": {"apis/g/v": {"serverRelativeURL": "/openapi/v3/apis/g/v?hash=H"}}}`.
pub fn root(reg: &Registry, git_version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in reg.groups() {
        for v in versions {
            if let Some(doc) = gv_document(reg, &group, &v, git_version) {
                let p = gv_path(&group, &v);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
                );
            }
        }
    }
    json!({"paths": paths})
}

/// The document for a path under `/openapi/v3/` and its hash.
pub fn document_for(reg: &Registry, rel: &str, git_version: &str) -> Option<(Value, String)> {
    let parts: Vec<&str> = rel.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let doc = gv_document(reg, group, version, git_version)?;
    let h = hash(&doc);
    Some((doc, h))
}
