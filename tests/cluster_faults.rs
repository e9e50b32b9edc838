//! Faults between one client and a real API server (`FaultProxy`): injected errors answer with
//! the API server's own Status objects at the configured share, latency delays requests,
//! watches are ended or expired and a kube-runtime watcher recovers, the cluster can be made
//! unreachable and reachable again, and the client's identity (certificate or token) passes
//! through request-header authentication. A client going to the API server directly never sees
//! any of it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sovereign::sandbox::cluster::{Cluster, ClusterOptions};
use sovereign::sandbox::controlplane::binaries;
use sovereign::sandbox::controlplane::kubeconfig::{self, Auth, Entry};
use sovereign::sandbox::network::faults::{FaultProxy, Faults};
use sovereign::sandbox::profiles;

const DEADLINE: Duration = Duration::from_secs(60);

async fn start(name: &str) -> (Cluster, Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sovereign=info".into()))
        .with_test_writer()
        .try_init();
    let bins = binaries::locate(None, &mut |m| eprintln!("{m}"))
        .expect("control-plane binaries (SOVEREIGN_CONTROL_PLANE_BIN)");
    let profile = profiles::by_id("qc-sovereign", 1).expect("profile");
    let sovereign = PathBuf::from(env!("CARGO_BIN_EXE_sovereign"));
    let cluster = Cluster::start(ClusterOptions::temporary(name, profile, &sovereign), &bins)
        .await
        .expect("cluster");
    let client = cluster.client().await.expect("client");
    (cluster, client)
}

type Body<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Runs `body` with a fault proxy in front of a fresh cluster (and a direct admin client), then
/// shuts the cluster down, also when `body` panics (a failed assertion must not leave the
/// cluster's processes running).
async fn run_on(
    name: &str,
    body: impl for<'a> FnOnce(&'a Cluster, &'a FaultProxy, Client) -> Body<'a>,
) {
    let (cluster, direct) = start(name).await;
    let proxy = FaultProxy::start(&cluster).expect("fault proxy");
    let outcome = AssertUnwindSafe(body(&cluster, &proxy, direct))
        .catch_unwind()
        .await;
    drop(proxy);
    cluster.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

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

/// A client for `entry`; `retry: false` shows the raw answers (kube retries 429/503/504).
async fn client_for(entry: &Entry, retry: bool) -> Client {
    let yaml = kubeconfig::render(std::slice::from_ref(entry), &entry.name);
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let options = KubeConfigOptions {
        context: Some(entry.name.clone()),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .expect("config");
    config.default_retry = retry;
    Client::try_from(config).expect("client")
}

async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, http::HeaderMap, Value) {
    let bytes = body
        .map(|v| serde_json::to_vec(&v).expect("encode"))
        .unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(bytes))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    (
        code,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("configmap")
}

/// The API server's Status answers for 429 (with Retry-After), 500 and 409 (writes only); the
/// direct client sees none of them.
async fn check_error_answers(via: &Client, direct: &Client, faults: &Faults) {
    faults.set_errors(1.0, &[429]);
    let (code, headers, s) = raw(via, "GET", CONFIGMAPS, None).await;
    assert_eq!(
        (code, s["kind"].as_str(), s["reason"].as_str()),
        (429, Some("Status"), Some("TooManyRequests"))
    );
    assert_eq!(s["details"]["retryAfterSeconds"], 1);
    assert_eq!(
        headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    faults.set_errors(1.0, &[500]);
    let (code, _, s) = raw(via, "GET", CONFIGMAPS, None).await;
    assert_eq!(
        (code, s["reason"].as_str(), s["status"].as_str()),
        (500, Some("InternalError"), Some("Failure"))
    );
    let direct_cms: Api<ConfigMap> = Api::namespaced(direct.clone(), "default");
    direct_cms
        .list(&ListParams::default())
        .await
        .expect("direct list");

    faults.set_errors(1.0, &[409]);
    let (code, _, _) = raw(via, "GET", CONFIGMAPS, None).await;
    assert_eq!(code, 200, "a read never gets a 409");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let (code, _, s) = raw(via, "POST", CONFIGMAPS, Some(body)).await;
    assert_eq!((code, s["reason"].as_str()), (409, Some("Conflict")));
}

/// Half of the requests fail, and every one is counted.
async fn check_share(via: &Client, faults: &Faults) {
    faults.set_errors(0.5, &[500]);
    let before = faults.requests("list");
    let mut failed = 0;
    for _ in 0..200 {
        let (code, _, _) = raw(via, "GET", CONFIGMAPS, None).await;
        assert!(code == 200 || code == 500, "{code}");
        failed += usize::from(code == 500);
    }
    assert!(
        (50..=150).contains(&failed),
        "{failed} of 200 failed at 50%"
    );
    assert_eq!(
        faults.requests("list") - before,
        200,
        "{:?}",
        faults.request_counts()
    );
    faults.clear();
}

/// At least the latency (never an upper bound: the machine is shared).
async fn check_latency(via: &Client, faults: &Faults) {
    faults.set_latency(Duration::from_millis(300));
    let t = Instant::now();
    let (code, _, _) = raw(via, "GET", CONFIGMAPS, None).await;
    assert_eq!(code, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    faults.clear();
}

/// Unreachable: the open connection is cut and new ones are refused; the direct client works;
/// then reachable again.
async fn check_unreachable(proxy: &FaultProxy, via: &Client, direct: &Client) {
    let faults = proxy.faults();
    faults.set_unreachable(true);
    let cms: Api<ConfigMap> = Api::namespaced(via.clone(), "default");
    assert!(
        cms.list(&ListParams::default()).await.is_err(),
        "an unreachable cluster answers nothing"
    );
    let fresh: Api<ConfigMap> =
        Api::namespaced(client_for(&proxy.entry("fresh"), false).await, "default");
    assert!(fresh.list(&ListParams::default()).await.is_err());
    let direct_cms: Api<ConfigMap> = Api::namespaced(direct.clone(), "default");
    direct_cms
        .list(&ListParams::default())
        .await
        .expect("direct list");
    faults.set_unreachable(false);
    eventually("reachable again", || async {
        cms.list(&ListParams::default()).await.ok()
    })
    .await;
    fresh
        .list(&ListParams::default())
        .await
        .expect("a new client too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_fail_requests_add_latency_and_make_the_cluster_unreachable() {
    run_on("faults-errors", |c, p, direct| {
        Box::pin(errors(c, p, direct))
    })
    .await;
}

async fn errors(_cluster: &Cluster, proxy: &FaultProxy, direct: Client) {
    let via = client_for(&proxy.entry("via"), false).await;
    let (code, _, _) = raw(&via, "GET", CONFIGMAPS, None).await;
    assert_eq!(code, 200, "no faults yet");
    check_error_answers(&via, &direct, proxy.faults()).await;
    check_share(&via, proxy.faults()).await;
    check_latency(&via, proxy.faults()).await;
    check_unreachable(proxy, &via, &direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kube_watcher_survives_dropped_and_expired_watches_and_errors() {
    run_on("faults-watch", |c, p, direct| {
        Box::pin(watcher_recovers(c, p, direct))
    })
    .await;
}

async fn watcher_recovers(_cluster: &Cluster, proxy: &FaultProxy, direct: Client) {
    let faults = proxy.faults().clone();
    let watched: Api<ConfigMap> = Api::namespaced(proxy.client().await.expect("client"), "default");
    let cms: Api<ConfigMap> = Api::namespaced(direct.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stream = watcher(watched, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                let _ = tx.send(o.metadata.name.unwrap_or_default());
            }
        }
    });
    async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str) {
        tokio::time::timeout(DEADLINE, async {
            while let Some(n) = rx.recv().await {
                if n == name {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the watcher never saw {name}"));
    }
    cms.create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    expect(&mut rx, "one").await;

    // Ended watches: the watcher watches again and goes on.
    let watches = faults.requests("watch");
    faults.drop_watches();
    eventually("a new watch", || async {
        (faults.requests("watch") > watches).then_some(())
    })
    .await;
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .expect("create");
    expect(&mut rx, "two").await;

    // Expired (410): the watcher lists again.
    let lists = faults.requests("list");
    faults.expire_watches();
    eventually("a new list", || async {
        (faults.requests("list") > lists).then_some(())
    })
    .await;
    cms.create(&PostParams::default(), &cm("three"))
        .await
        .expect("create");
    expect(&mut rx, "three").await;

    // Errors on its re-watches and re-lists: it backs off and recovers.
    faults.set_errors(0.5, &[500, 429]);
    let injected = faults.injected_errors();
    eventually("an error injected into the watcher", || async {
        faults.drop_watches();
        (faults.injected_errors() > injected).then_some(())
    })
    .await;
    faults.set_errors(0.0, &[]);
    cms.create(&PostParams::default(), &cm("four"))
        .await
        .expect("create");
    expect(&mut rx, "four").await;
    task.abort();
}

async fn whoami(client: &Client) -> (String, Vec<String>) {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let r = reviews
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("a SelfSubjectReview");
    let info = r.status.and_then(|s| s.user_info).unwrap_or_default();
    (
        info.username.unwrap_or_default(),
        info.groups.unwrap_or_default(),
    )
}

/// Certificates: the admin's and another user's, the same through the proxy as directly; a
/// client's own X-Remote-User is not believed. Returns jane's entry through the proxy.
async fn check_certificates(cluster: &Cluster, proxy: &FaultProxy) -> Entry {
    let (user, groups) = whoami(&proxy.client().await.expect("client")).await;
    assert_eq!(user, "kubernetes-admin");
    let admin_groups = ["system:masters", "system:authenticated"];
    assert!(
        admin_groups.iter().all(|g| groups.iter().any(|x| x == g)),
        "{groups:?}"
    );
    // One group: the PKI keeps only the last Organization it is given.
    let jane = cluster
        .control_plane()
        .identity("jane", "jane", &["dev"])
        .expect("identity");
    let mut jane_via = jane.clone().via(&proxy.url());
    jane_via.name = "jane-via".into();
    let (user, groups) = whoami(&client_for(&jane_via, true).await).await;
    let want: Vec<String> = vec!["dev".into(), "system:authenticated".into()];
    assert_eq!((user.as_str(), &groups), ("jane", &want));
    assert_eq!(
        whoami(&client_for(&jane, true).await).await,
        (user, groups),
        "the same as directly"
    );

    let yaml = kubeconfig::render(std::slice::from_ref(&jane_via), "jane-via");
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    for (h, v) in [
        ("x-remote-user", "system:admin"),
        ("x-remote-group", "system:masters"),
    ] {
        config.headers.push((
            http::HeaderName::from_static(h),
            http::HeaderValue::from_static(v),
        ));
    }
    let spoofing = Client::try_from(config).expect("client");
    assert_eq!(
        whoami(&spoofing).await.0,
        "jane",
        "a client's own X-Remote-User is dropped"
    );
    jane_via
}

/// A bearer token (no certificate) is authenticated by the API server itself.
async fn check_token(proxy: &FaultProxy, direct: &Client, dir: &std::path::Path) {
    let sas: Api<ServiceAccount> = Api::namespaced(direct.clone(), "default");
    let sa = serde_json::from_value(json!({"metadata": {"name": "robot"}})).expect("sa");
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("service account");
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}))
    .expect("token request");
    let token: TokenRequest = sas
        .create_subresource("token", "robot", &PostParams::default(), &request)
        .await
        .expect("token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token.status.expect("issued").token).expect("token file");
    let mut robot = proxy.entry("robot");
    robot.auth = Auth::TokenFile(token_file);
    let (user, groups) = whoami(&client_for(&robot, true).await).await;
    assert_eq!(user, "system:serviceaccount:default:robot");
    assert!(
        groups.iter().any(|g| g == "system:serviceaccounts:default"),
        "{groups:?}"
    );
}

/// kubectl (Go's TLS and HTTP stacks) agrees, when the control plane's kubectl is at hand.
fn check_kubectl(entry: &Entry, dir: &std::path::Path) {
    let kubectl =
        std::env::var_os("SOVEREIGN_CONTROL_PLANE_BIN").map(|d| PathBuf::from(d).join("kubectl"));
    let Some(kubectl) = kubectl.filter(|k| k.is_file()) else {
        eprintln!("no kubectl in SOVEREIGN_CONTROL_PLANE_BIN: `kubectl auth whoami` not tried");
        return;
    };
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        kubeconfig::render(std::slice::from_ref(entry), &entry.name),
    )
    .expect("kubeconfig");
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&path)
        .args(["auth", "whoami", "-o", "json"])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(review["status"]["userInfo"]["username"], "jane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identities_pass_through_the_proxy() {
    run_on("faults-identity", |c, p, direct| {
        Box::pin(identities(c, p, direct))
    })
    .await;
}

async fn identities(cluster: &Cluster, proxy: &FaultProxy, direct: Client) {
    let dir = tempfile::tempdir().expect("tmp");
    let jane = check_certificates(cluster, proxy).await;
    check_token(proxy, &direct, dir.path()).await;
    check_kubectl(&jane, dir.path());
    let counts = proxy.faults().request_counts();
    assert!(counts.get("create").is_some_and(|n| *n >= 4), "{counts:?}");
}
