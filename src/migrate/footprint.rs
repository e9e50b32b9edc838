//! What a workload uses — CPU and memory requests, volumes by class, load balancers — on the side
//! its objects describe: the input of the monthly run-rate.

use serde::Serialize;
use serde_json::Value;

use super::kind;
use super::plan::quantity_bytes;
use super::select::pod_spec;

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub cpu_cores: f64,
    pub memory_gib: f64,
    /// (storage class, GiB)
    pub volumes: Vec<(String, f64)>,
    pub load_balancers: u32,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn cpu_cores(q: &str) -> Option<f64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|m| m / 1000.0),
        None => q.parse::<f64>().ok(),
    }
}

/// The workload's usage from its objects, source or planned target (a planned workload is priced at
/// the replica count it gets back at cutover, not the zero it starts at). Claims without a class
/// use `default_class`.
pub fn usage(objects: &[Value], default_class: &str) -> Usage {
    let mut u = Usage::default();
    for o in objects {
        let replicas = match kind(o) {
            "Deployment" | "StatefulSet" => o["metadata"]["annotations"]
                [crate::api::workload::keys::REPLICAS]
                .as_str()
                .and_then(|r| r.parse::<f64>().ok())
                .or_else(|| o["spec"]["replicas"].as_f64())
                .unwrap_or(1.0),
            // A DaemonSet runs once per node, a Job and CronJob only for a while: counted once.
            "DaemonSet" | "Job" | "CronJob" | "Pod" => 1.0,
            _ => 0.0,
        };
        if let Some(spec) = pod_spec(o)
            && replicas > 0.0
        {
            for c in spec["containers"].as_array().into_iter().flatten() {
                let req = &c["resources"]["requests"];
                u.cpu_cores += replicas * req["cpu"].as_str().and_then(cpu_cores).unwrap_or(0.0);
                u.memory_gib += replicas
                    * req["memory"]
                        .as_str()
                        .and_then(quantity_bytes)
                        .map(|b| b as f64 / GIB)
                        .unwrap_or(0.0);
            }
        }
        match kind(o) {
            "PersistentVolumeClaim" => {
                let class = o["spec"]["storageClassName"]
                    .as_str()
                    .unwrap_or(default_class)
                    .to_string();
                let gib = o["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(quantity_bytes)
                    .map(|b| b as f64 / GIB)
                    .unwrap_or(0.0);
                u.volumes.push((class, gib));
            }
            "Service" if o["spec"]["type"] == "LoadBalancer" => u.load_balancers += 1,
            _ => {}
        }
    }
    u
}
