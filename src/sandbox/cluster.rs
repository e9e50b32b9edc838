//! One sandbox cluster: the upstream control plane (`controlplane`), the add-ons a managed
//! cluster ships (the CSI snapshot CRDs), the provider profile's classes, and the node agent
//! (`agent`) for the profile's nodes. Ready when every node is Ready and untainted and the
//! controller manager has made the `default` ServiceAccount: a pod can then be created and run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use serde_json::Value;

use super::agent::{Agent, ExecImage, Host, nodes};
use super::controlplane::binaries::Binaries;
use super::controlplane::kubeconfig::{self, Entry};
use super::controlplane::{ControlPlane, ControlPlaneConfig, ControlPlaneError};
use super::network::addresses::{AddressError, Block};
use super::objects::{self, ApplyError};
use super::profiles::Profile;

const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    #[error(transparent)]
    Addresses(#[from] AddressError),
    #[error("cluster {cluster}: {source}")]
    Apply {
        cluster: String,
        #[source]
        source: ApplyError,
    },
    #[error("cluster {cluster}: {what}: {source}")]
    Api {
        cluster: String,
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cluster {cluster}: {what}")]
    NotReady { cluster: String, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Binaries(#[from] super::controlplane::binaries::BinariesError),
}

/// How a cluster is started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `source`, `target`: the name in certificates, logs and kubeconfig contexts.
    pub name: String,
    pub profile: Profile,
    /// The cluster's own directory (etcd's data, certificates, logs, volumes, pods).
    pub dir: PathBuf,
    /// fsync etcd (a user's `--dir`) or not (throwaway test clusters).
    pub durable: bool,
    /// Remove `dir` once stopped.
    pub remove_on_shutdown: bool,
    pub api_port: u16,
    /// This project's binary (supervisor of every process, and what its image runs).
    pub sovereign: PathBuf,
    pub exec_images: Vec<ExecImage>,
}

impl ClusterOptions {
    /// A throwaway cluster in a fresh directory under the system's temporary directory,
    /// removed on shutdown (tests).
    pub fn temporary(name: &str, profile: Profile, sovereign: &Path) -> ClusterOptions {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "sovereign-sandbox-{}-{n}-{name}",
            std::process::id()
        ));
        let mut o = ClusterOptions::new(name, profile, &dir, sovereign);
        o.remove_on_shutdown = true;
        o
    }

    pub fn new(name: &str, profile: Profile, dir: &Path, sovereign: &Path) -> ClusterOptions {
        ClusterOptions {
            name: name.to_string(),
            profile,
            dir: dir.to_path_buf(),
            durable: false,
            remove_on_shutdown: false,
            api_port: super::controlplane::DEFAULT_API_PORT,
            sovereign: sovereign.to_path_buf(),
            exec_images: ExecImage::defaults(),
        }
    }
}

pub struct Cluster {
    name: String,
    cp: ControlPlane,
    agent: Option<Agent>,
    host: Arc<Host>,
    admin: Entry,
    remove: Option<PathBuf>,
    started: Duration,
    resumed: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Cluster {
    /// Starts the cluster (or resumes the one in `opts.dir`) and waits until pods can run.
    pub async fn start(opts: ClusterOptions, bins: &Binaries) -> Result<Cluster, ClusterError> {
        let t = Instant::now();
        std::fs::create_dir_all(&opts.dir).map_err(io_err(&opts.dir))?;
        let octet_file = opts.dir.join("octet");
        let resumed = opts.dir.join("etcd/member").is_dir();
        let preferred = std::fs::read_to_string(&octet_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let net = Arc::new(Block::reserve(preferred)?);
        std::fs::write(&octet_file, format!("{}\n", net.octet())).map_err(io_err(&octet_file))?;
        let cfg = ControlPlaneConfig {
            name: opts.name.clone(),
            dir: opts.dir.clone(),
            address: net.control_plane(),
            api_port: opts.api_port,
            durable: opts.durable,
            sovereign: opts.sovereign.clone(),
        };
        let mut cp = ControlPlane::start(&cfg, bins).await?;
        let admin = cp.admin_kubeconfig(&opts.name);
        let admin_client = cp.admin_client().await?;
        let api_err = |what: &str| {
            let cluster = opts.name.clone();
            let what = what.to_string();
            move |e: kube::Error| ClusterError::Api {
                cluster,
                what,
                source: Box::new(e),
            }
        };
        install_addons(&opts.name, &admin_client, bins, &opts.profile).await?;
        cp.start_snapshot_controller(&cfg, bins)?;
        // The agent's own identity (a kubelet's and a cloud controller's rights, in one).
        let agent_entry = cp.identity("node-agent", "sandbox:node-agent", &["system:masters"])?;
        let client = kubeconfig::client(&[agent_entry], "node-agent")
            .await
            .map_err(|message| ControlPlaneError::Client {
                cluster: opts.name.clone(),
                message,
            })?;
        let host = Arc::new(Host {
            cluster: opts.name.clone(),
            dir: opts.dir.clone(),
            net,
            client,
            pki: cp.pki().clone(),
            api: cp.api(),
            profile: opts.profile.clone(),
            sovereign: opts.sovereign.clone(),
            exec_images: opts.exec_images.clone(),
        });
        let agent = Agent::start(host.clone())
            .await
            .map_err(api_err("registering the nodes"))?;
        let mut cluster = Cluster {
            name: opts.name.clone(),
            cp,
            agent: Some(agent),
            host,
            admin,
            remove: opts.remove_on_shutdown.then(|| opts.dir.clone()),
            started: Duration::ZERO,
            resumed,
        };
        if let Err(e) = cluster.wait_ready(&admin_client).await {
            cluster.shutdown().await;
            return Err(e);
        }
        cluster.started = t.elapsed();
        Ok(cluster)
    }

    async fn wait_ready(&mut self, client: &kube::Client) -> Result<(), ClusterError> {
        let t = Instant::now();
        let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        loop {
            self.cp.check_alive()?;
            let nodes_ready = nodes::all_ready(&self.host).await.unwrap_or(false);
            let sa_ready = sa.get_opt("default").await.ok().flatten().is_some();
            if nodes_ready && sa_ready {
                return Ok(());
            }
            if t.elapsed() > READY_TIMEOUT {
                return Err(ClusterError::NotReady {
                    cluster: self.name.clone(),
                    what: format!(
                        "after {}s: nodes ready: {nodes_ready}, default ServiceAccount: {sa_ready} (logs in {})",
                        READY_TIMEOUT.as_secs(),
                        self.dir().join("logs").display()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `https://127.A.0.1:6443`
    pub fn url(&self) -> String {
        self.cp.url()
    }

    pub fn dir(&self) -> &Path {
        &self.host.dir
    }

    /// How long the start took, and whether it resumed an existing cluster.
    pub fn started_in(&self) -> (Duration, bool) {
        (self.started, self.resumed)
    }

    pub fn control_plane(&self) -> &ControlPlane {
        &self.cp
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// The second octet of this cluster's loopback addresses.
    pub fn loopback_octet(&self) -> u8 {
        self.host.net.octet()
    }

    /// The admin's kubeconfig entry, named `context`.
    pub fn kubeconfig_entry(&self, context: &str) -> Entry {
        self.admin.clone().named(context)
    }

    /// A kubeconfig with this one cluster, its context named `context`.
    pub fn kubeconfig_yaml(&self, context: &str) -> String {
        kubeconfig::render(&[self.kubeconfig_entry(context)], context)
    }

    /// A client with the admin identity (default namespace `default`).
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        Ok(self.cp.admin_client().await?)
    }

    /// The directory behind a bound PersistentVolumeClaim (None while it is not bound).
    pub async fn volume_path(&self, namespace: &str, pvc: &str) -> Option<PathBuf> {
        crate::sandbox::storage::claim_dir(&self.host.client, namespace, pvc)
            .await
            .filter(|p| p.is_dir())
    }

    /// Stops the agent (and every pod's process), then the control plane; removes a temporary
    /// directory.
    pub async fn shutdown(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop().await;
        }
        self.cp.stop().await;
        if let Some(dir) = self.remove.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the cluster's directory");
        }
    }
}

/// The snapshot CRDs as published, then the profile's classes (the snapshot class once its CRD
/// is served).
async fn install_addons(
    cluster: &str,
    client: &kube::Client,
    bins: &Binaries,
    profile: &Profile,
) -> Result<(), ClusterError> {
    let apply_err = |source| ClusterError::Apply {
        cluster: cluster.to_string(),
        source,
    };
    // The API server reaches the kubelets as `kube-apiserver-kubelet-client` (kubeadm's binding).
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kube-apiserver-kubelet-api-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:kubelet-api-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": super::controlplane::APISERVER_KUBELET_CLIENT}]
    });
    objects::apply(client, &binding, "sandbox-addons")
        .await
        .map_err(apply_err)?;
    let mut crds = Vec::new();
    for text in bins.addon_manifests()? {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let Ok(mut v) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            if !v.is_object() {
                continue;
            }
            in_kube_system(&mut v);
            let obj = objects::apply(client, &v, "sandbox-addons")
                .await
                .map_err(apply_err)?;
            if v["kind"] == "CustomResourceDefinition" {
                crds.push(kube::ResourceExt::name_any(&obj));
            }
        }
    }
    // Served before anything (the snapshot-controller, the agent, a user) asks for them.
    objects::wait_established(client, &crds, Duration::from_secs(60))
        .await
        .map_err(|what| ClusterError::NotReady {
            cluster: cluster.to_string(),
            what,
        })?;
    let t = Instant::now();
    for obj in &profile.objects {
        loop {
            match objects::apply(client, obj, "sandbox-cloud").await {
                Ok(_) => break,
                // A CRD applied a moment ago is not served yet.
                Err(_) if t.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(apply_err(e)),
            }
        }
    }
    Ok(())
}

/// The snapshot-controller's RBAC is published for kustomize to place in `kube-system`: its
/// namespaced objects and ServiceAccount subjects get that namespace where they name none.
fn in_kube_system(v: &mut Value) {
    let namespaced = matches!(
        v["kind"].as_str(),
        Some("ServiceAccount" | "Role" | "RoleBinding")
    );
    if namespaced && v["metadata"]["namespace"].is_null() {
        v["metadata"]["namespace"] = "kube-system".into();
    }
    // `get_mut`, not indexing: indexing would add a `subjects: null` to every other kind.
    if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if s["kind"] == "ServiceAccount" && s["namespace"].is_null() {
                s["namespace"] = "kube-system".into();
            }
        }
    }
}

/// Writes one kubeconfig holding several clusters (context name = given name).
pub fn write_kubeconfig(path: &Path, entries: &[Entry], current: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    super::controlplane::pki::write_private(path, &kubeconfig::render(entries, current), 0o600)
        .map_err(|e| std::io::Error::other(e.to_string()))
}
