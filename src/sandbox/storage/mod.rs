//! Host-path volumes and snapshots (placeholder).

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use tokio::sync::watch;

use super::agent::Host;

/// Where a sandbox PV records the directory behind it (its CSI volume attributes).
pub const PATH_ATTRIBUTE: &str = "sandbox.sovereign.dev/path";

pub async fn run(_host: Arc<Host>, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.changed().await;
}

/// The directory behind a PersistentVolume (its CSI attribute, or a hostPath/local path).
pub fn pv_dir(pv: &PersistentVolume) -> Option<PathBuf> {
    let spec = pv.spec.as_ref()?;
    spec.csi
        .as_ref()
        .and_then(|c| c.volume_attributes.as_ref())
        .and_then(|a| a.get(PATH_ATTRIBUTE).cloned())
        .or_else(|| spec.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.local.as_ref().map(|l| l.path.clone()))
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
