//! A VolumeSnapshot going away (the snapshot-controller's `processSnapshotWithDeletionTimestamp`):
//! not while a claim is being restored from it; its content is marked being-deleted and, with
//! deletion policy Delete, deleted (the snapshotter then removes the copy and the content's
//! finalizer); the snapshot's finalizers go, the bound one only once the content is gone. And
//! the source claim's protection, released once no snapshot of it is still being taken.

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::crd::{self, VolumeSnapshot};
use super::restore::{self, Source};
use super::snapshots::Ctx;
use super::{StorageError, WAIT, api_err, names, patches};

/// Whether a claim is being restored from the snapshot (`isVolumeBeingCreatedFromSnapshot`).
async fn being_restored(ctx: &Ctx, vs: &VolumeSnapshot) -> Result<bool, StorageError> {
    let ns = vs.namespace().unwrap_or_default();
    let what = format!("listing the claims of namespace {ns}");
    let claims = ctx
        .claims(&ns)
        .list(&Default::default())
        .await
        .map_err(api_err(&ctx.host, what))?;
    Ok(claims.items.iter().any(|c| {
        restore::source(c) == Source::Snapshot(vs.name_any())
            && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
    }))
}

pub async fn delete(ctx: &Ctx, vs: &VolumeSnapshot) -> Result<Action, StorageError> {
    let host = &ctx.host;
    let vs_name = vs.name_any();
    if !patches::has_finalizer(vs, crd::AS_SOURCE_FINALIZER)
        && !patches::has_finalizer(vs, crd::BOUND_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    let content_name = vs.bound_content().map(str::to_string).or_else(|| {
        // The content may exist before the status says so (the agent died in between).
        vs.source_claim()
            .map(|_| names::content_for_snapshot(&vs.uid().unwrap_or_default()))
    });
    let mut content = None;
    if let Some(name) = &content_name {
        let what = format!("reading VolumeSnapshotContent {name}");
        content = ctx
            .contents()
            .get_opt(name)
            .await
            .map_err(api_err(host, what))?
            .filter(|c| c.points_to(vs));
    }
    let delete_content = content
        .as_ref()
        .is_some_and(|c| c.spec.deletion_policy == "Delete");
    if content.is_some() && being_restored(ctx, vs).await? {
        let note = "Snapshot is being used to restore a PVC".to_string();
        ctx.events
            .warning(&vs.object_ref(&()), "SnapshotDeletePending", "Delete", note)
            .await;
        return Ok(Action::requeue(WAIT));
    }
    if let Some(c) = &content {
        let name = c.name_any();
        if !patches::has_annotation(c, crd::BEING_DELETED_ANNOTATION) {
            let what = format!("marking VolumeSnapshotContent {name} as being deleted");
            patches::annotate(&ctx.contents(), &name, crd::BEING_DELETED_ANNOTATION, "yes")
                .await
                .map_err(api_err(host, what))?;
        }
        if delete_content {
            let what = format!("deleting VolumeSnapshotContent {name} of VolumeSnapshot {vs_name}");
            match ctx.contents().delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(e) if patches::is_not_found(&e) => {}
                Err(e) => return Err(api_err(host, what)(e)),
            }
        }
    }
    release_claim_if_unused(ctx, vs, true).await?;
    let mut remove = vec![crd::AS_SOURCE_FINALIZER];
    // Held until the snapshotter has removed the physical snapshot and the content with it.
    if !(content.is_some() && delete_content) {
        remove.push(crd::BOUND_FINALIZER);
    }
    let what = format!("removing the finalizers of VolumeSnapshot {vs_name}");
    let api = ctx.snapshots(&vs.namespace().unwrap_or_default());
    patches::remove_finalizers(&api, vs, &remove)
        .await
        .map_err(api_err(host, what))?;
    Ok(Action::await_change())
}

/// `checkandRemovePVCFinalizer`: the source claim's protection goes once no snapshot of it (but
/// this one, with `skip_current`) is still unready.
pub async fn release_claim_if_unused(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
    skip_current: bool,
) -> Result<(), StorageError> {
    let host = &ctx.host;
    let Some(claim_name) = vs.source_claim() else {
        return Ok(());
    };
    let ns = vs.namespace().unwrap_or_default();
    let claims = ctx.claims(&ns);
    let what = format!(
        "reading claim {claim_name} of VolumeSnapshot {}",
        vs.name_any()
    );
    let Some(pvc) = claims
        .get_opt(claim_name)
        .await
        .map_err(api_err(host, what))?
    else {
        return Ok(());
    };
    if !patches::has_finalizer(&pvc, crd::PVC_FINALIZER) {
        return Ok(());
    }
    let what = format!("listing the VolumeSnapshots of namespace {ns}");
    let snapshots = ctx
        .snapshots(&ns)
        .list(&Default::default())
        .await
        .map_err(api_err(host, what))?;
    let in_use = snapshots.items.iter().any(|s| {
        !(skip_current && s.metadata.name == vs.metadata.name)
            && s.source_claim() == Some(claim_name)
            && !s.is_ready()
    });
    if in_use {
        return Ok(());
    }
    let what = format!("releasing claim {claim_name} from its snapshots");
    patches::remove_finalizers(&claims, &pvc, &[crd::PVC_FINALIZER])
        .await
        .map_err(api_err(host, what))?;
    Ok(())
}
