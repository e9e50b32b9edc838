//! The csi-snapshotter sidecar of every driver the agent plays (external-snapshotter
//! `pkg/sidecar-controller`, `syncContent`), beside the upstream snapshot-controller, which binds
//! VolumeSnapshots to VolumeSnapshotContents, owns their finalizers and follows the contents'
//! status: a dynamic content's physical snapshot is a copy of its volume's directory under
//! `snapshots/<handle>/` (marked being-created while it is made, so the snapshot-controller does
//! not delete it mid-copy), a pre-provisioned content's handle must name such a copy, and a
//! content deleted with policy Delete takes its copy with it, then its finalizer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use super::crd::{self, VolumeSnapshot, VolumeSnapshotContent};
use super::events::Events;
use super::{Host, StorageError, WAIT, api_err, blocking, names, patches, pv_dir, tree};

pub struct Ctx {
    host: Arc<Host>,
    events: Events,
}

impl Ctx {
    fn contents(&self) -> Api<VolumeSnapshotContent> {
        Api::all(self.host.client.clone())
    }
}

pub async fn run(host: Arc<Host>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = host.client.clone();
    let ctx = Arc::new(Ctx {
        events: Events::new(&client, &host.cluster, "csi-snapshotter"),
        host: host.clone(),
    });
    Controller::new(
        Api::<VolumeSnapshotContent>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<VolumeSnapshot>::all(client),
        watcher::Config::default(),
        |vs| {
            let dynamic = vs.uid().map(|u| names::content_for_snapshot(&u));
            [
                vs.bound_content().map(str::to_string),
                vs.source_content().map(str::to_string),
                dynamic,
            ]
            .into_iter()
            .flatten()
            .map(|n| ObjectRef::new(&n))
            .collect::<Vec<_>>()
        },
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|r| {
        if let Err(e) = r {
            tracing::debug!(cluster = %host.cluster, error = %e, "snapshotter");
        }
        futures::future::ready(())
    })
    .await;
}

fn error_policy(c: Arc<VolumeSnapshotContent>, e: &StorageError, _: Arc<Ctx>) -> Action {
    if e.is_conflict() {
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(content = %c.name_any(), error = %e, "snapshot content sync failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

fn is_bound(c: &VolumeSnapshotContent) -> bool {
    c.spec
        .volume_snapshot_ref
        .uid
        .as_deref()
        .is_some_and(|u| !u.is_empty())
}

/// The sidecar's `shouldDelete`: deleted, and either a pre-provisioned content never bound or one
/// whose snapshot the snapshot-controller saw go.
fn should_delete(c: &VolumeSnapshotContent) -> bool {
    c.metadata.deletion_timestamp.is_some()
        && ((c.spec.source.snapshot_handle.is_some() && !is_bound(c))
            || patches::has_annotation(c, crd::BEING_DELETED_ANNOTATION))
}

async fn reconcile(c: Arc<VolumeSnapshotContent>, ctx: Arc<Ctx>) -> Result<Action, StorageError> {
    let (volume, handle) = (&c.spec.source.volume_handle, &c.spec.source.snapshot_handle);
    if volume.is_some() == handle.is_some() {
        let note = "Exactly one of VolumeHandle and SnapshotHandle should be specified".to_string();
        ctx.events
            .warning(
                &c.object_ref(&()),
                "ContentValidationError",
                "Snapshot",
                note,
            )
            .await;
        return Ok(Action::await_change());
    }
    if should_delete(&c) {
        delete_snapshot(&ctx, &c).await?;
        return Ok(Action::await_change());
    }
    if c.metadata.deletion_timestamp.is_some() || c.is_ready() {
        return Ok(Action::await_change());
    }
    let made = if volume.is_some() {
        take(&ctx, &c).await?
    } else {
        check(&ctx, &c).await?
    };
    match made {
        Ok(()) => Ok(Action::await_change()),
        Err((reason, message)) => fail(&ctx, &c, reason, message).await,
    }
}

/// The directory of a snapshot handle, when the handle is a plain name.
fn snapshot_dir(host: &Host, handle: &str) -> Option<PathBuf> {
    let dir = host.snapshots_dir().join(handle);
    tree::is_own_dir(&host.snapshots_dir(), &dir, handle).then_some(dir)
}

/// The physical snapshot goes with a Delete content (also a copy the agent made but had not yet
/// recorded), then the finalizer.
async fn delete_snapshot(ctx: &Ctx, c: &VolumeSnapshotContent) -> Result<(), StorageError> {
    let host = &ctx.host;
    let name = c.name_any();
    if c.spec.deletion_policy == "Delete" {
        let handle = c.status_handle().map(str::to_string).or_else(|| {
            c.spec
                .source
                .volume_handle
                .as_ref()
                .map(|_| names::snapshot_handle(&name))
        });
        if let Some(dir) = handle.as_deref().and_then(|h| snapshot_dir(host, h)) {
            let what = format!("deleting the snapshot of VolumeSnapshotContent {name}");
            let target = dir.clone();
            blocking(host, &what, dir, move || {
                tree::remove_if_present(&tree::partial_of(&target))?;
                tree::remove_if_present(&target)
            })
            .await?;
        }
        if c.status_handle().is_some() {
            let cleared = json!({"snapshotHandle": null, "readyToUse": null, "creationTime": null, "restoreSize": null});
            let what = format!("clearing the status of VolumeSnapshotContent {name}");
            patches::merge_status(&ctx.contents(), &name, cleared)
                .await
                .map_err(api_err(host, what))?;
        }
    }
    let what = format!("removing the finalizer of VolumeSnapshotContent {name}");
    let Some(now) = ctx
        .contents()
        .get_opt(&name)
        .await
        .map_err(api_err(host, what.clone()))?
    else {
        return Ok(());
    };
    patches::remove_finalizers(&ctx.contents(), &now, &[crd::CONTENT_FINALIZER])
        .await
        .map_err(api_err(host, what))?;
    Ok(())
}

type Made = Result<Result<(), (&'static str, String)>, StorageError>;

/// The driver's CreateSnapshot: the volume's directory copied once (a half-made copy is redone).
async fn take(ctx: &Ctx, c: &VolumeSnapshotContent) -> Made {
    let host = &ctx.host;
    let name = c.name_any();
    let volume = c.spec.source.volume_handle.clone().unwrap_or_default();
    let failed = |why: String| {
        let m = format!(
            "Failed to create snapshot: failed to take snapshot of the volume {volume}: {why:?}"
        );
        Ok(Err(("SnapshotCreationFailed", m)))
    };
    if !is_bound(c) {
        return failed(format!(
            "cannot create snapshot. Snapshot content {name} not bound to a snapshot"
        ));
    }
    let Some((from, size)) = source_volume(ctx, c, &volume).await? else {
        return failed(format!(
            "rpc error: code = NotFound desc = source volume {volume} not found"
        ));
    };
    let handle = names::snapshot_handle(&name);
    let Some(dir) = snapshot_dir(host, &handle) else {
        return failed(format!("invalid snapshot handle {handle}"));
    };
    if !patches::has_annotation(c, crd::BEING_CREATED_ANNOTATION) {
        let what = format!("marking VolumeSnapshotContent {name} as being created");
        patches::annotate(&ctx.contents(), &name, crd::BEING_CREATED_ANNOTATION, "yes")
            .await
            .map_err(api_err(host, what))?;
    }
    let target = dir.clone();
    let copied = blocking(
        host,
        &format!("snapshotting volume {volume}"),
        dir,
        move || {
            if target.is_dir() {
                Ok(())
            } else {
                tree::copy_into(&from, &target)
            }
        },
    )
    .await;
    if let Err(e) = copied {
        // Internal is a final error, after which the sidecar unmarks the content too: marked,
        // the snapshot-controller would never delete it.
        unmark_being_created(ctx, &name).await?;
        return failed(format!("rpc error: code = Internal desc = {e}"));
    }
    ready(ctx, c, &handle, size).await?;
    unmark_being_created(ctx, &name).await?;
    Ok(Ok(()))
}

/// The storage system answered (a snapshot, or a final error): the snapshot-controller may
/// delete the content from now on.
async fn unmark_being_created(ctx: &Ctx, name: &str) -> Result<(), StorageError> {
    let what = format!("unmarking VolumeSnapshotContent {name} as being created");
    let unmark = json!({"metadata": {"annotations": {crd::BEING_CREATED_ANNOTATION: null}}});
    patches::merge(&ctx.contents(), name, &unmark)
        .await
        .map_err(api_err(&ctx.host, what))?;
    Ok(())
}

/// The directory and size (bytes of its capacity) of a volume of the content's driver.
async fn source_volume(
    ctx: &Ctx,
    c: &VolumeSnapshotContent,
    volume: &str,
) -> Result<Option<(PathBuf, i64)>, StorageError> {
    let host = &ctx.host;
    let pvs: Api<PersistentVolume> = Api::all(host.client.clone());
    let what = format!("reading PersistentVolume {volume}");
    let Some(pv) = pvs.get_opt(volume).await.map_err(api_err(host, what))? else {
        return Ok(None);
    };
    let spec = pv.spec.as_ref();
    let ours = spec
        .and_then(|s| s.csi.as_ref())
        .is_some_and(|csi| csi.volume_handle == volume && csi.driver == c.spec.driver);
    let dir =
        pv_dir(&pv).filter(|d| tree::is_own_dir(&host.volumes_dir(), d, volume) && d.is_dir());
    let size = spec
        .and_then(|s| s.capacity.as_ref())
        .and_then(|cap| cap.get("storage"))
        .and_then(|q| names::bytes_of(&q.0))
        .and_then(|b| i64::try_from(b).ok())
        .unwrap_or(0);
    Ok(dir.filter(|_| ours).map(|d| (d, size)))
}

/// The driver's ListSnapshots for a pre-provisioned handle: ready if the agent has that copy.
async fn check(ctx: &Ctx, c: &VolumeSnapshotContent) -> Made {
    let host = &ctx.host;
    let name = c.name_any();
    let handle = c.spec.source.snapshot_handle.clone().unwrap_or_default();
    let dir = snapshot_dir(host, &handle).filter(|d| d.is_dir());
    let Some(dir) = dir else {
        let why = format!("rpc error: code = NotFound desc = snapshot id {handle} not found");
        let m = format!(
            "Failed to check and update snapshot content: failed to list snapshot for content {name}: {why:?}"
        );
        return Ok(Err(("SnapshotContentCheckandUpdateFailed", m)));
    };
    let known = c.status.as_ref().and_then(|s| s.restore_size);
    let size = match known {
        Some(size) => size,
        None => {
            let bytes = blocking(
                host,
                &format!("measuring snapshot {handle}"),
                dir.clone(),
                move || tree::size(&dir),
            )
            .await?;
            i64::try_from(bytes).unwrap_or(i64::MAX)
        }
    };
    ready(ctx, c, &handle, size).await.map(Ok)
}

/// The content's status once its snapshot exists (`updateSnapshotContentStatus`).
async fn ready(
    ctx: &Ctx,
    c: &VolumeSnapshotContent,
    handle: &str,
    size: i64,
) -> Result<(), StorageError> {
    let created = c
        .status
        .as_ref()
        .and_then(|s| s.creation_time)
        .unwrap_or_else(now_ns);
    let mut status = json!({"snapshotHandle": handle, "creationTime": created, "readyToUse": true, "error": null});
    if size > 0 {
        status["restoreSize"] = json!(size);
    }
    let what = format!(
        "recording the snapshot of VolumeSnapshotContent {}",
        c.name_any()
    );
    patches::merge_status(&ctx.contents(), &c.name_any(), status)
        .await
        .map_err(api_err(&ctx.host, what))?;
    Ok(())
}

/// `updateContentErrorStatusWithEvent`: the error in the content's status (once per message),
/// where the snapshot-controller picks it up for the VolumeSnapshot, and an Event.
async fn fail(
    ctx: &Ctx,
    c: &VolumeSnapshotContent,
    reason: &'static str,
    message: String,
) -> Result<Action, StorageError> {
    if c.error_message() == Some(message.as_str()) {
        return Ok(Action::requeue(WAIT));
    }
    let status: Value =
        json!({"error": {"time": Time(Timestamp::now()), "message": message}, "readyToUse": false});
    let what = format!(
        "recording an error in the status of VolumeSnapshotContent {}",
        c.name_any()
    );
    let written = patches::merge_status(&ctx.contents(), &c.name_any(), status).await;
    ctx.events
        .warning(&c.object_ref(&()), reason, "Snapshot", message)
        .await;
    written.map_err(api_err(&ctx.host, what))?;
    Ok(Action::requeue(WAIT))
}

/// Now, in nanoseconds since the epoch (a content's `creationTime`).
fn now_ns() -> i64 {
    i64::try_from(Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}
