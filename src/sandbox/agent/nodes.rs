//! The Nodes of the cluster's provider profile, as their kubelets keep them: registered with the
//! profile's labels and providerID, a status (capacity, conditions, addresses, the kubelet's
//! port, node info) posted at start and every minute, and a Lease in `kube-node-lease` renewed
//! every 10 seconds (what the node lifecycle controller watches: without it the nodes turn
//! `Unknown` and their pods are evicted). Each node's only address is its loopback address:
//! that is where its pods and its kubelet API really are.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Host;
use crate::sandbox::profiles::NodeSpec;

const MANAGER: &str = "kubelet";
/// The port of every node's kubelet API (on the node's own address).
pub const KUBELET_PORT: u16 = 10250;
const LEASE_SECONDS: i32 = 40;
const RENEW: Duration = Duration::from_secs(10);
const STATUS_EVERY: u32 = 6;

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// The Node object as its kubelet registers it.
fn registration(spec: &NodeSpec) -> Value {
    let mut n = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec.name, "labels": spec.labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
    });
    if let Some(p) = &spec.provider_id {
        n["spec"] = json!({"providerID": p});
    }
    n
}

/// A stable 32-hex identifier derived from a name (machine-id style).
fn machine_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

/// The status a kubelet posts: capacity, healthy conditions, the node's address, its kubelet
/// port, what runs it.
pub fn status(spec: &NodeSpec, ip: &str, transition: &str) -> Value {
    let cond = |t: &str, s: &str, reason: &str, message: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": message,
               "lastHeartbeatTime": now(), "lastTransitionTime": transition})
    };
    let capacity = json!({"cpu": spec.cpu, "memory": spec.memory, "pods": "110", "ephemeral-storage": "83873772Ki"});
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name},
        "status": {
            "capacity": capacity,
            "allocatable": {"cpu": spec.cpu, "memory": spec.memory, "pods": "110", "ephemeral-storage": "77299011866"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": spec.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {"machineID": machine_id(&spec.name), "systemUUID": machine_id(&format!("uuid-{}", spec.name)),
                         "bootID": machine_id(&format!("boot-{}", spec.name)),
                         "kubeletVersion": crate::sandbox::controlplane::binaries::KUBERNETES_RELEASE,
                         "kubeProxyVersion": "", "osImage": spec.os_image, "kernelVersion": spec.kernel,
                         "containerRuntimeVersion": spec.runtime, "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

/// Registers every node of the profile and posts its status.
pub async fn register(host: &Host) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(host.client.clone());
    let pp = PatchParams::apply(MANAGER).force();
    for (i, spec) in host.profile.nodes.iter().enumerate() {
        let node = nodes
            .patch(&spec.name, &pp, &Patch::Apply(registration(spec)))
            .await?;
        let transition = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(now);
        let ip = host.net.node_ip(i).to_string();
        nodes
            .patch_status(
                &spec.name,
                &pp,
                &Patch::Apply(status(spec, &ip, &transition)),
            )
            .await?;
        renew_lease(host, &node).await?;
    }
    Ok(())
}

async fn renew_lease(host: &Host, node: &Node) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(host.client.clone(), "kube-node-lease");
    let name = node.name_any();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node.uid()}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
    });
    leases
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await
        .map(|_| ())
}

/// Renews the Leases every 10 seconds and re-posts the status every minute, until shutdown. A
/// failed renewal is retried at the next tick (the lease lasts 40 seconds).
pub async fn heartbeat(host: Arc<Host>, mut shutdown: watch::Receiver<bool>) {
    let nodes: Api<Node> = Api::all(host.client.clone());
    let mut tick = tokio::time::interval(RENEW);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        n = n.wrapping_add(1);
        for (i, spec) in host.profile.nodes.iter().enumerate() {
            let node = match nodes.get(&spec.name).await {
                Ok(node) => node,
                Err(e) => {
                    tracing::warn!(cluster = %host.cluster, node = %spec.name, error = %e, "cannot read the node");
                    continue;
                }
            };
            if let Err(e) = renew_lease(&host, &node).await {
                tracing::warn!(cluster = %host.cluster, node = %spec.name, error = %e, "cannot renew the node's lease");
            }
            if n.is_multiple_of(STATUS_EVERY) {
                let transition = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_else(now);
                let ip = host.net.node_ip(i).to_string();
                let pp = PatchParams::apply(MANAGER).force();
                if let Err(e) = nodes
                    .patch_status(
                        &spec.name,
                        &pp,
                        &Patch::Apply(status(spec, &ip, &transition)),
                    )
                    .await
                {
                    tracing::warn!(cluster = %host.cluster, node = %spec.name, error = %e, "cannot post the node's status");
                }
            }
        }
    }
}

/// Whether every node of the profile is Ready and free of the not-ready taint (the node
/// lifecycle controller removes it once it has seen the node Ready).
pub async fn all_ready(host: &Host) -> Result<bool, kube::Error> {
    let nodes: Api<Node> = Api::all(host.client.clone());
    let list = nodes.list(&Default::default()).await?;
    Ok(host.profile.nodes.iter().all(|spec| {
        list.items.iter().any(|n| {
            n.name_any() == spec.name
                && n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_none_or(|t| {
                        t.iter()
                            .all(|t| !t.key.starts_with("node.kubernetes.io/not-ready"))
                    })
                && n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    }))
}

/// The node's loopback address (None for a node not in the profile).
pub fn node_ip(host: &Host, node: &str) -> Option<std::net::Ipv4Addr> {
    host.profile
        .nodes
        .iter()
        .position(|n| n.name == node)
        .map(|i| host.net.node_ip(i))
}
