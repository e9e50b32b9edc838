//! The TCP proxy behind load balancers and node ports (kube-proxy's old userspace mode, which is
//! also what a cloud load balancer in `ipMode: Proxy` is): a listener on each ingress `ip:port`
//! of each LoadBalancer Service and on each node's address at each NodePort (NodePort and
//! LoadBalancer Services), forwarding every connection to a ready endpoint of the Service, in
//! turn. Endpoints are read from the EndpointSlices at each connection, so a change applies to
//! the next one (endpoints' cluster-network addresses are translated to the loopback ones
//! behind them); a connection with no endpoint to go to is reset at once, as kube-proxy's REJECT
//! rule does. Listeners follow the Services: opened when one needs them, closed (with their
//! connections) when it no longer does. ClusterIPs (10.96.0.0/16) are not routable on the host
//! and are not proxied.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::addresses::Block;
use super::endpoints::{self, PortRef, Rotation};
use crate::sandbox::agent::Host;

/// How often listeners that could not be bound are tried again.
const RETRY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where each Service port is listened for: the address of ours (`ours`) in the status of a
/// class-less LoadBalancer, and every node's address at a node port.
pub fn desired(
    services: &[Arc<Service>],
    nodes: &[(String, Ipv4Addr)],
    ours: impl Fn(&str) -> bool,
) -> HashMap<SocketAddr, PortRef> {
    let mut out = HashMap::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        let local = spec.external_traffic_policy.as_deref() == Some("Local");
        let balanced = ty == "LoadBalancer"
            && spec.load_balancer_class.is_none()
            && svc.metadata.deletion_timestamp.is_none();
        let ingress: Vec<Ipv4Addr> = if balanced {
            super::ingress::current(svc)
                .iter()
                .filter_map(|i| i.ip.as_deref())
                .filter(|ip| ours(ip))
                .filter_map(|ip| ip.parse().ok())
                .collect()
        } else {
            Vec::new()
        };
        for p in spec.ports.iter().flatten() {
            if p.protocol.as_deref().is_some_and(|x| x != "TCP") {
                continue;
            }
            let target = PortRef::new(svc, p);
            for ip in &ingress {
                if let Ok(port) = u16::try_from(p.port) {
                    out.insert(SocketAddr::from((*ip, port)), target.clone());
                }
            }
            let node_port = p.node_port.and_then(|n| u16::try_from(n).ok());
            let Some(node_port) = node_port.filter(|_| matches!(ty, "NodePort" | "LoadBalancer"))
            else {
                continue;
            };
            for (name, ip) in nodes {
                let mut t = target.clone();
                t.node = local.then(|| name.clone());
                out.insert(SocketAddr::from((*ip, node_port)), t);
            }
        }
    }
    out
}

struct Listener {
    target: PortRef,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // The accept loop owns the socket and the connections: aborting it closes them all.
        self.task.abort();
    }
}

pub struct Proxy {
    host: Arc<Host>,
    slices: Store<EndpointSlice>,
    listeners: HashMap<SocketAddr, Listener>,
    /// Addresses whose bind failed and was reported (reported again only after a success).
    warned: HashSet<SocketAddr>,
}

impl Proxy {
    pub fn new(host: Arc<Host>, slices: Store<EndpointSlice>) -> Proxy {
        Proxy {
            host,
            slices,
            listeners: HashMap::new(),
            warned: HashSet::new(),
        }
    }

    fn nodes(&self) -> Vec<(String, Ipv4Addr)> {
        let net = &self.host.net;
        self.host
            .profile
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), net.node_ip(i)))
            .collect()
    }

    /// Opens the listeners the Services need now and closes the ones they no longer do.
    pub fn sync(&mut self, services: &[Arc<Service>]) {
        let net = self.host.net.clone();
        let want = desired(services, &self.nodes(), |ip| net.contains(ip));
        self.listeners
            .retain(|addr, l| want.get(addr) == Some(&l.target));
        self.warned.retain(|a| want.contains_key(a));
        for (addr, target) in want {
            if self.listeners.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(listener) => {
                    self.warned.remove(&addr);
                    tracing::debug!(cluster = %self.host.cluster, %addr, service = %target.service, "proxy listening");
                    let task = tokio::spawn(serve(
                        listener,
                        target.clone(),
                        self.slices.clone(),
                        net.clone(),
                    ));
                    self.listeners.insert(addr, Listener { target, task });
                }
                Err(e) => {
                    if self.warned.insert(addr) {
                        tracing::warn!(cluster = %self.host.cluster, %addr, service = %target.service, error = %e, "the proxy cannot listen (retrying)");
                    }
                }
            }
        }
    }
}

/// A listener that can be bound again at once after a restart (connections in TIME_WAIT).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve(
    listener: TcpListener,
    target: PortRef,
    slices: Store<EndpointSlice>,
    net: Arc<Block>,
) {
    let rotation = Rotation::default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((inbound, peer)) => {
                    let state = slices.state();
                    let route = |ip| net.loopback_address(ip);
                    let backends = endpoints::backends(state.iter().map(Arc::as_ref), &target, route);
                    if backends.is_empty() {
                        tracing::debug!(service = %target.service, %peer, "no ready endpoint: connection reset");
                        let _ = inbound.set_zero_linger();
                        continue;
                    }
                    connections.spawn(forward(inbound, rotation.order(&backends)));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::debug!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Connects to the first backend that answers, then copies both ways until both sides have
/// closed (each side's end of stream is passed on as a half-close).
async fn forward(mut inbound: TcpStream, backends: Vec<SocketAddr>) {
    for backend in backends {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
            Ok(Ok(mut outbound)) => {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
                    tracing::debug!(%backend, error = %e, "proxied connection ended");
                }
                return;
            }
            Ok(Err(e)) => tracing::debug!(%backend, error = %e, "endpoint refused"),
            Err(_) => tracing::debug!(%backend, "endpoint timed out"),
        }
    }
    let _ = inbound.set_zero_linger();
}

/// Runs the proxy until shutdown: Services and EndpointSlices are watched (reflectors), the
/// listeners follow every change of a Service, and failed binds are retried.
pub async fn run(host: Arc<Host>, mut shutdown: watch::Receiver<bool>) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(host.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(host.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff();
    let mut svc_events = std::pin::pin!(svc_events);
    let mut slice_events = std::pin::pin!(slice_events);
    let mut proxy = Proxy::new(host.clone(), slices);
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            ev = svc_events.next() => match ev {
                Some(Ok(_)) => proxy.sync(&services.state()),
                Some(Err(e)) => tracing::debug!(cluster = %host.cluster, error = %e, "watching Services"),
                None => break,
            },
            ev = slice_events.next() => {
                if let Some(Err(e)) = ev {
                    tracing::debug!(cluster = %host.cluster, error = %e, "watching EndpointSlices");
                }
            },
            _ = retry.tick() => {
                if !proxy.warned.is_empty() {
                    proxy.sync(&services.state());
                }
            }
        }
    }
    // Dropping the proxy closes every listener and connection.
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).expect("service"))
    }

    #[test]
    fn listeners_cover_our_ingress_and_every_nodes_port() {
        let nodes = vec![
            ("n1".to_string(), Ipv4Addr::new(127, 20, 200, 2)),
            ("n2".to_string(), Ipv4Addr::new(127, 20, 200, 3)),
        ];
        let lb = svc(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": 8080},
                               {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.20.201.2"}, {"ip": "10.1.2.3"}, {"hostname": "x.example"}]}}
        }));
        let np = svc(json!({"metadata": {"name": "np", "namespace": "ns"},
                             "spec": {"type": "NodePort", "ports": [{"port": 81, "nodePort": 30081}]}}));
        let cip = svc(json!({"metadata": {"name": "c", "namespace": "ns"},
                              "spec": {"type": "ClusterIP", "ports": [{"port": 82}]}}));
        let classed = svc(json!({
            "metadata": {"name": "other", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": [{"port": 83}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.20.201.3"}]}}
        }));
        let ours = |ip: &str| ip.starts_with("127.20.");
        let want = desired(&[lb, np, cip, classed], &nodes, ours);
        let mut addrs: Vec<String> = want.keys().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(
            addrs,
            [
                "127.20.200.2:30080",
                "127.20.200.2:30081",
                "127.20.200.3:30080",
                "127.20.200.3:30081",
                "127.20.201.2:80"
            ]
        );
        let lb_addr: SocketAddr = "127.20.201.2:80".parse().expect("addr");
        assert_eq!(
            (want[&lb_addr].name.as_str(), want[&lb_addr].node.as_deref()),
            ("http", None)
        );
        let node_addr: SocketAddr = "127.20.200.3:30080".parse().expect("addr");
        assert_eq!(
            want[&node_addr].node.as_deref(),
            Some("n2"),
            "Local: that node's endpoints"
        );
        let np_addr: SocketAddr = "127.20.200.3:30081".parse().expect("addr");
        assert_eq!(want[&np_addr].node, None);
    }

    #[test]
    fn a_deleting_load_balancer_keeps_its_node_ports_only() {
        let lb = svc(json!({
            "metadata": {"name": "web", "namespace": "ns", "deletionTimestamp": "2025-01-01T00:00:00Z",
                         "finalizers": ["service.kubernetes.io/load-balancer-cleanup"]},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.20.201.2"}]}}
        }));
        let nodes = vec![("n1".to_string(), Ipv4Addr::new(127, 20, 200, 2))];
        let want = desired(&[lb], &nodes, |_| true);
        assert_eq!(
            want.keys().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["127.20.200.2:30080"]
        );
    }
}
