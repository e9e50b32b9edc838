//! The sandbox: simulated Kubernetes API servers on loopback that the real `kubectl` and the
//! operator's own `kube` client use. One process can serve several clusters, each on its own
//! address with its own kubeconfig context.
//!
//! Layout: `store` (objects, resourceVersions, watch history) → `api` (the apiserver's rules,
//! also the in-process API for controllers) → `http` (routing, negotiation, watches). Around
//! them: `registry` (kinds), `schema` (CRD validation and CEL), `patch` and `apply` (patches and
//! server-side apply), `table`, `discovery`, `openapi`, `gc`, `faults`, `protobuf`, `kubeconfig`,
//! `seed`, and `cli` (`sovereign sandbox`).

pub mod api;
pub mod apply;
pub mod cli;
pub mod demo;
pub mod discovery;
pub mod errors;
pub mod faults;
pub mod gc;
pub mod http;
pub mod kubeconfig;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod seed;
pub mod selectors;
pub mod store;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch;

pub use api::{
    Cluster, DeleteOptions, Deleted, FieldValidation, ListOptions, Propagation, Settings, Sub,
    WriteOptions, WriteResult,
};
pub use errors::{ApiError, SandboxError};
pub use faults::Faults;

/// One simulated cluster, served over HTTP on loopback until `shutdown`.
pub struct SimCluster {
    name: String,
    addr: SocketAddr,
    cluster: Arc<Cluster>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    gc: tokio::task::JoinHandle<()>,
}

impl SimCluster {
    /// Binds 127.0.0.1:0 and serves until shutdown.
    pub async fn start(name: &str) -> Result<SimCluster, SandboxError> {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Binds the given address and serves until shutdown.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Result<SimCluster, SandboxError> {
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
        tracing::info!(cluster = name, %addr, "simulated cluster serving");
        Ok(SimCluster {
            name: name.to_string(),
            addr,
            cluster,
            shutdown,
            server,
            gc,
        })
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

    /// Stop serving: open connections and watches end.
    pub async fn shutdown(self) {
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
