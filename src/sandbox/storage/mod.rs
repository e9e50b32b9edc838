//! Host-path volumes and CSI snapshots for a cluster whose control plane is upstream Kubernetes:
//! the node agent plays every CSI driver the provider profile's classes name, with real
//! directories under the cluster's directory.
//!
//! - `provisioner`: the external-provisioner (sig-storage-lib-external-provisioner + the CSI
//!   external-provisioner). A claim that KCM's PV controller hands to a class's provisioner gets a
//!   PersistentVolume `pvc-<claim uid>` backed by `volumes/<pv>/` (a copy of a snapshot when the
//!   claim is restored from one, see `restore`); KCM binds it. The PV's shape is `volume`; the
//!   classes of in-tree plugins that Kubernetes migrated to CSI are `intree`.
//! - `reclaim`: the provisioner's half of a Released volume: its directory and the PV go (reclaim
//!   policy Delete) or stay (Retain).
//! - `contents`: the csi-snapshotter sidecar (a content's physical snapshot, a copy of the
//!   volume's directory under `snapshots/<handle>/`, and its deletion). The snapshot-controller
//!   itself is upstream's, started with the control plane.
//!
//! Everything is level-triggered from what the API shows and named deterministically (`names`),
//! so an agent killed at any point resumes: a half-made copy (`tree`) is redone, a PV or content
//! created but not yet recorded is found by its name.

pub mod contents;
pub mod crd;
pub mod events;
pub mod intree;
pub mod names;
pub mod patches;
pub mod provisioner;
pub mod reclaim;
pub mod restore;
pub mod tree;
pub mod volume;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use tokio::sync::watch;

use super::agent::Host;

/// Where a sandbox PV records the directory behind it (its CSI volume attributes; an annotation
/// on the PV of a migrated in-tree class, whose source has no attributes).
pub const PATH_ATTRIBUTE: &str = "sandbox.sovereign.dev/path";

/// How soon a reconcile that waits for another object looks again (watches usually wake it first).
pub(crate) const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cluster {cluster}: {what}: {source}")]
    Api {
        cluster: String,
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cluster {cluster}: {what} ({}): {source}", path.display())]
    Io {
        cluster: String,
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Another writer got there first: retry soon, not an incident.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StorageError::Api { source, .. }
            if matches!(source.as_ref(), kube::Error::Api(s) if s.is_conflict()))
    }
}

/// Wraps a kube error with the cluster and what was being done.
pub(crate) fn api_err(
    host: &Host,
    what: impl Into<String>,
) -> impl FnOnce(kube::Error) -> StorageError {
    let cluster = host.cluster.clone();
    let what = what.into();
    move |source| StorageError::Api {
        cluster,
        what,
        source: Box::new(source),
    }
}

/// Runs blocking file work (copies, removals) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    host: &Host,
    what: &str,
    path: PathBuf,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StorageError> {
    let io = |source| StorageError::Io {
        cluster: host.cluster.clone(),
        what: what.to_string(),
        path: path.clone(),
        source,
    };
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(io),
        Err(e) => Err(io(std::io::Error::other(e.to_string()))),
    }
}

/// A future that ends when the agent is told to stop (what each controller shuts down on).
pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the provisioner, the reclaimer and the snapshotter until shutdown.
pub async fn run(host: Arc<Host>, shutdown: watch::Receiver<bool>) {
    for dir in [host.volumes_dir(), host.snapshots_dir()] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(cluster = %host.cluster, dir = %dir.display(), error = %e, "cannot create the storage directory");
        }
        sweep_partial(&host, &dir);
    }
    tokio::join!(
        provisioner::run(host.clone(), stopped(shutdown.clone())),
        reclaim::run(host.clone(), stopped(shutdown.clone())),
        contents::run(host.clone(), stopped(shutdown)),
    );
}

/// Removes the copies an agent killed mid-copy left (`<name>.partial`): none is in flight before
/// the controllers start, and one whose object went meanwhile would never be redone.
fn sweep_partial(host: &Host, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "partial")
            && let Err(err) = tree::remove(&path)
        {
            tracing::warn!(cluster = %host.cluster, dir = %path.display(), error = %err, "cannot remove an interrupted copy");
        }
    }
}

/// The directory behind a PersistentVolume (its CSI attribute, a hostPath/local path, or the
/// agent's annotation on a migrated in-tree volume).
pub fn pv_dir(pv: &PersistentVolume) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    spec.csi
        .as_ref()
        .and_then(|c| c.volume_attributes.as_ref())
        .and_then(|a| a.get(PATH_ATTRIBUTE).cloned())
        .or_else(|| spec.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.local.as_ref().map(|l| l.path.clone()))
        .or_else(|| {
            pv.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PATH_ATTRIBUTE).cloned())
        })
        .map(PathBuf::from)
}

/// The directory behind a bound claim (None while it is not bound or cannot be read).
pub async fn claim_dir(client: &kube::Client, namespace: &str, claim: &str) -> Option<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = pvcs.get_opt(claim).await.ok().flatten()?;
    if pvc.status.as_ref()?.phase.as_deref() != Some("Bound") {
        return None;
    }
    let name = pvc.spec.as_ref()?.volume_name.clone()?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    pv_dir(&pvs.get_opt(&name).await.ok().flatten()?)
}
