//! LoadBalancer and NodePort Services on a real control plane: the node agent gives a
//! class-less LoadBalancer an address and a provider-shaped ingress, guards it with the
//! service controller's finalizer and Events, and its proxy forwards connections on the ingress
//! address and on every node's port to the Service's ready endpoints. Pods are not run here:
//! each test binds its own listeners in the cluster's pod range and describes them in an
//! EndpointSlice of a selector-less Service.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sovereign::sandbox::cluster::{Cluster, ClusterOptions};
use sovereign::sandbox::controlplane::binaries;
use sovereign::sandbox::network::loadbalancer::FINALIZER;
use sovereign::sandbox::profiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "default";

fn temporary(name: &str, profile: &str) -> ClusterOptions {
    let sovereign = PathBuf::from(env!("CARGO_BIN_EXE_sovereign"));
    let profile = profiles::by_id(profile, 1).expect("profile");
    ClusterOptions::temporary(name, profile, &sovereign)
}

type Body<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `body` on a cluster started with `options`, then shuts the cluster down, also when
/// `body` panics (a failed assertion must not leave the cluster's processes running).
async fn run_on<T>(
    options: ClusterOptions,
    body: impl for<'a> FnOnce(&'a Cluster, Client) -> Body<'a, T>,
) -> T {
    let (cluster, client) = start_with(options).await;
    let outcome = AssertUnwindSafe(body(&cluster, client))
        .catch_unwind()
        .await;
    cluster.shutdown().await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn start_with(options: ClusterOptions) -> (Cluster, Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sovereign=info".into()))
        .with_test_writer()
        .try_init();
    let bins = binaries::locate(None, &mut |m| eprintln!("{m}"))
        .expect("control-plane binaries (SOVEREIGN_CONTROL_PLANE_BIN)");
    let cluster = Cluster::start(options, &bins).await.expect("cluster");
    let client = cluster.client().await.expect("client");
    (cluster, client)
}

/// Polls `f` until it gives a value, at most `DEADLINE`.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stand-in for a pod: it says its name, echoes everything until the client's end of stream,
/// then says `bye` and closes.
struct Backend {
    addr: SocketAddr,
    name: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens at `127.<octet>.150.<host>:<port>` (port 0: any; the endpoints of one slice share
/// their port).
async fn backend(cluster: &Cluster, host: u8, name: &str, port: u16) -> Backend {
    let ip = Ipv4Addr::new(127, cluster.loopback_octet(), 150, host);
    let listener = TcpListener::bind((ip, port))
        .await
        .expect("bind a pod address");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, n) = (hits.clone(), name.to_string());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            h.fetch_add(1, Ordering::SeqCst);
            let n = n.clone();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = w.write_all(format!("{n}\n").as_bytes()).await;
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.write_all(b"bye\n").await;
                let _ = w.shutdown().await;
            });
        }
    });
    Backend {
        addr,
        name: name.to_string(),
        hits,
        task,
    }
}

/// Sends `payload` and half-closes while reading the answer concurrently: the backend's name and
/// the echoed bytes (checked) after its greeting. An error: the proxy refused or reset.
async fn exchange(addr: SocketAddr, payload: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let mut answer = Vec::new();
    let (sent, read) = tokio::join!(send, r.read_to_end(&mut answer));
    sent?;
    read?;
    let Some(nl) = answer.iter().position(|b| *b == b'\n') else {
        return Err(std::io::Error::other(format!(
            "no greeting in {} bytes",
            answer.len()
        )));
    };
    let name = String::from_utf8_lossy(&answer[..nl]).to_string();
    let echoed = &answer[nl + 1..];
    let ok = echoed.len() == payload.len() + 4
        && &echoed[..payload.len()] == payload
        && echoed.ends_with(b"bye\n");
    if !ok {
        return Err(std::io::Error::other(format!(
            "{} bytes echoed of {}",
            echoed.len(),
            payload.len()
        )));
    }
    Ok(name)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

async fn create_service(client: &Client, name: &str, spec: Value, annotations: Value) -> Service {
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc = json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": name, "annotations": annotations}, "spec": spec});
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(svc).expect("service"),
    )
    .await
    .expect("create the Service")
}

/// The slice a selector-less Service's endpoints are described in, with `ready` per backend.
/// The API server refuses loopback endpoints: each backend is named by its cluster-network
/// address, which the proxy translates back.
fn slice(cluster: &Cluster, service: &str, backends: &[(&Backend, bool)]) -> EndpointSlice {
    let port = backends.first().map(|(b, _)| b.addr.port()).unwrap_or(1);
    let net = &cluster.host().net;
    let endpoints: Vec<Value> = backends
        .iter()
        .map(|(b, ready)| {
            let IpAddr::V4(ip) = b.addr.ip() else {
                panic!("IPv4")
            };
            let seen = net
                .cluster_address(ip)
                .expect("an address of the cluster's block");
            json!({"addresses": [seen.to_string()], "conditions": {"ready": ready}})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-manual"), "namespace": NS,
                     "labels": {"kubernetes.io/service-name": service,
                                "endpointslice.kubernetes.io/managed-by": "sovereign-tests"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

async fn apply_slice(client: &Client, s: &EndpointSlice) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NS);
    slices
        .patch(
            &s.name_any(),
            &PatchParams::apply("sovereign-tests").force(),
            &Patch::Apply(s),
        )
        .await
        .expect("apply the EndpointSlice");
}

/// The Service once it has an ingress.
async fn provisioned(client: &Client, name: &str) -> Service {
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    eventually("an ingress", || async {
        let s = svcs.get(name).await.ok()?;
        let has = s
            .status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()
            .is_some_and(|i| !i.is_empty());
        has.then_some(s)
    })
    .await
}

fn ingress(svc: &Service) -> Value {
    serde_json::to_value(
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.clone()),
    )
    .expect("json")
}

fn ingress_addr(svc: &Service, port: u16) -> SocketAddr {
    let ip = ingress(svc)[0]["ip"]
        .as_str()
        .expect("an ingress ip")
        .parse::<Ipv4Addr>()
        .expect("ipv4");
    SocketAddr::from((ip, port))
}

fn node_port(svc: &Service) -> u16 {
    let p = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .and_then(|p| p.node_port);
    u16::try_from(p.expect("a node port")).expect("port")
}

/// The reasons of the Events about a Service.
async fn reasons(client: &Client, service: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let list = events.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(service))
        .filter_map(|e| e.reason)
        .collect()
}

async fn wait_for_reasons(client: &Client, service: &str, want: &[&str]) {
    eventually(&format!("Events {want:?} about {service}"), || async {
        let got = reasons(client, service).await;
        want.iter()
            .all(|w| got.iter().any(|g| g == w))
            .then_some(())
    })
    .await;
}

/// Connecting is refused: nothing listens there any more.
async fn wait_refused(addr: SocketAddr) {
    eventually(&format!("{addr} refusing connections"), || async {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
}

/// The backends `n` connections in a row reach.
async fn reached(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        names.push(exchange(addr, b"ping").await.expect("a proxied connection"));
    }
    names
}

/// An NLB name and the proxy's address, `ipMode: Proxy`, the finalizer and the Events; the
/// address is returned.
async fn check_eks_ingress(cluster: &Cluster, client: &Client, svc: &Service) -> String {
    let ing = ingress(svc);
    assert_eq!(ing.as_array().map(Vec::len), Some(1), "{ing}");
    let host = ing[0]["hostname"].as_str().expect("an ELB name");
    assert!(
        host.starts_with("k8s-default-web-") && host.ends_with(".elb.us-east-1.amazonaws.com"),
        "{host}"
    );
    let ip = ing[0]["ip"].as_str().expect("the proxy's address");
    let block = format!("127.{}.2", cluster.loopback_octet());
    assert!(ip.starts_with(&block), "{ip}");
    assert_eq!(ing[0]["ipMode"], "Proxy");
    assert!(
        svc.finalizers().iter().any(|f| f == FINALIZER),
        "{:?}",
        svc.finalizers()
    );
    let ensured = ["EnsuringLoadBalancer", "EnsuredLoadBalancer"];
    wait_for_reasons(client, &svc.name_any(), &ensured).await;
    ip.to_string()
}

/// A few MiB each way at once, with a half-close, through the ingress address and a node's
/// port; then round-robin over both ready endpoints.
async fn check_transfers(lb: SocketAddr, node: SocketAddr) {
    let big = payload(6 << 20);
    for (addr, what) in [(lb, "the load balancer"), (node, "a node port")] {
        eventually(&format!("{what}'s listener"), || async {
            exchange(addr, b"hello").await.ok()
        })
        .await;
        let name = exchange(addr, &big)
            .await
            .unwrap_or_else(|e| panic!("a large transfer through {what}: {e}"));
        assert!(name == "a" || name == "b", "{name}");
    }
    let names = reached(lb, 6).await;
    assert!(
        names.iter().any(|n| n == "a") && names.iter().any(|n| n == "b"),
        "{names:?}"
    );
}

/// b stops being ready: once the proxy has seen it, no new connection reaches it; with no
/// ready endpoint at all connections are refused at once, and come back with one.
async fn check_readiness(
    cluster: &Cluster,
    client: &Client,
    lb: SocketAddr,
    a: &Backend,
    b: &Backend,
) {
    apply_slice(client, &slice(cluster, "web", &[(a, true), (b, false)])).await;
    eventually("b out of rotation", || async {
        reached(lb, 4).await.iter().all(|n| n == "a").then_some(())
    })
    .await;
    let hits = b.hits.load(Ordering::SeqCst);
    assert!(reached(lb, 8).await.iter().all(|n| *n == a.name));
    assert_eq!(
        b.hits.load(Ordering::SeqCst),
        hits,
        "a not-ready endpoint got a connection"
    );

    apply_slice(client, &slice(cluster, "web", &[(a, false), (b, false)])).await;
    eventually("connections refused without endpoints", || async {
        exchange(lb, b"x").await.is_err().then_some(())
    })
    .await;
    apply_slice(client, &slice(cluster, "web", &[(a, true), (b, false)])).await;
    eventually("an endpoint ready again", || async {
        exchange(lb, b"x").await.ok()
    })
    .await;
}

/// Deleted: the finalizer goes (and the Service with it), the listeners close, the address is
/// given to the next Service.
async fn check_deletion(client: &Client, lb: SocketAddr, node: SocketAddr, ip: &str) {
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    svcs.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the Service gone", || async {
        svcs.get_opt("web")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    wait_refused(lb).await;
    wait_refused(node).await;
    wait_for_reasons(
        client,
        "web",
        &["DeletingLoadBalancer", "DeletedLoadBalancer"],
    )
    .await;
    let spec = json!({"type": "LoadBalancer", "ports": [{"port": 8081}]});
    create_service(client, "next", spec, json!({})).await;
    let next = provisioned(client, "next").await;
    assert_eq!(
        ingress(&next)[0]["ip"].as_str(),
        Some(ip),
        "the freed address is given again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_eks_load_balancer_is_named_like_an_nlb_and_proxies_to_ready_endpoints() {
    run_on(temporary("net-eks", "eks-us-east-1"), |c, client| {
        Box::pin(eks_load_balancer(c, client))
    })
    .await;
}

async fn eks_load_balancer(cluster: &Cluster, client: Client) {
    let a = backend(cluster, 10, "a", 0).await;
    let b = backend(cluster, 11, "b", a.addr.port()).await;
    let spec = json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 8080, "targetPort": a.addr.port()}]});
    let annotations = json!({"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"});
    create_service(&client, "web", spec, annotations).await;
    apply_slice(&client, &slice(cluster, "web", &[(&a, true), (&b, true)])).await;

    let svc = provisioned(&client, "web").await;
    let ip = check_eks_ingress(cluster, &client, &svc).await;
    let lb = ingress_addr(&svc, 8080);
    let node = SocketAddr::from((cluster.host().net.node_ip(2), node_port(&svc)));
    check_transfers(lb, node).await;
    check_readiness(cluster, &client, lb, &a, &b).await;
    check_deletion(&client, lb, node, &ip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sovereign_load_balancer_has_an_address_only_and_goes_when_the_type_changes() {
    run_on(temporary("net-qc", "qc-sovereign"), |c, client| {
        Box::pin(sovereign_load_balancer(c, client))
    })
    .await;
}

async fn sovereign_load_balancer(cluster: &Cluster, client: Client) {
    let a = backend(cluster, 20, "a", 0).await;
    let spec = json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 8443, "targetPort": a.addr.port()}]});
    create_service(&client, "api", spec, json!({})).await;
    apply_slice(&client, &slice(cluster, "api", &[(&a, true)])).await;
    let svc = provisioned(&client, "api").await;
    let ing = ingress(&svc);
    assert_eq!(ing[0].get("hostname"), None, "{ing}");
    assert_eq!(ing[0]["ipMode"], "Proxy");
    let lb = ingress_addr(&svc, 8443);
    eventually("the load balancer's listener", || async {
        exchange(lb, b"hello").await.ok()
    })
    .await;
    assert_eq!(
        exchange(lb, &payload(3 << 20)).await.expect("a transfer"),
        "a"
    );

    // A plain NodePort Service is served on every node's address.
    let spec = json!({"type": "NodePort", "ports": [{"name": "http", "port": 9000, "targetPort": a.addr.port()}]});
    let np = create_service(&client, "np", spec, json!({})).await;
    apply_slice(&client, &slice(cluster, "np", &[(&a, true)])).await;
    let node = SocketAddr::from((cluster.host().net.node_ip(0), node_port(&np)));
    eventually("the node port's listener", || async {
        exchange(node, b"hello").await.ok()
    })
    .await;
    assert!(
        np.finalizers().is_empty(),
        "a NodePort Service has no load balancer"
    );

    // No longer a LoadBalancer: no ingress, no finalizer, no listener on its address.
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    svcs.patch(
        "api",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
    )
    .await
    .expect("to ClusterIP");
    eventually("the load balancer torn down", || async {
        let s = svcs.get("api").await.ok()?;
        (ingress(&s) == Value::Null && s.finalizers().is_empty()).then_some(())
    })
    .await;
    wait_refused(lb).await;
    wait_for_reasons(
        &client,
        "api",
        &["DeletingLoadBalancer", "DeletedLoadBalancer"],
    )
    .await;
    // The NodePort Service was not disturbed.
    exchange(node, b"still there")
        .await
        .expect("the node port still served");
}

/// How many Events with `reason` there are about a Service.
async fn count(client: &Client, service: &str, reason: &str) -> usize {
    reasons(client, service)
        .await
        .iter()
        .filter(|r| *r == reason)
        .count()
}

/// What the first life of the resumed cluster leaves: the two ingresses, how many
/// `EnsuringLoadBalancer` Events `one` had, and `one`'s resourceVersion.
struct FirstLife {
    ingresses: Vec<Value>,
    ensured: usize,
    version: Option<String>,
}

async fn first_life(cluster: &Cluster, client: Client) -> FirstLife {
    let a = backend(cluster, 30, "a", 0).await;
    let mut ingresses = Vec::new();
    for name in ["one", "two"] {
        let spec = json!({"type": "LoadBalancer", "ports": [{"name": "http", "port": 8080, "targetPort": a.addr.port()}]});
        create_service(&client, name, spec, json!({})).await;
        apply_slice(&client, &slice(cluster, name, &[(&a, true)])).await;
        ingresses.push(ingress(&provisioned(&client, name).await));
    }
    wait_for_reasons(&client, "two", &["EnsuredLoadBalancer"]).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    FirstLife {
        ensured: count(&client, "one", "EnsuringLoadBalancer").await,
        version: svcs.get("one").await.expect("one").resource_version(),
        ingresses,
    }
}

/// After the restart: the same ingresses, listeners back, nothing written, and a new Service
/// gets an address none of the adopted ones has.
async fn second_life(cluster: &Cluster, client: Client, first: FirstLife) {
    let a = backend(cluster, 30, "a", 0).await;
    apply_slice(&client, &slice(cluster, "one", &[(&a, true)])).await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let lb = ingress_addr(&svcs.get("one").await.expect("one"), 8080);
    eventually("the listener back", || async {
        exchange(lb, b"again").await.ok()
    })
    .await;
    for (name, was) in ["one", "two"].iter().zip(&first.ingresses) {
        let now = ingress(&svcs.get(name).await.expect("service"));
        assert_eq!(&now, was, "{name} kept its ingress");
    }
    let spec = json!({"type": "LoadBalancer", "ports": [{"port": 8080}]});
    create_service(&client, "three", spec, json!({})).await;
    let three = ingress(&provisioned(&client, "three").await)[0]["ip"].clone();
    assert!(
        first.ingresses.iter().all(|b| b[0]["ip"] != three),
        "{three} was already given"
    );
    let version = svcs.get("one").await.expect("one").resource_version();
    assert_eq!(version, first.version, "nothing rewritten");
    let ensured = count(&client, "one", "EnsuringLoadBalancer").await;
    assert_eq!(ensured, first.ensured, "no new Events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_cluster_keeps_its_load_balancers_addresses_and_writes_nothing_new() {
    let dir = tempfile::tempdir().expect("tmp");
    let sovereign = PathBuf::from(env!("CARGO_BIN_EXE_sovereign"));
    let profile = profiles::by_id("aks-eastus", 1).expect("profile");
    let options = ClusterOptions::new("net-resume", profile, &dir.path().join("c"), &sovereign);
    let first = run_on(options.clone(), |c, client| Box::pin(first_life(c, client))).await;
    run_on(options, move |c, client| {
        Box::pin(second_life(c, client, first))
    })
    .await;
}
