//! Which endpoints a Service port forwards to, read from its EndpointSlices (`discovery.k8s.io/v1`,
//! label `kubernetes.io/service-name`) as kube-proxy reads them: the slice port of the same name
//! as the Service port (the endpointslice controller names them so), else the one with its
//! number; ready endpoints only, or, when none is ready, the serving ones that are terminating
//! (kube-proxy's fallback, so a rolling restart does not drop connections); and for
//! `externalTrafficPolicy: Local` on a node's port, only that node's endpoints. Addresses are
//! translated from the cluster network to the loopback addresses behind them (`addresses`).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One TCP port of one Service: what a listener forwards to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRef {
    pub namespace: String,
    pub service: String,
    /// The Service port's name ("" when unnamed: a Service with one port).
    pub name: String,
    pub port: i32,
    /// A numeric `targetPort` (a named one is resolved by the endpointslice controller).
    pub target_port: Option<i32>,
    /// Only this node's endpoints (a node's port of an `externalTrafficPolicy: Local` Service).
    pub node: Option<String>,
}

impl PortRef {
    pub fn new(svc: &Service, p: &ServicePort) -> PortRef {
        PortRef {
            namespace: svc.namespace().unwrap_or_default(),
            service: svc.name_any(),
            name: p.name.clone().unwrap_or_default(),
            port: p.port,
            target_port: match &p.target_port {
                Some(IntOrString::Int(n)) => Some(*n),
                _ => None,
            },
            node: None,
        }
    }

    fn matches(&self, slice: &EndpointSlice) -> bool {
        slice.address_type == "IPv4"
            && slice.namespace().as_deref() == Some(self.namespace.as_str())
            && slice.labels().get(SERVICE_NAME_LABEL) == Some(&self.service)
    }

    /// The slice's port for this Service port: by name, else by number.
    fn slice_port(&self, ports: &[EndpointPort]) -> Option<i32> {
        let tcp = |p: &&EndpointPort| p.protocol.as_deref().is_none_or(|x| x == "TCP");
        let by_name = ports
            .iter()
            .filter(tcp)
            .find(|p| p.name.as_deref().unwrap_or("") == self.name);
        let by_number = || {
            ports.iter().filter(tcp).find(|p| {
                p.port.is_some() && (p.port == self.target_port || p.port == Some(self.port))
            })
        };
        by_name.or_else(by_number).and_then(|p| p.port)
    }
}

/// Whether an endpoint takes new connections: ready (nil means ready), or (`fallback`) serving
/// while terminating.
fn takes_traffic(e: &Endpoint, fallback: bool) -> bool {
    let c = e.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    if !fallback {
        return ready;
    }
    let serving = c.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
    serving && terminating
}

fn collect(
    slices: &[&EndpointSlice],
    port: &PortRef,
    fallback: bool,
    route: &impl Fn(Ipv4Addr) -> Ipv4Addr,
) -> BTreeSet<SocketAddr> {
    let mut out = BTreeSet::new();
    for slice in slices {
        let Some(number) = port.slice_port(slice.ports.as_deref().unwrap_or_default()) else {
            continue;
        };
        let Ok(number) = u16::try_from(number) else {
            continue;
        };
        for e in &slice.endpoints {
            if !takes_traffic(e, fallback)
                || port
                    .node
                    .as_ref()
                    .is_some_and(|n| e.node_name.as_ref() != Some(n))
            {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<Ipv4Addr>() {
                    out.insert(SocketAddr::from((route(ip), number)));
                }
            }
        }
    }
    out
}

/// The addresses a new connection to `port` may go to (`route`: where an endpoint's address
/// is reached), sorted (so the rotation is even) and without duplicates (an endpoint moves
/// between slices now and then).
pub fn backends<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: &PortRef,
    route: impl Fn(Ipv4Addr) -> Ipv4Addr,
) -> Vec<SocketAddr> {
    let mine: Vec<&EndpointSlice> = slices.into_iter().filter(|s| port.matches(s)).collect();
    let ready = collect(&mine, port, false, &route);
    if !ready.is_empty() {
        return ready.into_iter().collect();
    }
    collect(&mine, port, true, &route).into_iter().collect()
}

/// Round-robin over a port's backends; `order` gives the rest as fallbacks in turn (a backend
/// that refuses is skipped, as kube-proxy's userspace mode did).
#[derive(Debug, Default)]
pub struct Rotation(AtomicUsize);

impl Rotation {
    pub fn order(&self, backends: &[SocketAddr]) -> Vec<SocketAddr> {
        if backends.is_empty() {
            return Vec::new();
        }
        let start = self.0.fetch_add(1, Ordering::Relaxed) % backends.len();
        backends[start..]
            .iter()
            .chain(&backends[..start])
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(
        name: &str,
        service: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints
        }))
        .expect("slice")
    }

    fn port(name: &str, port: i32, target: Option<i32>) -> PortRef {
        PortRef {
            namespace: "ns".into(),
            service: "web".into(),
            name: name.into(),
            port,
            target_port: target,
            node: None,
        }
    }

    fn same(ip: Ipv4Addr) -> Ipv4Addr {
        ip
    }

    fn addrs(v: &[&str]) -> Vec<SocketAddr> {
        v.iter().map(|a| a.parse().expect("addr")).collect()
    }

    #[test]
    fn ports_match_by_name_then_by_number_and_only_ready_endpoints_count() {
        let s = slice(
            "web-1",
            "web",
            json!([{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]),
            json!([
                {"addresses": ["127.20.1.2"], "conditions": {"ready": true}},
                {"addresses": ["127.20.1.3"], "conditions": {"ready": false}},
                {"addresses": ["127.20.1.4"]},
            ]),
        );
        let other = slice(
            "db-1",
            "db",
            json!([{"name": "http", "port": 1}]),
            json!([{"addresses": ["127.20.9.9"]}]),
        );
        assert_eq!(
            backends([&s, &other], &port("http", 80, None), same),
            addrs(&["127.20.1.2:8080", "127.20.1.4:8080"])
        );
        assert_eq!(
            backends([&s], &port("admin", 90, None), same),
            addrs(&["127.20.1.2:9090", "127.20.1.4:9090"])
        );
        // A user's slice with an unnamed port: matched by the target port's number.
        let unnamed = slice(
            "web-x",
            "web",
            json!([{"port": 7000}]),
            json!([{"addresses": ["127.20.1.5"]}]),
        );
        assert_eq!(
            backends([&unnamed], &port("http", 80, Some(7000)), same),
            addrs(&["127.20.1.5:7000"])
        );
        assert!(backends([&unnamed], &port("http", 80, Some(7001)), same).is_empty());
    }

    #[test]
    fn cluster_network_addresses_are_routed() {
        let s = slice(
            "web-1",
            "web",
            json!([{"port": 80}]),
            json!([{"addresses": ["10.244.1.2"]}]),
        );
        let route = |ip: Ipv4Addr| {
            if ip.octets()[0] == 10 {
                Ipv4Addr::new(127, 20, 1, 2)
            } else {
                ip
            }
        };
        assert_eq!(
            backends([&s], &port("", 80, None), route),
            addrs(&["127.20.1.2:80"])
        );
    }

    #[test]
    fn terminating_serving_endpoints_are_the_fallback_and_duplicates_collapse() {
        let a = slice(
            "web-1",
            "web",
            json!([{"port": 80}]),
            json!([{"addresses": ["127.20.1.2"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                   {"addresses": ["127.20.1.3"], "conditions": {"ready": false, "serving": false, "terminating": true}}]),
        );
        assert_eq!(
            backends([&a], &port("", 80, None), same),
            addrs(&["127.20.1.2:80"])
        );
        let b = slice(
            "web-2",
            "web",
            json!([{"port": 80}]),
            json!([{"addresses": ["127.20.1.7"]}]),
        );
        let dup = slice(
            "web-3",
            "web",
            json!([{"port": 80}]),
            json!([{"addresses": ["127.20.1.7"]}]),
        );
        assert_eq!(
            backends([&a, &b, &dup], &port("", 80, None), same),
            addrs(&["127.20.1.7:80"])
        );
    }

    #[test]
    fn local_policy_keeps_the_nodes_own_endpoints() {
        let s = slice(
            "web-1",
            "web",
            json!([{"port": 80}]),
            json!([{"addresses": ["127.20.1.2"], "nodeName": "n1"}, {"addresses": ["127.20.1.3"], "nodeName": "n2"}]),
        );
        let mut p = port("", 80, None);
        p.node = Some("n2".into());
        assert_eq!(backends([&s], &p, same), addrs(&["127.20.1.3:80"]));
    }

    #[test]
    fn the_rotation_starts_at_the_next_backend_each_time() {
        let r = Rotation::default();
        let b = addrs(&["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let firsts: Vec<SocketAddr> = (0..6).map(|_| r.order(&b)[0]).collect();
        assert_eq!(firsts, [b[0], b[1], b[2], b[0], b[1], b[2]]);
        assert_eq!(r.order(&b), vec![b[0], b[1], b[2]]);
        assert!(r.order(&[]).is_empty());
    }
}
