//! `consistency: Snapshot`: each pass reads a CSI VolumeSnapshot of the source claim taken at the
//! pass's start (crash-consistent, point in time, while the application writes), restored into a
//! claim of its own that the pass's sender mounts read-only.
//!
//! Observe, then one action: the VolumeSnapshot `<vt>-snap-<pass>` is created (with the class of
//! the claim's CSI driver) → ready to use → the claim `<vt>-snap-<pass>` restored from it is
//! created → the sender may start. Both are found again by name, so a restarted operator resumes
//! where it was and never creates either twice. A snapshot that reports an error is deleted and
//! the attempt fails (the transfer's retries take a new one); both objects go once the pass is
//! verified, and with the transfer's other mover objects.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use tracing::warn;

use super::objects;
use crate::api::transfer::VolumeTransfer;
use crate::api::workload::keys;
use crate::controller::error::{Error, Result};
use crate::migrate::snapshot as api;

/// Where a pass's snapshot stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The restored claim exists: the sender reads it.
    Ready { claim: String },
    /// Something is under way; the sentence says what.
    Waiting(String),
    /// The snapshot failed (it was deleted): this attempt fails, the next takes a new one.
    Retry(String),
    /// Nothing a retry fixes (no class for the driver, a name taken by another object).
    Refused(String),
}

fn remote(
    vt: &VolumeTransfer,
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let name = if name.is_empty() {
        "(cluster-scoped)".to_string()
    } else {
        format!("{}/{name}", vt.spec.source.namespace)
    };
    let cluster = vt.spec.source.cluster.clone();
    move |source| Error::Remote {
        action,
        kind,
        name,
        cluster,
        source: Box::new(source),
    }
}

fn ours(vt: &VolumeTransfer, labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(keys::TRANSFER) == Some(&vt.name_any())
}

/// One step towards the claim a pass reads (see the module's description).
pub async fn prepare(vt: &VolumeTransfer, client: &Client, pass: i32) -> Result<Source> {
    let ns = vt.spec.source.namespace.as_str();
    let name = objects::snapshot_name(vt, pass);
    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &api::volume_snapshots());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let source = vt.spec.source.pvc.as_str();
    let Some(live) = claims.get_opt(source).await.map_err(remote(
        vt,
        "read",
        "PersistentVolumeClaim",
        source,
    ))?
    else {
        return Ok(Source::Retry(format!(
            "the source claim {source:?} does not exist"
        )));
    };
    let live_spec = live.spec.clone().unwrap_or_default();
    let Some(snap) =
        snapshots
            .get_opt(&name)
            .await
            .map_err(remote(vt, "read", "VolumeSnapshot", &name))?
    else {
        let inv = api::inventory(client).await.map_err(remote(
            vt,
            "list",
            "StorageClasses/VolumeSnapshotClasses",
            "",
        ))?;
        let class = match inv.class_for(live_spec.storage_class_name.as_deref()) {
            Ok(c) => c.name.clone(),
            Err(why) => {
                return Ok(Source::Refused(format!(
                    "claim {source:?}: {}",
                    why.message()
                )));
            }
        };
        match snapshots
            .create(
                &PostParams::default(),
                &objects::volume_snapshot(vt, pass, &class),
            )
            .await
        {
            Ok(_) => {}
            // Created by a reconcile that did not live to record it: observed next time.
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(remote(vt, "create", "VolumeSnapshot", &name)(e)),
        }
        return Ok(Source::Waiting(format!(
            "VolumeSnapshot {name} of {source:?} requested (class {class}); waiting for it to be ready to use"
        )));
    };
    if !ours(vt, snap.labels()) {
        return Ok(Source::Refused(format!(
            "a VolumeSnapshot {name} that this transfer did not create exists in namespace {ns:?}: rename or delete it"
        )));
    }
    if snap.metadata.deletion_timestamp.is_some() {
        return Ok(Source::Waiting(format!(
            "VolumeSnapshot {name} of a failed attempt is being deleted"
        )));
    }
    let status = &snap.data["status"];
    let ready = status["readyToUse"].as_bool() == Some(true);
    if !ready {
        if let Some(error) = status["error"]["message"].as_str() {
            // A new snapshot for the next attempt (the claim would restore from this one).
            remove_pass(vt, client, &name).await;
            return Ok(Source::Retry(format!("VolumeSnapshot {name}: {error}")));
        }
        return Ok(Source::Waiting(format!(
            "waiting for VolumeSnapshot {name} to be ready to use"
        )));
    }
    match claims
        .get_opt(&name)
        .await
        .map_err(remote(vt, "read", "PersistentVolumeClaim", &name))?
    {
        Some(c) if !ours(vt, c.labels()) => Ok(Source::Refused(format!(
            "a PersistentVolumeClaim {name} that this transfer did not create exists in namespace {ns:?}: rename or delete it"
        ))),
        Some(c) if c.metadata.deletion_timestamp.is_some() => Ok(Source::Waiting(format!(
            "the claim {name} of a failed attempt is being deleted"
        ))),
        Some(_) => Ok(Source::Ready { claim: name }),
        None => {
            let request = objects::restore_request(
                status["restoreSize"].as_str(),
                live_spec
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.as_str()),
            )
            .or_else(|| vt.spec.capacity.clone())
            .unwrap_or_else(|| "1Gi".into());
            let claim = objects::snapshot_claim(
                vt,
                pass,
                live_spec.storage_class_name.as_deref(),
                &request,
                &live_spec.access_modes.clone().unwrap_or_default(),
            );
            match claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(remote(vt, "create", "PersistentVolumeClaim", &name)(e)),
            }
            Ok(Source::Ready { claim: name })
        }
    }
}

/// Deletes one pass's snapshot, then its claim (best effort: a leftover is removed later).
async fn remove_pass(vt: &VolumeTransfer, client: &Client, name: &str) {
    let ns = vt.spec.source.namespace.as_str();
    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &api::volume_snapshots());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for r in [
        snapshots
            .delete(name, &DeleteParams::background())
            .await
            .err(),
        claims.delete(name, &DeleteParams::background()).await.err(),
    ]
    .into_iter()
    .flatten()
    {
        if !matches!(&r, kube::Error::Api(s) if s.is_not_found()) {
            warn!(transfer = %vt.name_any(), object = name, error = %r, "cannot delete a snapshot object");
        }
    }
}

/// Deletes every snapshot object of the transfer in the source: the VolumeSnapshots first, then
/// the claims restored from them (idempotent, best effort: a failure is retried by the next call).
pub async fn remove_all(vt: &VolumeTransfer, client: &Client) {
    let ns = vt.spec.source.namespace.as_str();
    let sel = ListParams::default().labels(&objects::selector(vt));
    let snapshots: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &api::volume_snapshots());
    match snapshots.list(&sel).await {
        Ok(list) => {
            for s in list {
                let _ = snapshots
                    .delete(&s.name_any(), &DeleteParams::background())
                    .await;
            }
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => {
            warn!(transfer = %vt.name_any(), error = %e, "cannot list the transfer's VolumeSnapshots")
        }
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    match claims.list(&sel).await {
        Ok(list) => {
            for c in list {
                let _ = claims
                    .delete(&c.name_any(), &DeleteParams::background())
                    .await;
            }
        }
        Err(e) => {
            warn!(transfer = %vt.name_any(), error = %e, "cannot list the transfer's snapshot claims")
        }
    }
}
