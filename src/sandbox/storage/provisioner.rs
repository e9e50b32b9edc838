//! The external-provisioner of every class's driver. A claim is provisioned when it has no
//! volumeName, its `volume.kubernetes.io/storage-provisioner` (or the beta annotation, both set
//! by KCM's PV controller) names its class's provisioner, and — for a WaitForFirstConsumer
//! class — the scheduler has written `volume.kubernetes.io/selected-node` (the library's
//! `shouldProvision`). The PV is created with a claimRef; KCM's PV controller binds the two.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::crd::{self, VolumeSnapshot};
use super::events::Events;
use super::restore::{self, Source};
use super::volume::{self, Plan};
use super::{Host, StorageError, WAIT, api_err, blocking, intree, names, patches, tree};

pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

pub struct Ctx {
    host: Arc<Host>,
    events: Events,
}

/// The provisioner annotation of a claim (the GA one, else the beta one).
pub fn provisioner_of(claim: &PersistentVolumeClaim) -> Option<&str> {
    let a = claim.metadata.annotations.as_ref()?;
    a.get(STORAGE_PROVISIONER)
        .or_else(|| a.get(BETA_STORAGE_PROVISIONER))
        .map(String::as_str)
}

fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .metadata
        .annotations
        .as_ref()?
        .get(SELECTED_NODE)
        .map(String::as_str)
        .filter(|n| !n.is_empty())
}

fn class_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()?
        .storage_class_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

/// The library's `shouldProvision`, given the claim's class.
pub fn should_provision(claim: &PersistentVolumeClaim, class: &StorageClass) -> bool {
    let unbound = claim
        .spec
        .as_ref()
        .is_none_or(|s| s.volume_name.as_deref().unwrap_or("").is_empty());
    let Some(annotation) = provisioner_of(claim) else {
        return false;
    };
    if !unbound
        || claim.metadata.deletion_timestamp.is_some()
        || !intree::serves(&class.provisioner, annotation)
    {
        return false;
    }
    // A claim with a populator's data source is the populator's (the CSI external-provisioner skips it).
    if restore::source(claim) == Source::Populator {
        return false;
    }
    class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer")
        || selected_node(claim).is_some()
}

pub async fn run(host: Arc<Host>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = host.client.clone();
    let controller = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let (by_class, by_snapshot) = (controller.store(), controller.store());
    let ctx = Arc::new(Ctx {
        events: Events::new(&client, &host.cluster, "csi-provisioner"),
        host: host.clone(),
    });
    controller
        .watches(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
            move |sc| claims_where(&by_class, |c| class_name(c) == sc.metadata.name.as_deref()),
        )
        .watches(
            Api::<VolumeSnapshot>::all(client),
            watcher::Config::default(),
            move |vs| {
                claims_where(&by_snapshot, |c| {
                    c.namespace() == vs.namespace()
                        && restore::source(c) == Source::Snapshot(vs.name_any())
                })
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                tracing::debug!(cluster = %host.cluster, error = %e, "provisioner");
            }
            futures::future::ready(())
        })
        .await;
}

/// The unbound claims of the store that `f` selects.
fn claims_where(
    store: &Store<PersistentVolumeClaim>,
    f: impl Fn(&PersistentVolumeClaim) -> bool,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    store
        .state()
        .iter()
        .filter(|c| c.spec.as_ref().is_none_or(|s| s.volume_name.is_none()) && f(c))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

fn error_policy(claim: Arc<PersistentVolumeClaim>, e: &StorageError, _: Arc<Ctx>) -> Action {
    if e.is_conflict() {
        return Action::requeue(std::time::Duration::from_secs(1));
    }
    tracing::warn!(claim = %claim.name_any(), error = %e, "provisioning failed; retrying");
    Action::requeue(std::time::Duration::from_secs(5))
}

async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Ctx>,
) -> Result<Action, StorageError> {
    let host = &ctx.host;
    let Some(class_name) = class_name(&claim) else {
        return Ok(Action::await_change());
    };
    let classes: Api<StorageClass> = Api::all(host.client.clone());
    let what = format!("reading StorageClass {class_name}");
    let Some(class) = classes
        .get_opt(class_name)
        .await
        .map_err(api_err(host, what))?
    else {
        return Ok(Action::await_change());
    };
    if !should_provision(&claim, &class) {
        return Ok(Action::await_change());
    }
    let pv_name = names::volume_for_claim(&claim.uid().unwrap_or_default());
    let pvs: Api<PersistentVolume> = Api::all(host.client.clone());
    let what = format!("reading PersistentVolume {pv_name}");
    if pvs
        .get_opt(&pv_name)
        .await
        .map_err(api_err(host, what))?
        .is_some()
    {
        // Made before (the agent may have died before KCM bound it): nothing left to do.
        return Ok(Action::await_change());
    }
    provision(&ctx, &claim, &class, &pv_name).await
}

/// The library's `provisionClaimOperation` with the driver's `CreateVolume`.
async fn provision(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    pv_name: &str,
) -> Result<Action, StorageError> {
    let host = &ctx.host;
    let reference = claim.object_ref(&());
    let key = format!(
        "{}/{}",
        claim.namespace().unwrap_or_default(),
        claim.name_any()
    );
    let Some(zone) = target_zone(ctx, claim).await? else {
        return Ok(Action::await_change());
    };
    let note = format!("External provisioner is provisioning volume for claim \"{key}\"");
    ctx.events
        .normal(&reference, "Provisioning", "Provision", note)
        .await;
    let from = match data_from(ctx, claim, class).await? {
        Data::Empty => None,
        Data::Copy(dir) => Some(dir),
        Data::Wait(message, retry) => {
            ctx.events
                .warning(&reference, "ProvisioningFailed", "Provision", message)
                .await;
            return Ok(retry);
        }
    };
    let dir = host.volumes_dir().join(pv_name);
    let plan = Plan {
        name: pv_name,
        claim,
        class,
        dir: &dir,
        zone: zone.as_deref(),
    };
    let pv = match volume::build(&plan) {
        Ok(pv) => pv,
        Err(message) => {
            ctx.events
                .warning(&reference, "ProvisioningFailed", "Provision", message)
                .await;
            return Ok(Action::await_change());
        }
    };
    make_dir(host, pv_name, dir, from).await?;
    let pvs: Api<PersistentVolume> = Api::all(host.client.clone());
    match pvs.create(&Default::default(), &pv).await {
        Ok(_) => {}
        Err(e) if patches::is_already_exists(&e) => {}
        Err(e) => {
            let what = format!("creating PersistentVolume {pv_name} for claim {key}");
            return Err(api_err(host, what)(e));
        }
    }
    let note = format!("Successfully provisioned volume {pv_name}");
    ctx.events
        .normal(&reference, "ProvisioningSucceeded", "Provision", note)
        .await;
    Ok(Action::await_change())
}

/// The driver's CreateVolume: the volume's directory, empty or a copy of `from`.
async fn make_dir(
    host: &Host,
    pv_name: &str,
    dir: std::path::PathBuf,
    from: Option<std::path::PathBuf>,
) -> Result<(), StorageError> {
    let target = dir.clone();
    let what = format!("creating the directory of volume {pv_name}");
    blocking(host, &what, dir, move || match from {
        // Into a new directory at once: `target` is absent or a complete copy.
        Some(src) if !target.is_dir() => tree::copy_into(&src, &target),
        Some(_) => Ok(()),
        None => std::fs::create_dir_all(&target),
    })
    .await
}

/// The zone the volume is made in: the selected node's (WaitForFirstConsumer), else the first
/// node of the profile's, as a real driver picks one of its topology segments. `Ok(Some(None))`:
/// the nodes carry no zone. `Ok(None)`: the selected node is gone, and the claim was handed
/// back to the scheduler (the annotation removed, as the library's `rescheduleProvisioning`).
async fn target_zone(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
) -> Result<Option<Option<String>>, StorageError> {
    let host = &ctx.host;
    let zone_of = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.and_then(|l| l.get(volume::ZONE)).cloned()
    };
    let Some(node) = selected_node(claim) else {
        let first = host.profile.nodes.first();
        return Ok(Some(
            first
                .and_then(|n| n.labels.get(volume::ZONE))
                .and_then(|z| z.as_str())
                .map(str::to_string),
        ));
    };
    let nodes: Api<Node> = Api::all(host.client.clone());
    let what = format!("reading Node {node}");
    if let Some(n) = nodes.get_opt(node).await.map_err(api_err(host, what))? {
        return Ok(Some(zone_of(n.metadata.labels.as_ref())));
    }
    let message = format!("failed to get target node: nodes \"{node}\" not found");
    ctx.events
        .warning(
            &claim.object_ref(&()),
            "ProvisioningFailed",
            "Provision",
            message,
        )
        .await;
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(host.client.clone(), &claim.namespace().unwrap_or_default());
    let what = format!("handing claim {} back to the scheduler", claim.name_any());
    patches::merge(
        &claims,
        &claim.name_any(),
        &json!({"metadata": {"annotations": {SELECTED_NODE: null}}}),
    )
    .await
    .map_err(api_err(host, what))?;
    Ok(None)
}

/// Where a volume's data comes from.
enum Data {
    Empty,
    /// A copy of this directory (a snapshot's).
    Copy(std::path::PathBuf),
    /// Provisioning cannot go on yet: the ProvisioningFailed message, and when to look again.
    Wait(String, Action),
}

async fn data_from(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
) -> Result<Data, StorageError> {
    let handle_err = |kind: &str, name: &str, why: &str| {
        format!("error getting handle for DataSource Type {kind} by Name {name}: {why}")
    };
    let name = match restore::source(claim) {
        // should_provision leaves populated claims to their populator.
        Source::Empty | Source::Populator => return Ok(Data::Empty),
        Source::Claim(name) => {
            let why = "volume content source PersistentVolumeClaim (cloning) is not supported by the sandbox's host-path driver";
            return Ok(Data::Wait(
                handle_err("PersistentVolumeClaim", &name, why),
                Action::requeue(WAIT * 4),
            ));
        }
        Source::Snapshot(name) => name,
    };
    let driver = intree::driver_of(&class.provisioner);
    match restore::snapshot_dir(&ctx.host, claim, &class.name_any(), driver, &name).await {
        Ok(dir) => {
            protect_source(ctx, claim, &name).await?;
            Ok(Data::Copy(dir))
        }
        Err(why) => Ok(Data::Wait(
            handle_err("VolumeSnapshot", &name, &why),
            Action::requeue(WAIT),
        )),
    }
}

/// The snapshot's as-source finalizer while a claim is made from it (the CSI
/// external-provisioner's `setSnapshotFinalizer`).
async fn protect_source(
    ctx: &Ctx,
    claim: &PersistentVolumeClaim,
    name: &str,
) -> Result<(), StorageError> {
    let host = &ctx.host;
    let snapshots: Api<VolumeSnapshot> =
        Api::namespaced(host.client.clone(), &claim.namespace().unwrap_or_default());
    let what = format!(
        "protecting VolumeSnapshot {name} while claim {} is restored from it",
        claim.name_any()
    );
    let Some(vs) = snapshots
        .get_opt(name)
        .await
        .map_err(api_err(host, what.clone()))?
    else {
        return Ok(());
    };
    if vs.metadata.deletion_timestamp.is_none() {
        patches::add_finalizers(&snapshots, &vs, &[crd::AS_SOURCE_FINALIZER])
            .await
            .map_err(api_err(host, what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(annotations: serde_json::Value, volume_name: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "ns", "annotations": annotations},
            "spec": {"storageClassName": "k", "volumeName": volume_name,
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("claim")
    }

    fn class(provisioner: &str, mode: &str) -> StorageClass {
        serde_json::from_value(json!({"metadata": {"name": "k"}, "provisioner": provisioner, "volumeBindingMode": mode}))
            .expect("class")
    }

    #[test]
    fn claims_are_provisioned_as_the_library_decides() {
        let ebs = |mode| class("ebs.csi.aws.com", mode);
        let handed = json!({STORAGE_PROVISIONER: "ebs.csi.aws.com"});
        assert!(should_provision(
            &claim(handed.clone(), None),
            &ebs("Immediate")
        ));
        assert!(
            !should_provision(&claim(json!({}), None), &ebs("Immediate")),
            "not handed over yet"
        );
        assert!(
            !should_provision(&claim(handed.clone(), Some("pv-1")), &ebs("Immediate")),
            "pre-bound"
        );
        assert!(
            !should_provision(&claim(handed.clone(), None), &ebs("WaitForFirstConsumer")),
            "no node yet"
        );
        let placed = json!({BETA_STORAGE_PROVISIONER: "ebs.csi.aws.com", SELECTED_NODE: "n1"});
        assert!(should_provision(
            &claim(placed, None),
            &ebs("WaitForFirstConsumer")
        ));
        let other = json!({STORAGE_PROVISIONER: "efs.csi.aws.com"});
        assert!(
            !should_provision(&claim(other, None), &ebs("Immediate")),
            "another class's driver"
        );
        let migrated = class("kubernetes.io/aws-ebs", "Immediate");
        assert!(
            should_provision(&claim(handed, None), &migrated),
            "gp2 through its CSI driver"
        );
    }
}
