//! Claims restored from a VolumeSnapshot (`spec.dataSourceRef`/`spec.dataSource`): whether the
//! snapshot can be restored yet, in the CSI external-provisioner's words (`getSnapshotSource`), and
//! where its data is.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, TypedLocalObjectReference};
use kube::{Api, ResourceExt};

use super::crd::{self, VolumeSnapshot, VolumeSnapshotContent};
use super::{Host, names, patches, tree};

/// What a claim's data source asks for.
#[derive(Debug, PartialEq)]
pub enum Source {
    /// No data source: an empty volume.
    Empty,
    /// A VolumeSnapshot of the claim's namespace.
    Snapshot(String),
    /// Another claim (cloning), which this driver does not do.
    Claim(String),
    /// Anything else is a volume populator's job, not the provisioner's.
    Populator,
}

fn source_of(r: &TypedLocalObjectReference) -> Source {
    match (r.api_group.as_deref().unwrap_or(""), r.kind.as_str()) {
        (crd::GROUP, "VolumeSnapshot") => Source::Snapshot(r.name.clone()),
        ("", "PersistentVolumeClaim") => Source::Claim(r.name.clone()),
        _ => Source::Populator,
    }
}

/// The claim's data source (`dataSourceRef` first: the API server fills both for these kinds).
pub fn source(claim: &PersistentVolumeClaim) -> Source {
    let Some(spec) = claim.spec.as_ref() else {
        return Source::Empty;
    };
    if let Some(r) = spec.data_source_ref.as_ref() {
        let typed = TypedLocalObjectReference {
            api_group: r.api_group.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
        };
        // A cross-namespace reference is a populator's feature.
        if r.namespace
            .as_deref()
            .is_some_and(|ns| Some(ns) != claim.namespace().as_deref())
        {
            return Source::Populator;
        }
        return source_of(&typed);
    }
    spec.data_source.as_ref().map_or(Source::Empty, source_of)
}

/// Why a snapshot cannot be restored yet: the text after "error getting handle for DataSource
/// Type VolumeSnapshot by Name <name>: ".
pub type Waiting = String;

/// The directory of the snapshot `name` that a claim of `class` (whose driver is `driver`) is
/// restored from, once the snapshot is ready; Err says why not yet.
pub async fn snapshot_dir(
    host: &Host,
    claim: &PersistentVolumeClaim,
    class: &str,
    driver: &str,
    name: &str,
) -> Result<PathBuf, Waiting> {
    let ns = claim.namespace().unwrap_or_default();
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(host.client.clone(), &ns);
    let not_found = || format!("volumesnapshots.{} \"{name}\" not found", crd::GROUP);
    let vs = match snapshots.get_opt(name).await {
        Ok(Some(vs)) => vs,
        Ok(None) => {
            return Err(format!(
                "error getting snapshot {name} from api server: {}",
                not_found()
            ));
        }
        Err(e) => {
            return Err(format!(
                "error getting snapshot {name} from api server: {e}"
            ));
        }
    };
    if vs.metadata.deletion_timestamp.is_some()
        && !patches::has_finalizer(&vs, crd::AS_SOURCE_FINALIZER)
    {
        return Err(format!("snapshot {name} is being deleted"));
    }
    let Some(content_name) = vs.bound_content().map(str::to_string) else {
        return Err(format!("snapshot {name} not bound"));
    };
    let contents: Api<VolumeSnapshotContent> = Api::all(host.client.clone());
    let Ok(Some(content)) = contents.get_opt(&content_name).await else {
        return Err(format!(
            "error getting snapshotcontent {content_name} for snapshot {name}"
        ));
    };
    if !content.points_to(&vs) {
        return Err(format!(
            "snapshotcontent {content_name} for snapshot {name} is bound to a different snapshot"
        ));
    }
    if content.spec.driver != driver {
        return Err(format!(
            "snapshotcontent {content_name} for snapshot {name} is not handled by CSI driver of StorageClass {class}"
        ));
    }
    if !vs.is_ready() {
        return Err(format!("snapshot {name} is not Ready"));
    }
    let Some(handle) = content.status_handle().map(str::to_string) else {
        return Err(format!("snapshot handle {name} is not available"));
    };
    check_size(claim, &vs, name)?;
    let dir = host.snapshots_dir().join(&handle);
    if !tree::is_own_dir(&host.snapshots_dir(), &dir, &handle) || !dir.is_dir() {
        // What the driver's CreateVolume answers for a snapshot it does not have.
        return Err(format!(
            "rpc error: code = NotFound desc = cannot find snapshot {handle}"
        ));
    }
    Ok(dir)
}

/// A volume restored from a snapshot is at least as large as the snapshot.
fn check_size(
    claim: &PersistentVolumeClaim,
    vs: &VolumeSnapshot,
    name: &str,
) -> Result<(), Waiting> {
    let Some(size) = vs.status.as_ref().and_then(|s| s.restore_size.as_ref()) else {
        return Ok(());
    };
    let size = names::bytes_of(&size.0).unwrap_or(0);
    let requested = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| names::bytes_of(&q.0));
    let Some(requested) = requested else {
        return Err(format!(
            "error getting capacity for PVC {} when creating snapshot {name}",
            claim.name_any()
        ));
    };
    if requested < size {
        return Err(format!(
            "requested volume size {requested} is less than the size {size} for the source snapshot {name}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "ns"}, "spec": spec}))
            .expect("claim")
    }

    #[test]
    fn data_sources_are_told_apart() {
        let snap = json!({"apiGroup": crd::GROUP, "kind": "VolumeSnapshot", "name": "s"});
        assert_eq!(source(&claim(json!({}))), Source::Empty);
        assert_eq!(
            source(&claim(json!({"dataSource": snap}))),
            Source::Snapshot("s".into())
        );
        assert_eq!(
            source(&claim(json!({"dataSourceRef": snap}))),
            Source::Snapshot("s".into())
        );
        assert_eq!(
            source(&claim(
                json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "p"}})
            )),
            Source::Claim("p".into())
        );
        assert_eq!(
            source(&claim(
                json!({"dataSourceRef": {"apiGroup": "x.io", "kind": "Pop", "name": "p"}})
            )),
            Source::Populator
        );
        let elsewhere = json!({"apiGroup": crd::GROUP, "kind": "VolumeSnapshot", "name": "s", "namespace": "other"});
        assert_eq!(
            source(&claim(json!({"dataSourceRef": elsewhere}))),
            Source::Populator
        );
    }

    #[test]
    fn a_restored_volume_is_not_smaller_than_its_snapshot() {
        let c = claim(json!({"resources": {"requests": {"storage": "1Gi"}}}));
        let vs = |size: &str| -> VolumeSnapshot {
            serde_json::from_value(
                json!({"metadata": {"name": "s"}, "status": {"restoreSize": size}}),
            )
            .expect("vs")
        };
        assert!(check_size(&c, &vs("1Gi"), "s").is_ok());
        let err = check_size(&c, &vs("2Gi"), "s").expect_err("too small");
        assert_eq!(
            err,
            "requested volume size 1073741824 is less than the size 2147483648 for the source snapshot s"
        );
    }
}
