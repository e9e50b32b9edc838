//! What the end-to-end tests share: two real clusters (an EKS-like source in us-east-1 and a
//! Québec target: upstream etcd, kube-apiserver, kube-controller-manager and kube-scheduler each,
//! with the node agent), started once for the whole test binary on a runtime of their own, and
//! per test an `Env`: its own namespaces, its own SovereignClusters, the demo application with
//! real files in its volumes, and an operator serving only that test's shard.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams};
use serde_json::Value;
use sovereign::api::{SovereignCluster, SovereignWorkload};
use sovereign::controller::{RunArgs, run_with};
use sovereign::sandbox::controlplane::binaries::{self, Binaries};
use sovereign::sandbox::controlplane::kubeconfig::{self, Entry};
use sovereign::sandbox::demo::{self, Names};
use sovereign::sandbox::{Cluster, ClusterOptions, profiles};

/// The demo application's claims (the database's data and WAL, the documents).
pub const CLAIMS: [&str; 3] = ["dossier-documents", "data-dossier-db-0", "wal-dossier-db-0"];

/// The clusters every test of this binary uses.
pub struct Shared {
    pub source: Cluster,
    pub target: Cluster,
    pub bins: Binaries,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

pub fn sovereign_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sovereign"))
}

/// Removes the directories of earlier test processes that are gone (their clusters' data).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sovereign-sandbox-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Both clusters, started on first use. They live on a runtime of their own (each test has its
/// own runtime, which ends with the test) until the test binary exits; their processes then end
/// with it (each runs under `sovereign supervise`, which watches its parent).
pub fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sovereign=warn".into()))
            .with_test_writer()
            .try_init();
        remove_stale_dirs();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sandbox-clusters")
                .enable_all()
                .build()
                .expect("the clusters' runtime");
            rt.block_on(async move {
                let _ = tx.send(boot().await);
                std::future::pending::<()>().await;
            });
        });
        match rx.recv() {
            Ok(Ok(shared)) => shared,
            Ok(Err(e)) => panic!("the test clusters did not start: {e}"),
            Err(_) => panic!("the test clusters' thread ended"),
        }
    })
}

async fn boot() -> Result<Shared, String> {
    let bins = tokio::task::spawn_blocking(|| {
        binaries::locate(None, &mut |m| eprintln!("[control plane] {m}"))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let me = sovereign_bin();
    // A bigger node group than the demo's: many tests' applications run side by side.
    let eks = profiles::by_id("eks-us-east-1", 3).ok_or("no EKS profile")?;
    let qc = profiles::by_id("qc-sovereign", 3).ok_or("no Québec profile")?;
    let t = std::time::Instant::now();
    let (s, q) = tokio::join!(
        Cluster::start(ClusterOptions::temporary("source", eks, &me), &bins),
        Cluster::start(ClusterOptions::temporary("target", qc, &me), &bins),
    );
    let (source, target) = (s.map_err(|e| e.to_string())?, q.map_err(|e| e.to_string())?);
    eprintln!(
        "[clusters] source {} and target {} ready in {:.1}s",
        source.url(),
        target.url(),
        t.elapsed().as_secs_f64()
    );
    Ok(Shared {
        source,
        target,
        bins,
    })
}

impl Shared {
    pub fn source_entry(&self, context: &str) -> Entry {
        self.source.kubeconfig_entry(context)
    }

    pub fn target_entry(&self, context: &str) -> Entry {
        self.target.kubeconfig_entry(context)
    }

    pub fn kubectl(&self) -> PathBuf {
        self.bins
            .kubectl()
            .expect("kubectl of the cluster's release")
    }
}

/// A client (of the calling test's runtime) for a kubeconfig entry.
pub async fn client(entry: Entry) -> Client {
    let name = entry.name.clone();
    kubeconfig::client(&[entry], &name).await.expect("client")
}

/// Clients of both clusters for the calling test.
pub async fn clients() -> (Client, Client) {
    let sh = shared();
    (
        client(sh.source_entry("source")).await,
        client(sh.target_entry("target")).await,
    )
}

/// One test's migration: its names, and clients of both clusters.
pub struct Env {
    pub names: Names,
    pub src: Client,
    pub dst: Client,
}

/// The application seeded in namespace `<id>-sante` with files in its volumes, and everything
/// registered (SovereignClusters `<id>-aws`, `<id>-quebec` in shard `<id>`); the workload's
/// spec is the demo's with `patch` merged over it. No operator runs yet.
pub async fn start(id: &str, patch: Value) -> Env {
    start_with(id, patch, |_| {}).await
}

/// The same, with the application's objects changed by `edit` before they are seeded.
pub async fn start_with(id: &str, patch: Value, edit: impl FnOnce(&mut Vec<Value>)) -> Env {
    let sh = shared();
    let (src, dst) = clients().await;
    let names = Names::for_test(id);
    let mut app = demo::application(&names.app);
    edit(&mut app);
    sovereign::sandbox::objects::apply_all(&src, &app, "e2e-test")
        .await
        .expect("seed the application");
    demo::register(
        &sh.source.kubeconfig_yaml("source"),
        &dst,
        &names,
        "qc-sovereign",
        &patch,
    )
    .await
    .expect("register");
    let env = Env { names, src, dst };
    env.write_files().await;
    env
}

impl Env {
    /// Files in every source volume: text, a CSV, a binary blob, a symlink, an empty directory.
    async fn write_files(&self) {
        for claim in CLAIMS {
            let dir = self.source_volume(claim).await;
            std::fs::create_dir_all(dir.join("records/2026")).expect("mkdir");
            std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
            for i in 0..40 {
                let body = format!("patient,{i},visit,{}\n", i * 7).repeat(50 + i);
                std::fs::write(dir.join(format!("records/2026/{i:03}.csv")), body).expect("write");
            }
            let mut blob = vec![0u8; 3 << 20];
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ claim.len() as u64;
            for b in blob.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            std::fs::write(dir.join("scan.bin"), &blob).expect("blob");
            std::fs::write(dir.join("README.txt"), format!("volume {claim}\n")).expect("readme");
            std::os::unix::fs::symlink("records/2026/001.csv", dir.join("latest.csv"))
                .expect("symlink");
            std::fs::set_permissions(
                dir.join("README.txt"),
                std::fs::Permissions::from_mode(0o640),
            )
            .expect("chmod");
        }
    }

    /// The directory behind a source claim, once it is bound.
    pub async fn source_volume(&self, claim: &str) -> PathBuf {
        let ns = self.names.app.clone();
        eventually(&format!("source PVC {ns}/{claim} bound"), || async {
            sovereign::sandbox::storage::claim_dir(&self.src, &ns, claim)
                .await
                .filter(|d| d.is_dir())
        })
        .await
    }

    /// The directory behind a target claim, once it is bound.
    pub async fn target_volume(&self, claim: &str) -> PathBuf {
        let ns = self.names.target_app.clone();
        eventually(&format!("target PVC {ns}/{claim} bound"), || async {
            sovereign::sandbox::storage::claim_dir(&self.dst, &ns, claim)
                .await
                .filter(|d| d.is_dir())
        })
        .await
    }

    pub fn workloads(&self) -> Api<SovereignWorkload> {
        Api::namespaced(self.dst.clone(), &self.names.workloads)
    }

    pub async fn workload(&self) -> Option<SovereignWorkload> {
        self.workloads()
            .get_opt(&self.names.workload)
            .await
            .ok()
            .flatten()
    }

    /// The operator's flags for this test: its shard, its namespace, its Lease.
    pub fn args(&self, identity: &str) -> RunArgs {
        let mut args = RunArgs::embedded(identity);
        args.namespace = self.names.operator.clone();
        args.watch_label_selector = self.names.selector();
        args.lease_name = format!(
            "sovereign-operator-{}",
            self.names.shard.clone().unwrap_or_default()
        );
        // Often, so that a drift test sees the check run again within seconds.
        args.residency_recheck = Duration::from_secs(1);
        args
    }

    /// The operator, in-process against the target, until the returned sender fires (or the
    /// task is aborted: a kill at an arbitrary instant).
    pub fn operator(
        &self,
        identity: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        self.operator_with(self.dst.clone(), identity)
    }

    /// The same, reaching the target through `client` (a fault proxy, say).
    pub fn operator_with(
        &self,
        client: Client,
        identity: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let args = self.args(identity);
        let task = tokio::spawn(async move {
            if let Err(e) = run_with(client, args, async {
                let _ = rx.await;
            })
            .await
            {
                eprintln!("[operator] stopped with an error: {e}");
            }
        });
        (tx, task)
    }

    /// Every claim's tree in the target equals the source's, walked on both sides.
    pub async fn assert_volumes_equal(&self) {
        for claim in CLAIMS {
            let a = self.source_volume(claim).await;
            let b = self.target_volume(claim).await;
            assert_eq!(tree(&a), tree(&b), "{claim}");
        }
    }

    /// Removes what the test made in both clusters (its namespaces and SovereignClusters), so
    /// that the shared nodes' capacity is there for the next tests.
    pub async fn cleanup(self) {
        let dp = DeleteParams::background();
        let nss_src: Api<Namespace> = Api::all(self.src.clone());
        let _ = nss_src.delete(&self.names.app, &dp).await;
        let nss_dst: Api<Namespace> = Api::all(self.dst.clone());
        for ns in [
            &self.names.target_app,
            &self.names.workloads,
            &self.names.operator,
        ] {
            let _ = nss_dst.delete(ns, &dp).await;
        }
        let clusters: Api<SovereignCluster> = Api::all(self.dst.clone());
        for c in [&self.names.source_cluster, &self.names.target_cluster] {
            let _ = clusters.delete(c, &dp).await;
        }
    }
}

/// Stops an operator started by `Env::operator`: its shutdown signal, then at most a minute for
/// it to end (an operator that does not stop on SIGTERM is a defect, not a slow test).
pub async fn stop_operator(
    stop: tokio::sync::oneshot::Sender<()>,
    op: tokio::task::JoinHandle<()>,
) {
    let _ = stop.send(());
    let abort = op.abort_handle();
    if tokio::time::timeout(Duration::from_secs(60), op)
        .await
        .is_err()
    {
        abort.abort();
        panic!("the operator did not stop within 60s of its shutdown signal");
    }
}

/// Prints the workload's phase and message when they change: the story of a run, in the log.
pub fn trace(last: &std::sync::Mutex<String>, w: &SovereignWorkload) {
    let line = format!(
        "{} — {}",
        phase(w),
        w.status
            .as_ref()
            .and_then(|s| s.message.clone())
            .unwrap_or_default()
    );
    let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
    if *l != line {
        eprintln!("[workload] {line}");
        *l = line;
    }
}

pub fn phase(w: &SovereignWorkload) -> String {
    w.status
        .as_ref()
        .and_then(|s| s.phase)
        .map(|p| p.as_str().to_string())
        .unwrap_or_default()
}

pub fn condition(w: &SovereignWorkload, type_: &str) -> Option<(String, String, String)> {
    w.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls until `f` gives a value (4 minutes at most: the movers run real processes on shared
/// cores, and the controllers are real).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tree as comparable facts: relative path → (type, mode, size, content digest or link target).
pub fn tree(root: &Path) -> BTreeMap<String, (char, u32, u64, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, u64, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)
                    .expect("readlink")
                    .display()
                    .to_string();
                out.insert(rel, ('l', 0, 0, target));
            } else if meta.is_dir() {
                out.insert(rel, ('d', mode, 0, String::new()));
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(
                    rel,
                    (
                        'f',
                        mode,
                        meta.len(),
                        blake3::hash(&bytes).to_hex().to_string(),
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
