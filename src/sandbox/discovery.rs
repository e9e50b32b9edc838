//! Discovery: aggregated (`apidiscovery.k8s.io` v2 and v2beta1) and legacy (`/api`, `/apis`,
//! `/api/v1`, `/apis/{g}`, `/apis/{g}/{v}`).

use serde_json::{Value, json};

use super::registry::{Registry, ResourceInfo};

fn gv(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn subresource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut subs = Vec::new();
    let kind = json!({"group": r.group, "version": r.version, "kind": r.kind});
    if r.status {
        subs.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
    }
    for e in &r.extra_subresources {
        let (k, verbs) = match e.as_str() {
            "log" => (
                json!({"group": "", "version": "v1", "kind": "Pod"}),
                json!(["get"]),
            ),
            "token" => (
                json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
                json!(["create"]),
            ),
            "finalize" => (kind.clone(), json!(["update"])),
            "binding" => (
                json!({"group": "", "version": "v1", "kind": "Binding"}),
                json!(["create"]),
            ),
            "eviction" => (
                json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
                json!(["create"]),
            ),
            _ => continue,
        };
        subs.push(json!({"subresource": e, "responseKind": k, "verbs": verbs}));
    }
    subs
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let subs = subresource_entries(r);
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// The aggregated document for `/api` (core) or `/apis` (every other group).
pub fn aggregated(reg: &Registry, core: bool, api_version: &str) -> Value {
    let all = reg.all();
    let mut items = Vec::new();
    for (group, versions) in reg.groups() {
        if group.is_empty() != core {
            continue;
        }
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = all
                    .iter()
                    .filter(|r| r.group == group && &r.version == v)
                    .map(|r| aggregated_resource(r))
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let mut md = json!({"creationTimestamp": null});
        if !core {
            md["name"] = json!(group);
        }
        items.push(json!({"metadata": md, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{api_version}"), "metadata": {}, "items": items})
}

pub fn legacy_api(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": gv(group, v), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

pub fn legacy_apis(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(&g, &v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let (g, v) = reg.groups().into_iter().find(|(g, _)| g == group)?;
    let mut e = group_entry(&g, &v);
    e["kind"] = json!("APIGroup");
    e["apiVersion"] = json!("v1");
    Some(e)
}

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<_> = reg
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &rs {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for s in subresource_entries(r) {
            let rk = &s["responseKind"];
            let mut se = json!({
                "name": format!("{}/{}", r.plural, s["subresource"].as_str().unwrap_or_default()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": rk["kind"],
                "verbs": s["verbs"],
            });
            if rk["group"] != json!(r.group) || rk["version"] != json!(r.version) {
                se["group"] = rk["group"].clone();
                se["version"] = rk["version"].clone();
            }
            resources.push(se);
        }
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv(group, version), "resources": resources}),
    )
}
