//! The sandbox: simulated Kubernetes API servers on loopback that the real `kubectl` and the
//! operator's own `kube` client use. One process can serve several clusters, each on its own
//! address with its own kubeconfig context.
//!
//! Layout: `store` (objects, resourceVersions, watch history) → `api` (the apiserver's rules,
//! also the in-process API for controllers) → `http` (routing, negotiation, watches). Around
//! them: `registry` (kinds), `schema` (CRD validation and CEL), `patch` and `apply` (patches and
//! server-side apply), `table`, `discovery`, `openapi`, `gc`, `faults`, `protobuf`, `kubeconfig`,
//! `seed`, and `cli` (`sovereign sandbox`). `controllers` makes the cluster behave: workloads
//! create pods, the scheduler places them, volumes bind to real directories, Services get
//! addresses and a proxy, and the kubelet runs the project's own image as real processes.

pub mod agent;
pub mod api;
pub mod apply;
pub mod cluster;
pub mod controlplane;
pub mod network;
pub mod objects;
pub mod process;
pub mod profiles;
pub mod storage;
pub mod supervise;
pub mod cli;
pub mod controllers;
pub mod demo;
pub mod demo_data;
pub mod discovery;
pub mod errors;
pub mod faults;
pub mod gc;
pub mod http;
pub mod kubeconfig;
pub mod logs;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod pod_security;
pub mod progress;
pub mod protobuf;
pub mod registry;
pub mod requests;
pub mod schema;
pub mod seed;
pub mod selectors;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use api::{
    Cluster, DeleteOptions, Deleted, FieldValidation, ListOptions, Propagation, Settings, Sub,
    WriteOptions, WriteResult,
};
pub use controllers::ExecImage;
pub use errors::{ApiError, SandboxError};
pub use faults::Faults;

/// How a simulated cluster is built.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Where the cluster keeps its files: `<data_dir>/<cluster name>/` holds the volumes, the
    /// pods' directories and the containers' logs.
    pub data_dir: PathBuf,
    /// Remove `<data_dir>/<cluster name>/` on shutdown.
    pub remove_on_shutdown: bool,
    /// The binary executable images run. None: the running executable when it is the
    /// `sovereign` binary itself (a test harness is not: tests set
    /// `env!("CARGO_BIN_EXE_sovereign")`), else executable images are only simulated.
    pub exec_binary: Option<PathBuf>,
    /// Which images run for real (default: repositories ending in `/sovereign-operator` or
    /// `/sovereign`).
    pub exec_images: Vec<ExecImage>,
    /// Run the simulated controllers, scheduler, kubelet and kube-proxy. Without them objects
    /// are only stored, as on an apiserver with no controller manager.
    pub controllers: bool,
}

impl SimOptions {
    /// A data directory under the system temp dir, unique to this cluster, removed on shutdown.
    pub fn temporary() -> SimOptions {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "sovereign-sandbox-{}-{n}-{}",
            std::process::id(),
            meta::random_suffix()
        ));
        SimOptions {
            data_dir: dir,
            remove_on_shutdown: true,
            exec_binary: None,
            exec_images: ExecImage::defaults(),
            controllers: true,
        }
    }

    /// A data directory that stays (the `sovereign sandbox` command's `--dir`).
    pub fn in_dir(dir: &Path) -> SimOptions {
        SimOptions {
            data_dir: dir.to_path_buf(),
            remove_on_shutdown: false,
            ..SimOptions::temporary()
        }
    }

    fn binary(&self) -> Option<PathBuf> {
        if let Some(b) = &self.exec_binary {
            return Some(b.clone());
        }
        let exe = std::env::current_exe().ok()?;
        (exe.file_stem().and_then(|s| s.to_str()) == Some("sovereign")).then_some(exe)
    }
}

/// One simulated cluster, served over HTTP on loopback until `shutdown`.
pub struct SimCluster {
    name: String,
    addr: SocketAddr,
    cluster: Arc<Cluster>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    gc: tokio::task::JoinHandle<()>,
    host: Arc<controllers::Host>,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    /// Declared last: removed after everything else stopped, also when a test drops the
    /// cluster without `shutdown` (its child processes die with their supervisors' runtime).
    _data: DataDir,
}

/// A temporary data directory, removed when dropped (kept when it is the user's `--dir`).
struct DataDir {
    dir: PathBuf,
    remove: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the sandbox's data");
        }
        // The per-cluster temporary parent, when nothing else is left in it.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

impl SimCluster {
    /// Binds 127.0.0.1:0 and serves until shutdown, with a temporary data directory.
    pub async fn start(name: &str) -> Result<SimCluster, SandboxError> {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds the given address and serves until shutdown, with a temporary data directory.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Result<SimCluster, SandboxError> {
        Self::start_with(name, addr, SimOptions::temporary()).await
    }

    /// Binds the given address and serves until shutdown, built as the options say.
    pub async fn start_with(
        name: &str,
        addr: SocketAddr,
        options: SimOptions,
    ) -> Result<SimCluster, SandboxError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let addr = listener.local_addr()?;
        let cluster = Arc::new(Cluster::new(name));
        seed::base(&cluster)?;
        seed::snapshot_crds(&cluster)?;
        let (shutdown, rx) = watch::channel(false);
        let server = tokio::spawn(http::serve(listener, cluster.clone(), rx));
        let gc = tokio::spawn(gc::run(Arc::downgrade(&cluster)));
        let dir = options.data_dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let data = DataDir {
            dir: dir.clone(),
            remove: options.remove_on_shutdown,
        };
        let host = Arc::new(controllers::Host {
            dir,
            net: controllers::net::Block::reserve(),
            exec: controllers::exec::ExecConfig {
                images: options.exec_images.clone(),
                binary: options.binary(),
            },
            processes: Default::default(),
            api_addr: addr,
        });
        let tasks = if options.controllers {
            controllers::start(&cluster, &host)
        } else {
            Vec::new()
        };
        tracing::info!(cluster = name, %addr, dir = %host.dir.display(), "simulated cluster serving");
        Ok(SimCluster {
            name: name.to_string(),
            addr,
            cluster,
            shutdown,
            server,
            gc,
            host,
            controllers: tasks,
            _data: data,
        })
    }

    /// `<data_dir>/<cluster name>`: the cluster's volumes, pod directories and logs.
    pub fn data_dir(&self) -> &Path {
        self.host.dir()
    }

    /// The directory behind a bound PersistentVolumeClaim (None while it is not bound): what
    /// seeders write and tests read, the same files executed pods see at the claim's mountPath.
    pub fn volume_path(&self, namespace: &str, pvc: &str) -> Option<PathBuf> {
        controllers::volumes::claim_dir(&self.cluster, namespace, pvc).filter(|p| p.is_dir())
    }

    /// The second octet of this cluster's loopback addresses (pods, nodes, load balancers are
    /// all in `127.<octet>.0.0/16`).
    pub fn loopback_octet(&self) -> u8 {
        self.host.net.octet()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig with this one cluster, its context named `context`.
    pub fn kubeconfig_yaml(&self, context: &str) -> String {
        kubeconfig::render(&[(context, self.url())], context)
    }

    /// A `kube::Client` for this cluster (default namespace `default`).
    pub async fn client(&self) -> Result<kube::Client, SandboxError> {
        let uri: ::http::Uri =
            self.url()
                .parse()
                .map_err(|e: ::http::uri::InvalidUri| SandboxError::Client {
                    cluster: self.name.clone(),
                    message: e.to_string(),
                })?;
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).map_err(|e| SandboxError::Client {
            cluster: self.name.clone(),
            message: e.to_string(),
        })
    }

    /// Fault knobs: error share and codes, latency, dropped watches, unreachable.
    pub fn faults(&self) -> &Faults {
        &self.cluster.faults
    }

    /// The HTTP requests this cluster has served so far, per verb.
    pub fn requests(&self) -> requests::RequestCounts {
        self.cluster.requests.snapshot()
    }

    /// The in-process API (what the HTTP server and the simulated controllers use).
    pub fn api(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The object store (resourceVersions, events, compaction).
    pub fn store(&self) -> &store::Store {
        &self.cluster.store
    }

    /// Create (or replace) an object as is, status included, with no validation: for seeding.
    pub fn apply_object(&self, obj: Value) -> Result<Arc<Value>, SandboxError> {
        Ok(self.cluster.seed_object(obj)?)
    }

    /// Change the cluster's knobs (bookmark interval, watch cap, reported version).
    pub fn configure(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self
            .cluster
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()));
    }

    /// Stop serving: open connections and watches end, controllers stop, every process the
    /// kubelet started is killed and reaped, and a temporary data directory is removed.
    pub async fn shutdown(self) {
        for t in &self.controllers {
            t.abort();
        }
        for t in self.controllers {
            let _ = t.await;
        }
        self.host.processes.kill_all().await;
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        self.gc.abort();
        let _ = self.gc.await;
    }
}

/// Writes one kubeconfig holding several clusters (context name = given name), current-context as given.
pub fn write_kubeconfig(
    path: &std::path::Path,
    clusters: &[(&str, &SimCluster)],
    current: &str,
) -> std::io::Result<()> {
    let entries: Vec<(&str, String)> = clusters.iter().map(|(n, c)| (*n, c.url())).collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, kubeconfig::render(&entries, current))
}
