//! A VolumeSnapshot's VolumeSnapshotContent (the snapshot-controller's `syncUnreadySnapshot`):
//! for a dynamic snapshot, `snapcontent-<uid>` found by its name or created (`createSnapshotContent`),
//! with the source claim protected while the snapshot is taken; for a pre-provisioned one, the
//! named content checked and bound back (`checkandBindSnapshotContent`).

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::crd::{self, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent};
use super::crd::{VolumeSnapshotContentSource, VolumeSnapshotContentSpec};
use super::snapshots::{Ctx, Problem, refers_to, volume_of};
use super::{StorageError, api_err, names, patches};

type Found = Result<Result<VolumeSnapshotContent, Problem>, StorageError>;

fn misbound(name: &str) -> Problem {
    Problem::new(
        "SnapshotContentMisbound",
        format!("VolumeSnapshotContent [{name}] is bound to a different snapshot"),
    )
}

/// The content of a pre-provisioned snapshot, bound back to it.
pub async fn preprovisioned(ctx: &Ctx, vs: &VolumeSnapshot) -> Found {
    let name = vs.source_content().unwrap_or_default().to_string();
    let what = format!("reading VolumeSnapshotContent {name}");
    let Some(content) = ctx
        .contents()
        .get_opt(&name)
        .await
        .map_err(api_err(&ctx.host, what))?
    else {
        return Ok(Err(Problem::new(
            "SnapshotContentMissing",
            "VolumeSnapshotContent is missing",
        )));
    };
    if content.spec.source.snapshot_handle.is_none() {
        let m = "VolumeSnapshotContent is dynamically provisioned while expecting a pre-provisioned one";
        return Ok(Err(Problem::new("SnapshotContentMismatch", m)));
    }
    if !refers_to(&content, vs) {
        return Ok(Err(misbound(&name)));
    }
    let uid_set = content
        .spec
        .volume_snapshot_ref
        .uid
        .as_deref()
        .is_some_and(|u| !u.is_empty());
    // Nothing to bind: the uid is there, and so is the class (or the snapshot names none).
    if uid_set && (content.spec.volume_snapshot_class_name.is_some() || vs.class_name().is_none()) {
        return Ok(Ok(content));
    }
    let mut spec = json!({"volumeSnapshotRef": {"uid": vs.uid()}});
    if let Some(class) = vs.class_name() {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    let what = format!(
        "binding VolumeSnapshotContent {name} to VolumeSnapshot {}",
        vs.name_any()
    );
    let bound = patches::merge(&ctx.contents(), &name, &json!({"spec": spec}))
        .await
        .map_err(api_err(&ctx.host, what))?;
    Ok(Ok(bound))
}

/// The content of a dynamic snapshot: found by its name, or created.
pub async fn dynamic(ctx: &Ctx, vs: &VolumeSnapshot) -> Found {
    let name = names::content_for_snapshot(&vs.uid().unwrap_or_default());
    let what = format!("reading VolumeSnapshotContent {name}");
    if let Some(content) = ctx
        .contents()
        .get_opt(&name)
        .await
        .map_err(api_err(&ctx.host, what))?
    {
        if content.spec.source.volume_handle.is_none() {
            let m = format!(
                "VolumeSnapshotContent {name} is pre-provisioned while expecting a dynamically provisioned one"
            );
            return Ok(Err(Problem::new("SnapshotContentMismatch", m)));
        }
        if !content.points_to(vs) {
            return Ok(Err(misbound(&name)));
        }
        return Ok(Ok(content));
    }
    match create(ctx, vs, &name).await? {
        Ok(content) => Ok(Ok(content)),
        Err(why) => Ok(Err(Problem::new(
            "SnapshotContentCreationFailed",
            format!("Failed to create snapshot content with error {why}"),
        ))),
    }
}

/// `createSnapshotContent`; Err says why not, in the controller's words.
async fn create(
    ctx: &Ctx,
    vs: &VolumeSnapshot,
    name: &str,
) -> Result<Result<VolumeSnapshotContent, String>, StorageError> {
    let host = &ctx.host;
    let vs_name = vs.name_any();
    if let Err(why) = protect_claim(ctx, vs).await? {
        return Ok(Err(why));
    }
    let input_err = |why: String| {
        format!("failed to get input parameters to create snapshot {vs_name}: {why:?}")
    };
    let Some(class_name) = vs.class_name() else {
        return Ok(Err(input_err(format!(
            "failed to take snapshot {vs_name} without a snapshot class"
        ))));
    };
    let classes: kube::Api<VolumeSnapshotClass> = kube::Api::all(host.client.clone());
    let what = format!("reading VolumeSnapshotClass {class_name}");
    let Some(class) = classes
        .get_opt(class_name)
        .await
        .map_err(api_err(host, what))?
    else {
        let nf = format!(
            "volumesnapshotclass.{} \"{class_name}\" not found",
            crd::GROUP
        );
        return Ok(Err(input_err(nf)));
    };
    let pv = match volume_of(ctx, vs).await? {
        Ok(pv) => pv,
        Err(why) => return Ok(Err(input_err(why))),
    };
    let Some(content) = content_for(vs, &class, &pv, name) else {
        return Ok(Err(format!(
            "cannot find CSI PersistentVolumeSource for volume {}",
            pv.name_any()
        )));
    };
    let what = format!("creating VolumeSnapshotContent {name} for VolumeSnapshot {vs_name}");
    let created = match ctx.contents().create(&Default::default(), &content).await {
        Ok(c) => c,
        // Made before the agent last stopped: reuse it.
        Err(e) if patches::is_already_exists(&e) => ctx
            .contents()
            .get(name)
            .await
            .map_err(api_err(host, what))?,
        Err(e) => return Err(api_err(host, what)(e)),
    };
    let key = format!("{}/{vs_name}", vs.namespace().unwrap_or_default());
    let note = format!("Waiting for a snapshot {key} to be created by the CSI driver.");
    ctx.events
        .normal(&vs.object_ref(&()), "CreatingSnapshot", "Snapshot", note)
        .await;
    Ok(Ok(created))
}

/// The content of a dynamic snapshot of a CSI volume (None for any other volume).
pub fn content_for(
    vs: &VolumeSnapshot,
    class: &VolumeSnapshotClass,
    pv: &PersistentVolume,
    name: &str,
) -> Option<VolumeSnapshotContent> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref()?;
    Some(VolumeSnapshotContent {
        api_version: Some(crd::API_VERSION.into()),
        kind: Some("VolumeSnapshotContent".into()),
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: VolumeSnapshotContentSpec {
            volume_snapshot_ref: snapshot_ref(vs),
            deletion_policy: class.deletion_policy.clone(),
            driver: class.driver.clone(),
            volume_snapshot_class_name: Some(class.name_any()),
            source: VolumeSnapshotContentSource {
                volume_handle: Some(csi.volume_handle.clone()),
                snapshot_handle: None,
            },
            source_volume_mode: spec.volume_mode.clone(),
        },
        status: None,
    })
}

fn snapshot_ref(vs: &VolumeSnapshot) -> ObjectReference {
    ObjectReference {
        api_version: Some(crd::API_VERSION.into()),
        kind: Some("VolumeSnapshot".into()),
        name: vs.metadata.name.clone(),
        namespace: vs.metadata.namespace.clone(),
        uid: vs.metadata.uid.clone(),
        resource_version: vs.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// `ensurePVCFinalizer`: the claim cannot go while its snapshot is taken.
async fn protect_claim(ctx: &Ctx, vs: &VolumeSnapshot) -> Result<Result<(), String>, StorageError> {
    let vs_name = vs.name_any();
    let failed = |name: &str, why: &str| {
        format!("snapshot controller failed to update {name} on API server: {why}")
    };
    let Some(claim_name) = vs.source_claim() else {
        return Ok(Ok(()));
    };
    let claims = ctx.claims(&vs.namespace().unwrap_or_default());
    let what = format!("reading claim {claim_name} of VolumeSnapshot {vs_name}");
    let Some(pvc) = claims
        .get_opt(claim_name)
        .await
        .map_err(api_err(&ctx.host, what))?
    else {
        return Ok(Err(failed(&vs_name, "cannot get claim from snapshot")));
    };
    if patches::has_finalizer(&pvc, crd::PVC_FINALIZER) {
        return Ok(Ok(()));
    }
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Err(failed(
            claim_name,
            "cannot add finalizer on claim because it is being deleted",
        )));
    }
    let what = format!("protecting claim {claim_name} while VolumeSnapshot {vs_name} is taken");
    patches::add_finalizers(&claims, &pvc, &[crd::PVC_FINALIZER])
        .await
        .map_err(api_err(&ctx.host, what))?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_content_records_the_snapshot_the_volume_and_the_class() {
        let vs: VolumeSnapshot = serde_json::from_value(json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}, "volumeSnapshotClassName": "c"}
        }))
        .expect("vs");
        let class: VolumeSnapshotClass = serde_json::from_value(json!({
            "metadata": {"name": "c"}, "driver": "ebs.csi.aws.com", "deletionPolicy": "Retain"
        }))
        .expect("class");
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1"},
            "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "pvc-1"}, "volumeMode": "Filesystem"}
        }))
        .expect("pv");
        let c =
            serde_json::to_value(content_for(&vs, &class, &pv, "snapcontent-u").expect("content"))
                .expect("json");
        assert_eq!(c["apiVersion"], crd::API_VERSION);
        assert_eq!(c["kind"], "VolumeSnapshotContent");
        assert_eq!(
            c["spec"]["volumeSnapshotRef"],
            json!({"apiVersion": crd::API_VERSION,
            "kind": "VolumeSnapshot", "name": "s", "namespace": "ns", "uid": "u", "resourceVersion": "7"})
        );
        assert_eq!(c["spec"]["source"], json!({"volumeHandle": "pvc-1"}));
        assert_eq!(c["spec"]["deletionPolicy"], "Retain");
        assert_eq!(c["spec"]["driver"], "ebs.csi.aws.com");
        assert_eq!(c["spec"]["volumeSnapshotClassName"], "c");
        assert_eq!(c["spec"]["sourceVolumeMode"], "Filesystem");
        let in_tree: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-2"}, "spec": {"awsElasticBlockStore": {"volumeID": "vol-1"}}
        }))
        .expect("pv");
        assert!(content_for(&vs, &class, &in_tree, "x").is_none());
    }
}
