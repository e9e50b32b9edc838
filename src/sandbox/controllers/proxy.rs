//! kube-proxy, in userspace mode: a TCP listener on each LoadBalancer ingress `ip:port` and on
//! each node's loopback address at each NodePort, forwarding every connection to a ready endpoint
//! of the Service (`podIP:targetPort` from its Endpoints, round-robin). ClusterIPs (10.96.0.0/12)
//! are not routable on the host and are not proxied.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

/// Which Service port a listener serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Target {
    namespace: String,
    service: String,
    /// The Service port's name (endpoint ports carry the same name) or its number.
    port_name: String,
    port: i64,
}

struct Listener {
    target: Target,
    task: JoinHandle<()>,
}

pub struct Proxy {
    cluster: Weak<Cluster>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    /// Addresses that could not be bound, reported once.
    failed: Mutex<HashSet<SocketAddr>>,
    next: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn new(cluster: Weak<Cluster>) -> Proxy {
        Proxy {
            cluster,
            listeners: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn desired(c: &Cluster) -> HashMap<SocketAddr, Target> {
        let node_ips: Vec<String> = o::list(c, "", "nodes")
            .iter()
            .flat_map(|n| {
                n.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
            .filter_map(|a| a.get("address").and_then(Value::as_str).map(String::from))
            .filter(|ip| ip.starts_with("127.") && ip != "127.0.0.1")
            .collect();
        let mut out = HashMap::new();
        for svc in o::list(c, "", "services") {
            if meta::is_deleting(&svc) {
                continue;
            }
            let ty = o::str_at(&svc, "/spec/type");
            let ports = svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ingress: Vec<String> = svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.get("ip").and_then(Value::as_str).map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            for p in &ports {
                if o::str_at(p, "/protocol") == "UDP" || o::str_at(p, "/protocol") == "SCTP" {
                    continue;
                }
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                let target = Target {
                    namespace: meta::namespace(&svc).to_string(),
                    service: meta::name(&svc).to_string(),
                    port_name: o::str_at(p, "/name").to_string(),
                    port,
                };
                if ty == "LoadBalancer" {
                    for ip in &ingress {
                        if let Ok(addr) = format!("{ip}:{port}").parse() {
                            out.insert(addr, target.clone());
                        }
                    }
                }
                if matches!(ty, "NodePort" | "LoadBalancer")
                    && let Some(np) = p.get("nodePort").and_then(Value::as_i64)
                {
                    for ip in &node_ips {
                        if let Ok(addr) = format!("{ip}:{np}").parse() {
                            out.insert(addr, target.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Open the listeners Services now need, close the ones they no longer do.
    pub fn pass(&self, c: &Arc<Cluster>) -> bool {
        let desired = Self::desired(c);
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        listeners.retain(|addr, l| {
            let keep = desired.get(addr) == Some(&l.target);
            if !keep {
                l.task.abort();
                changed = true;
            }
            keep
        });
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|a| desired.contains_key(a));
        for (addr, target) in desired {
            if listeners.contains_key(&addr) || failed.contains(&addr) {
                continue;
            }
            let std_listener = match std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, service = target.service, error = %e, "kube-proxy cannot listen");
                    failed.insert(addr);
                    continue;
                }
            };
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "kube-proxy cannot listen");
                    failed.insert(addr);
                    continue;
                }
            };
            tracing::debug!(%addr, service = target.service, "kube-proxy listening");
            let task = tokio::spawn(accept_loop(
                listener,
                self.cluster.clone(),
                target.clone(),
                self.next.clone(),
            ));
            listeners.insert(addr, Listener { target, task });
        }
        changed
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for l in listeners.values() {
            l.task.abort();
        }
    }
}

/// Ready endpoints of a Service port, as `ip:port`.
fn backends(c: &Cluster, t: &Target) -> Vec<SocketAddr> {
    let Some(ep) = o::get(c, "", "endpoints", &t.namespace, &t.service) else {
        return vec![];
    };
    let mut out = Vec::new();
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| o::str_at(p, "/name") == t.port_name)
            .or_else(|| {
                if ports.len() == 1 {
                    ports.first()
                } else {
                    None
                }
            })
            .and_then(|p| p.get("port").and_then(Value::as_i64));
        let Some(port) = port else { continue };
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if let Ok(addr) = format!("{}:{port}", o::str_at(&a, "/ip")).parse() {
                out.push(addr);
            }
        }
    }
    out
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    cluster: Weak<Cluster>,
    target: Target,
    next: Arc<AtomicUsize>,
) {
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "kube-proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(c) = cluster.upgrade() else { return };
        let backends = backends(&c, &target);
        drop(c);
        if backends.is_empty() {
            // No ready endpoint: the connection is refused, as with kube-proxy's REJECT rule.
            tracing::debug!(service = target.service, %peer, "no ready endpoint");
            continue;
        }
        let pick = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
        tokio::spawn(async move {
            let connect =
                tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(pick))
                    .await;
            match connect {
                Ok(Ok(mut outbound)) => {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Ok(Err(e)) => tracing::debug!(backend = %pick, error = %e, "endpoint refused"),
                Err(_) => tracing::debug!(backend = %pick, "endpoint timed out"),
            }
        });
    }
}
