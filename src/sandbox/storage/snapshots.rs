//! The snapshot-controller (kubernetes-csi/external-snapshotter `pkg/common-controller`): a
//! VolumeSnapshot gets its class (the default class of its volume's driver when it names none,
//! recorded in its spec), its finalizers, a VolumeSnapshotContent `snapcontent-<uid>` (`binding`),
//! and a status that follows the content's (`snapshot_status`); what stops it is written to
//! `status.error` in the upstream words, with a Warning Event. Deleting it is `release`.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::crd::{self, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use super::events::Events;
use super::{Host, StorageError, WAIT, api_err, binding, names, patches, release, snapshot_status};

pub struct Ctx {
    pub host: Arc<Host>,
    pub events: Events,
}

impl Ctx {
    pub fn snapshots(&self, ns: &str) -> Api<VolumeSnapshot> {
        Api::namespaced(self.host.client.clone(), ns)
    }

    pub fn contents(&self) -> Api<VolumeSnapshotContent> {
        Api::all(self.host.client.clone())
    }

    pub fn claims(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.host.client.clone(), ns)
    }
}

/// What stops a snapshot, as the controller reports it: Event reason, `status.error.message`,
/// and whether `readyToUse` is set to false with it.
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
    pub not_ready: bool,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            reason,
            message: message.into(),
            not_ready: true,
        }
    }
}

pub async fn run(host: Arc<Host>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = host.client.clone();
    let controller = Controller::new(
        Api::<VolumeSnapshot>::all(client.clone()),
        watcher::Config::default(),
    );
    let (by_claim, by_class) = (controller.store(), controller.store());
    let ctx = Arc::new(Ctx {
        events: Events::new(&client, &host.cluster, "snapshot-controller"),
        host: host.clone(),
    });
    controller
        .watches(
            Api::<VolumeSnapshotContent>::all(client.clone()),
            watcher::Config::default(),
            |c| {
                let r = &c.spec.volume_snapshot_ref;
                r.name
                    .clone()
                    .zip(r.namespace.clone())
                    .map(|(n, ns)| ObjectRef::new(&n).within(&ns))
            },
        )
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
            move |pvc| {
                snapshots_where(&by_claim, |vs| {
                    vs.namespace() == pvc.namespace()
                        && vs.source_claim() == pvc.metadata.name.as_deref()
                })
            },
        )
        .watches(
            Api::<VolumeSnapshotClass>::all(client),
            watcher::Config::default(),
            move |_| snapshots_where(&by_class, |vs| !vs.is_ready()),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(cluster = %host.cluster, error = %e, "snapshot controller");
            }
            futures::future::ready(())
        })
        .await;
}

fn snapshots_where(
    store: &Store<VolumeSnapshot>,
    f: impl Fn(&VolumeSnapshot) -> bool,
) -> Vec<ObjectRef<VolumeSnapshot>> {
    store
        .state()
        .iter()
        .filter(|vs| f(vs))
        .map(|vs| ObjectRef::from_obj(vs.as_ref()))
        .collect()
}

fn error_policy(vs: Arc<VolumeSnapshot>, e: &StorageError, _: Arc<Ctx>) -> Action {
    if e.is_conflict() {
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(snapshot = %vs.name_any(), error = %e, "snapshot sync failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// `syncSnapshotByKey` and `syncSnapshot`.
async fn reconcile(vs: Arc<VolumeSnapshot>, ctx: Arc<Ctx>) -> Result<Action, StorageError> {
    release::release_claim_if_unused(&ctx, &vs, false).await?;
    if vs.metadata.deletion_timestamp.is_some() {
        return release::delete(&ctx, &vs).await;
    }
    let vs = match ensure_class(&ctx, &vs).await? {
        Ok(vs) => vs,
        Err(p) => return report(&ctx, &vs, p).await,
    };
    if vs.source_claim().is_some() == vs.source_content().is_some() {
        let m = "Exactly one of PersistentVolumeClaimName and VolumeSnapshotContentName should be specified";
        return report(&ctx, &vs, Problem::new("SnapshotValidationError", m)).await;
    }
    let vs = add_finalizers(&ctx, vs).await?;
    if vs.is_ready() && vs.bound_content().is_some() {
        return sync_ready(&ctx, &vs).await;
    }
    let content = if vs.source_content().is_some() {
        binding::preprovisioned(&ctx, &vs).await?
    } else {
        binding::dynamic(&ctx, &vs).await?
    };
    match content {
        Ok(content) => update_status(&ctx, &vs, &content).await,
        Err(p) => report(&ctx, &vs, p).await,
    }
}

/// `checkAndUpdateSnapshotClass`: the named class must exist; a dynamic snapshot naming none gets
/// the default class of its volume's driver, recorded in its spec.
async fn ensure_class(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
) -> Result<Result<VolumeSnapshot, Problem>, StorageError> {
    let host = &ctx.host;
    let classes: Api<VolumeSnapshotClass> = Api::all(host.client.clone());
    if let Some(name) = vs.class_name() {
        let what = format!("reading VolumeSnapshotClass {name}");
        if classes
            .get_opt(name)
            .await
            .map_err(api_err(host, what))?
            .is_some()
        {
            return Ok(Ok(vs.clone()));
        }
        let message = format!(
            "Failed to get snapshot class with error volumesnapshotclass.{} \"{name}\" not found",
            crd::GROUP
        );
        return Ok(Err(Problem {
            reason: "GetSnapshotClassFailed",
            message,
            not_ready: false,
        }));
    }
    if vs.source_claim().is_none() {
        return Ok(Ok(vs.clone()));
    }
    let class = match default_class(ctx, vs).await? {
        Ok(class) => class,
        Err(why) => {
            return Ok(Err(Problem {
                reason: "SetDefaultSnapshotClassFailed",
                message: format!("Failed to set default snapshot class with error {why}"),
                not_ready: false,
            }));
        }
    };
    let what = format!(
        "recording default VolumeSnapshotClass {class} in VolumeSnapshot {}",
        vs.name_any()
    );
    let api = ctx.snapshots(&vs.namespace().unwrap_or_default());
    let body = json!({"spec": {"volumeSnapshotClassName": class}});
    let vs = patches::merge(&api, &vs.name_any(), &body)
        .await
        .map_err(api_err(host, what))?;
    Ok(Ok(vs))
}

/// `SetDefaultSnapshotClass`: the one default class of the snapshot's volume's driver; Err says
/// why there is none.
async fn default_class(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
) -> Result<Result<String, String>, StorageError> {
    let host = &ctx.host;
    let driver = match volume_of(ctx, vs).await? {
        Ok(pv) => match pv.spec.as_ref().and_then(|s| s.csi.as_ref()) {
            Some(csi) => csi.driver.clone(),
            None => {
                let (ns, name) = (vs.namespace().unwrap_or_default(), vs.name_any());
                return Ok(Err(format!(
                    "snapshotting non-CSI volumes is not supported, snapshot:{ns}/{name}"
                )));
            }
        },
        Err(why) => return Ok(Err(why)),
    };
    let classes: Api<VolumeSnapshotClass> = Api::all(host.client.clone());
    let list = classes
        .list(&Default::default())
        .await
        .map_err(api_err(host, "listing VolumeSnapshotClasses"))?;
    let defaults: Vec<_> = list
        .items
        .iter()
        .filter(|c| c.is_default() && c.driver == driver)
        .collect();
    Ok(match defaults.as_slice() {
        [] => Err("cannot find default snapshot class".into()),
        [one] => Ok(one.name_any()),
        many => Err(format!(
            "{} default snapshot classes were found",
            many.len()
        )),
    })
}

/// The bound volume of a dynamic snapshot's claim (`getVolumeFromVolumeSnapshot`); Err says why
/// there is none, in the controller's words.
pub async fn volume_of(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
) -> Result<Result<PersistentVolume, String>, StorageError> {
    let host = &ctx.host;
    let Some(claim_name) = vs.source_claim() else {
        return Ok(Err("the snapshot source PVC name is not specified".into()));
    };
    let what = format!(
        "reading claim {claim_name} of VolumeSnapshot {}",
        vs.name_any()
    );
    let claims = ctx.claims(&vs.namespace().unwrap_or_default());
    let Some(pvc) = claims
        .get_opt(claim_name)
        .await
        .map_err(api_err(host, what))?
    else {
        let nf = format!("persistentvolumeclaim \"{claim_name}\" not found");
        return Ok(Err(format!(
            "failed to retrieve PVC {claim_name} from the lister: {nf:?}"
        )));
    };
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        return Ok(Err(format!(
            "the PVC {claim_name} is not yet bound to a PV, will not attempt to take a snapshot"
        )));
    }
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let pvs: Api<PersistentVolume> = Api::all(host.client.clone());
    let what = format!("reading PersistentVolume {pv_name}");
    let Some(pv) = pvs.get_opt(&pv_name).await.map_err(api_err(host, what))? else {
        let nf = format!("persistentvolumes \"{pv_name}\" not found");
        return Ok(Err(format!(
            "failed to retrieve PV {pv_name} from the API server: {nf:?}"
        )));
    };
    let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let bound = r.is_some_and(|r| {
        r.name.as_deref() == Some(claim_name)
            && r.namespace == pvc.namespace()
            && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == pvc.uid())
    });
    if !bound {
        return Ok(Err("claim in dataSource not bound or invalid".into()));
    }
    Ok(Ok(pv))
}

/// `checkandAddSnapshotFinalizers`: as-source always; bound once bound to a content of policy Delete.
async fn add_finalizers(ctx: &Ctx, vs: VolumeSnapshot) -> Result<VolumeSnapshot, StorageError> {
    let host = &ctx.host;
    let content_name = vs.source_content().map(str::to_string).or_else(|| {
        vs.source_claim()
            .map(|_| names::content_for_snapshot(&vs.uid().unwrap_or_default()))
    });
    let mut add = Vec::new();
    if !patches::has_finalizer(&vs, crd::AS_SOURCE_FINALIZER) {
        add.push(crd::AS_SOURCE_FINALIZER);
    }
    if vs.bound_content().is_some()
        && !patches::has_finalizer(&vs, crd::BOUND_FINALIZER)
        && let Some(name) = content_name
    {
        let what = format!("reading VolumeSnapshotContent {name}");
        let content = ctx
            .contents()
            .get_opt(&name)
            .await
            .map_err(api_err(host, what))?;
        if content.is_some_and(|c| c.spec.deletion_policy == "Delete" && refers_to(&c, &vs)) {
            add.push(crd::BOUND_FINALIZER);
        }
    }
    if add.is_empty() {
        return Ok(vs);
    }
    let what = format!("adding finalizers to VolumeSnapshot {}", vs.name_any());
    let api = ctx.snapshots(&vs.namespace().unwrap_or_default());
    patches::add_finalizers(&api, &vs, &add)
        .await
        .map_err(api_err(host, what))
}

/// The content's ref names the snapshot (its uid too, once set).
pub fn refers_to(c: &VolumeSnapshotContent, vs: &VolumeSnapshot) -> bool {
    let r = &c.spec.volume_snapshot_ref;
    r.name == vs.metadata.name
        && r.namespace == vs.metadata.namespace
        && (r.uid.as_deref().unwrap_or("").is_empty() || r.uid == vs.metadata.uid)
}

/// `syncReadySnapshot`: the binding must still hold.
async fn sync_ready(ctx: &Ctx, vs: &VolumeSnapshot) -> Result<Action, StorageError> {
    let name = vs.bound_content().unwrap_or_default().to_string();
    let what = format!("reading VolumeSnapshotContent {name}");
    match ctx
        .contents()
        .get_opt(&name)
        .await
        .map_err(api_err(&ctx.host, what))?
    {
        None => {
            report(
                ctx,
                vs,
                Problem::new("SnapshotContentMissing", "VolumeSnapshotContent is missing"),
            )
            .await
        }
        Some(c) if !c.points_to(vs) => {
            let m = "VolumeSnapshotContent is not bound to the VolumeSnapshot correctly";
            report(ctx, vs, Problem::new("SnapshotMisbound", m)).await
        }
        Some(_) => Ok(Action::await_change()),
    }
}

/// `updateSnapshotStatus`: the snapshot's status follows its content's.
async fn update_status(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
    content: &VolumeSnapshotContent,
) -> Result<Action, StorageError> {
    let retry = if content.is_ready() {
        Action::await_change()
    } else {
        Action::requeue(WAIT)
    };
    let Some(p) = snapshot_status::patch(vs.status.as_ref(), content) else {
        return Ok(retry);
    };
    let key = format!("{}/{}", vs.namespace().unwrap_or_default(), vs.name_any());
    let created = vs.status.as_ref().is_none_or(|s| s.creation_time.is_none())
        && p.get("creationTime").is_some();
    let readied = !vs.is_ready() && p.get("readyToUse") == Some(&json!(true));
    let what = format!("updating the status of VolumeSnapshot {key}");
    let api = ctx.snapshots(&vs.namespace().unwrap_or_default());
    patches::merge_status(&api, &vs.name_any(), p)
        .await
        .map_err(api_err(&ctx.host, what))?;
    let reference = vs.object_ref(&());
    if created {
        let note = format!("Snapshot {key} was successfully created by the CSI driver.");
        ctx.events
            .normal(&reference, "SnapshotCreated", "Snapshot", note)
            .await;
    }
    if readied {
        ctx.events
            .normal(
                &reference,
                "SnapshotReady",
                "Snapshot",
                format!("Snapshot {key} is ready to use."),
            )
            .await;
    }
    Ok(retry)
}

/// `updateSnapshotErrorStatusWithEvent`: the error in the status (once per message), and an Event.
pub async fn report(ctx: &Ctx, vs: &VolumeSnapshot, p: Problem) -> Result<Action, StorageError> {
    if vs.error_message() == Some(p.message.as_str()) {
        return Ok(Action::requeue(WAIT));
    }
    let mut status = json!({"error": {"time": snapshot_status::now(), "message": p.message}});
    if p.not_ready {
        status["readyToUse"] = json!(false);
    }
    let what = format!(
        "recording an error in the status of VolumeSnapshot {}",
        vs.name_any()
    );
    let api = ctx.snapshots(&vs.namespace().unwrap_or_default());
    let written = patches::merge_status(&api, &vs.name_any(), status).await;
    ctx.events
        .warning(&vs.object_ref(&()), p.reason, "Snapshot", p.message)
        .await;
    written.map_err(api_err(&ctx.host, what))?;
    Ok(Action::requeue(WAIT))
}
