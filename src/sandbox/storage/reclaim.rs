//! The provisioner's half of a volume's end (the library's `syncVolume`): the PV of a deleted
//! claim goes Released (KCM's PV controller); with reclaim policy Delete its directory is removed,
//! then the PV and the library's finalizer; with Retain it stays Released, directory and all.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::events::Events;
use super::volume::{PROVISIONED_BY, PV_FINALIZER};
use super::{Host, StorageError, api_err, blocking, patches, pv_dir, tree};

pub struct Ctx {
    host: Arc<Host>,
    events: Events,
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("")
}

/// A PV the agent provisioned: annotated by a provisioner and backed by `volumes/<pv name>/`.
/// Nothing else is ever removed.
pub fn is_own(host: &Host, pv: &PersistentVolume) -> bool {
    let name = pv.name_any();
    patches::has_annotation(pv, PROVISIONED_BY)
        && pv_dir(pv).is_some_and(|d| tree::is_own_dir(&host.volumes_dir(), &d, &name))
}

/// The library's `shouldDelete`.
pub fn should_delete(pv: &PersistentVolume) -> bool {
    let gone_already =
        pv.metadata.deletion_timestamp.is_some() && !patches::has_finalizer(pv, PV_FINALIZER);
    !gone_already && phase(pv) == "Released" && policy(pv) == "Delete"
}

pub async fn run(host: Arc<Host>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = host.client.clone();
    let ctx = Arc::new(Ctx {
        events: Events::new(&client, &host.cluster, "csi-provisioner"),
        host: host.clone(),
    });
    Controller::new(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|r| {
        if let Err(e) = r {
            tracing::debug!(cluster = %host.cluster, error = %e, "reclaimer");
        }
        futures::future::ready(())
    })
    .await;
}

fn error_policy(pv: Arc<PersistentVolume>, e: &StorageError, _: Arc<Ctx>) -> Action {
    if e.is_conflict() {
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(pv = %pv.name_any(), error = %e, "reclaiming failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, StorageError> {
    let host = &ctx.host;
    if !is_own(host, &pv) {
        return Ok(Action::await_change());
    }
    let pvs: Api<PersistentVolume> = Api::all(host.client.clone());
    let name = pv.name_any();
    // handleProtectionFinalizer: only a Delete volume keeps the finalizer.
    let pv = if policy(&pv) == "Delete" {
        if pv.metadata.deletion_timestamp.is_none() && phase(&pv) == "Bound" {
            let what = format!("adding the provisioner's finalizer to PersistentVolume {name}");
            patches::add_finalizers(&pvs, pv.as_ref(), &[PV_FINALIZER])
                .await
                .map_err(api_err(host, what))?
        } else {
            pv.as_ref().clone()
        }
    } else {
        let what = format!("removing the provisioner's finalizer from PersistentVolume {name}");
        match patches::remove_finalizers(&pvs, pv.as_ref(), &[PV_FINALIZER])
            .await
            .map_err(api_err(host, what))?
        {
            Some(pv) => pv,
            None => return Ok(Action::await_change()),
        }
    };
    if should_delete(&pv) {
        delete(&ctx, &pvs, &pv).await?;
    }
    Ok(Action::await_change())
}

/// The library's `deleteVolumeOperation`: the storage, then the PV, then the finalizer.
async fn delete(
    ctx: &Ctx,
    pvs: &Api<PersistentVolume>,
    pv: &PersistentVolume,
) -> Result<(), StorageError> {
    let host = &ctx.host;
    let name = pv.name_any();
    let dir = host.volumes_dir().join(&name);
    let target = dir.clone();
    let removed = blocking(
        host,
        &format!("removing the directory of volume {name}"),
        dir,
        move || {
            tree::remove_if_present(&tree::partial_of(&target))?;
            tree::remove_if_present(&target)
        },
    )
    .await;
    if let Err(e) = removed {
        ctx.events
            .warning(
                &pv.object_ref(&()),
                "VolumeFailedDelete",
                "Delete",
                e.to_string(),
            )
            .await;
        return Err(e);
    }
    let what = format!("deleting PersistentVolume {name}");
    match pvs.delete(&name, &Default::default()).await {
        Ok(_) => {}
        Err(e) if patches::is_not_found(&e) => return Ok(()),
        Err(e) => return Err(api_err(host, what)(e)),
    }
    // The delete set a deletionTimestamp: the finalizer goes from the object as it now is.
    let what = format!("removing the provisioner's finalizer from PersistentVolume {name}");
    let Some(now) = pvs
        .get_opt(&name)
        .await
        .map_err(api_err(host, what.clone()))?
    else {
        return Ok(());
    };
    patches::remove_finalizers(pvs, &now, &[PV_FINALIZER])
        .await
        .map_err(api_err(host, what))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(phase: &str, policy: &str, deleting: bool, finalizer: bool) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": "pvc-1"},
                           "spec": {"persistentVolumeReclaimPolicy": policy}, "status": {"phase": phase}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if finalizer {
            v["metadata"]["finalizers"] = json!([PV_FINALIZER]);
        }
        serde_json::from_value(v).expect("pv")
    }

    #[test]
    fn only_a_released_delete_volume_not_yet_cleaned_up_is_deleted() {
        assert!(should_delete(&pv("Released", "Delete", false, true)));
        assert!(
            should_delete(&pv("Released", "Delete", true, true)),
            "deleted, storage not yet"
        );
        assert!(
            !should_delete(&pv("Released", "Delete", true, false)),
            "cleaned up already"
        );
        assert!(!should_delete(&pv("Released", "Retain", false, false)));
        assert!(!should_delete(&pv("Bound", "Delete", false, true)));
    }
}
