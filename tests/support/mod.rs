//! What the migration tests share: two sandbox clusters (an EKS-like source in us-east-1 and a
//! Québec target), the demo application with real files in its volumes, the operator running
//! in-process against the target, and helpers to read both sides.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sovereign::api::SovereignWorkload;
use sovereign::controller::{RunArgs, run_with};
use sovereign::sandbox::{SimCluster, SimOptions, demo, seed};
use sovereign::telemetry::logging::LogFormat;

/// The demo application's claims in namespace `sante` (the database's data and WAL, the documents).
pub const CLAIMS: [&str; 3] = ["dossier-documents", "data-dossier-db-0", "wal-dossier-db-0"];

pub struct Sandbox {
    pub source: SimCluster,
    pub target: SimCluster,
    pub src: Client,
    pub dst: Client,
}

pub fn options() -> SimOptions {
    let mut o = SimOptions::temporary();
    o.exec_binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_sovereign")));
    o
}

/// Both clusters, the application seeded with files in its volumes, everything registered; the
/// workload's spec is `demo::register`'s with `patch` merged over it (before any operator runs).
pub async fn start(patch: Value) -> Sandbox {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sovereign=warn".into()))
        .with_test_writer()
        .try_init();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let source = SimCluster::start_with("source", any, options())
        .await
        .expect("source");
    seed::eks_us_east_1(source.api()).expect("seed source");
    let target = SimCluster::start_with("target", any, options())
        .await
        .expect("target");
    seed::qc_sovereign(target.api()).expect("seed target");
    demo::seed_application(&source).expect("application");
    demo::register(&source, &target, "qc-sovereign").expect("register");
    let src = source.client().await.expect("source client");
    let dst = target.client().await.expect("target client");
    let workloads: Api<SovereignWorkload> = Api::namespaced(dst.clone(), demo::WORKLOAD_NAMESPACE);
    if patch != json!({}) {
        workloads
            .patch(
                demo::WORKLOAD,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": patch})),
            )
            .await
            .expect("patch the workload");
    }
    let sb = Sandbox {
        source,
        target,
        src,
        dst,
    };
    sb.write_files().await;
    sb
}

impl Sandbox {
    /// Files in every source volume: text, a CSV, a binary blob, a symlink, an empty directory.
    async fn write_files(&self) {
        for claim in CLAIMS {
            let dir = eventually(&format!("source PVC {claim} bound"), || async {
                self.source.volume_path("sante", claim)
            })
            .await;
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

    pub fn workloads(&self) -> Api<SovereignWorkload> {
        Api::namespaced(self.dst.clone(), demo::WORKLOAD_NAMESPACE)
    }

    pub async fn workload(&self) -> Option<SovereignWorkload> {
        self.workloads()
            .get_opt(demo::WORKLOAD)
            .await
            .ok()
            .flatten()
    }

    /// The operator, in-process against the target, until the returned sender fires (or the task
    /// is aborted: a kill at an arbitrary instant).
    pub fn operator(
        &self,
        identity: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.dst.clone();
        let args = RunArgs {
            metrics_addr: "127.0.0.1:0".parse().expect("addr"),
            log_format: LogFormat::Text,
            leader_elect: false,
            lease_name: "sovereign-operator".into(),
            namespace: "sovereign-system".into(),
            identity: Some(identity.into()),
            secret_namespaces: vec![],
            cluster_policy: "quebec-strict".into(),
            catalog_configmap: None,
            concurrency: 4,
            mover_image: sovereign::controller::context::DEFAULT_MOVER_IMAGE.into(),
            fx_configmap: None,
            // Often, so that a drift test sees the check run again within seconds.
            residency_recheck: std::time::Duration::from_secs(1),
            watch_label_selector: None,
        };
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
    pub fn assert_volumes_equal(&self) {
        for claim in CLAIMS {
            let a = self
                .source
                .volume_path("sante", claim)
                .expect("source volume");
            let b = self
                .target
                .volume_path("sante", claim)
                .expect("target volume");
            assert_eq!(tree(&a), tree(&b), "{claim}");
        }
    }

    pub async fn shutdown(self) {
        self.source.shutdown().await;
        self.target.shutdown().await;
    }
}

/// Prints the workload's phase and message when they change: the story of a run, in the test's log.
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

/// Polls until `f` gives a value (3 minutes at most: the movers run real processes).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
