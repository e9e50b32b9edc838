//! The cloud load balancer (what a cloud-controller-manager does): each `type: LoadBalancer`
//! Service gets `status.loadBalancer.ingress[0].ip`, an address of the cluster's loopback block
//! unique to that Service; kube-proxy (`proxy`) then listens on it. A Service that stops being a
//! LoadBalancer loses its ingress.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Host;
use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "service-controller";

pub fn pass(c: &Arc<Cluster>, host: &Host) -> bool {
    let mut changed = false;
    for svc in o::list(c, "", "services") {
        if meta::is_deleting(&svc) {
            continue;
        }
        let is_lb = o::str_at(&svc, "/spec/type") == "LoadBalancer";
        let current = svc
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let want = if is_lb {
            let key = format!("{}/{}", meta::namespace(&svc), meta::name(&svc));
            vec![json!({"ip": host.net.balancer_ip(&key).to_string(), "ipMode": "VIP"})]
        } else {
            vec![]
        };
        if current == want {
            continue;
        }
        match o::update_status(c, MANAGER, "", "services", &svc, |x| {
            x["status"]["loadBalancer"] = if want.is_empty() {
                json!({})
            } else {
                json!({"ingress": want})
            };
        }) {
            Ok(_) => changed = true,
            Err(e) => o::warn("loadbalancer", &svc, &e),
        }
    }
    changed
}
