//! The Endpoints and EndpointSlice controllers: for each Service with a selector, the pods it
//! selects that have an address, ready ones as addresses and the others as notReadyAddresses,
//! with each target port resolved (named target ports through the pod's container ports).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;
use crate::sandbox::selectors::LabelSelector;

const TRIGGER: &str = "endpoints.kubernetes.io/last-change-trigger-time";
const SLICE_MANAGER: &str = "endpointslice-controller.k8s.io";

/// The port a Service port reaches on a pod: a number, or a name looked up in the containers.
pub fn resolve_target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    match svc_port.get("targetPort") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            if let Ok(n) = name.parse() {
                return Some(n);
            }
            pod.pointer("/spec/containers")?
                .as_array()?
                .iter()
                .filter_map(|c| c.get("ports").and_then(Value::as_array))
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        _ => svc_port.get("port").and_then(Value::as_i64),
    }
}

fn target_ref(pod: &Value) -> Value {
    json!({"kind": "Pod", "namespace": meta::namespace(pod), "name": meta::name(pod), "uid": meta::uid(pod)})
}

pub fn pass(c: &Arc<Cluster>) -> bool {
    let mut changed = false;
    let services = o::list(c, "", "services");
    let pods = o::list(c, "", "pods");
    for svc in &services {
        if meta::is_deleting(svc) {
            continue;
        }
        let Some(sel) = svc
            .pointer("/spec/selector")
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        else {
            continue;
        };
        let selector = LabelSelector::from_object(&json!({"matchLabels": sel}));
        let ns = meta::namespace(svc);
        let selected: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| meta::namespace(p) == ns && selector.matches(p))
            .filter(|p| !o::str_at(p, "/status/podIP").is_empty())
            .filter(|p| !matches!(o::phase(p), "Succeeded" | "Failed"))
            .collect();
        changed |= endpoints(c, svc, &selected);
        changed |= slice(c, svc, &selected);
    }
    // Endpoints this controller wrote whose Service is gone.
    for ep in o::list(c, "", "endpoints") {
        let ours = ep
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(TRIGGER))
            .is_some();
        let has_service = services.iter().any(|s| {
            meta::namespace(s) == meta::namespace(&ep)
                && meta::name(s) == meta::name(&ep)
                && s.pointer("/spec/selector").is_some()
        });
        if ours && !has_service {
            changed |= o::delete(c, "", "endpoints", &ep, None).is_ok();
        }
    }
    changed
}

fn ports_for(svc: &Value, pod: &Value) -> Vec<Value> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let port = resolve_target_port(p, pod)?;
                    let mut out = json!({"port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                    if let Some(n) = p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                        out["name"] = json!(n);
                    }
                    if let Some(ap) = p.get("appProtocol") {
                        out["appProtocol"] = ap.clone();
                    }
                    Some(out)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One subset being built: its ports, ready addresses, not-ready addresses.
type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);

fn endpoints(c: &Cluster, svc: &Value, pods: &[&Arc<Value>]) -> bool {
    let ns = meta::namespace(svc);
    let name = meta::name(svc);
    let publish_not_ready = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        == Some(true);
    // Subsets group the addresses that share the same resolved ports.
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for p in pods.iter().filter(|p| !meta::is_deleting(p)) {
        let ports = ports_for(svc, p);
        let key = Value::Array(ports.clone()).to_string();
        let entry = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        let mut addr = json!({"ip": o::str_at(p, "/status/podIP"), "targetRef": target_ref(p)});
        let node = o::str_at(p, "/spec/nodeName");
        if !node.is_empty() {
            addr["nodeName"] = json!(node);
        }
        if o::is_ready(p) || publish_not_ready {
            entry.1.push(addr);
        } else {
            entry.2.push(addr);
        }
    }
    let subsets: Vec<Value> = groups
        .into_values()
        .map(|(ports, ready, not_ready)| {
            let mut s = json!({"ports": ports});
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    let labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    match o::get(c, "", "endpoints", ns, name) {
        None => {
            let mut ep = json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {TRIGGER: meta::now()}}});
            if !subsets.is_empty() {
                ep["subsets"] = json!(subsets);
            }
            o::create(c, "endpoint-controller", "", "endpoints", ns, ep).is_ok()
        }
        Some(ep) => {
            let current = ep.get("subsets").cloned().unwrap_or(json!([]));
            if current == json!(subsets) {
                return false;
            }
            o::update(c, "endpoint-controller", "", "endpoints", &ep, |x| {
                x["metadata"]["annotations"][TRIGGER] = json!(meta::now());
                if subsets.is_empty() {
                    if let Some(m) = x.as_object_mut() {
                        m.remove("subsets");
                    }
                } else {
                    x["subsets"] = json!(subsets);
                }
            })
            .is_ok()
        }
    }
}

fn slice(c: &Cluster, svc: &Value, pods: &[&Arc<Value>]) -> bool {
    let ns = meta::namespace(svc);
    let name = meta::name(svc);
    let ports = pods.first().map(|p| ports_for(svc, p)).unwrap_or_else(|| {
        svc.pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let mut out =
                            json!({"protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                        out["port"] = match p.get("targetPort") {
                            Some(Value::Number(n)) => json!(n),
                            _ => return None,
                        };
                        if let Some(n) = p
                            .get("name")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                        {
                            out["name"] = json!(n);
                        }
                        Some(out)
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    let mut endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let ready = o::is_ready(p) && !meta::is_deleting(p);
            let mut e = json!({"addresses": [o::str_at(p, "/status/podIP")],
                "conditions": {"ready": ready, "serving": o::is_ready(p), "terminating": meta::is_deleting(p)},
                "targetRef": target_ref(p)});
            let node = o::str_at(p, "/spec/nodeName");
            if !node.is_empty() {
                e["nodeName"] = json!(node);
            }
            e
        })
        .collect();
    endpoints.sort_by(|a, b| {
        a["addresses"][0]
            .to_string()
            .cmp(&b["addresses"][0].to_string())
    });
    let existing = o::list_in(c, "discovery.k8s.io", "endpointslices", ns)
        .into_iter()
        .find(|s| {
            o::str_at(s, "/metadata/labels/kubernetes.io~1service-name") == name
                && o::str_at(
                    s,
                    "/metadata/labels/endpointslice.kubernetes.io~1managed-by",
                ) == SLICE_MANAGER
        });
    match existing {
        None => {
            let mut labels = svc
                .pointer("/metadata/labels")
                .cloned()
                .filter(Value::is_object)
                .unwrap_or(json!({}));
            labels["kubernetes.io/service-name"] = json!(name);
            labels["endpointslice.kubernetes.io/managed-by"] = json!(SLICE_MANAGER);
            let s = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels,
                             "annotations": {TRIGGER: meta::now()},
                             "ownerReferences": [o::controller_ref(svc, "v1", "Service")]},
                "addressType": "IPv4", "endpoints": endpoints, "ports": ports});
            o::create(
                c,
                "endpointslice-controller",
                "discovery.k8s.io",
                "endpointslices",
                ns,
                s,
            )
            .is_ok()
        }
        Some(s) => {
            if s.get("endpoints").cloned().unwrap_or(json!([])) == json!(endpoints)
                && s.get("ports").cloned().unwrap_or(json!([])) == json!(ports)
            {
                return false;
            }
            o::update(
                c,
                "endpointslice-controller",
                "discovery.k8s.io",
                "endpointslices",
                &s,
                |x| {
                    x["metadata"]["annotations"][TRIGGER] = json!(meta::now());
                    x["endpoints"] = json!(endpoints);
                    x["ports"] = json!(ports);
                },
            )
            .is_ok()
        }
    }
}
