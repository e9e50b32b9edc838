//! The upstream CSI snapshot kinds (`snapshot.storage.k8s.io/v1`, kubernetes-csi/external-snapshotter
//! `client/apis/volumesnapshot/v1/types.go`), with the fields the agent reads. Writes are merge
//! patches of the fields the agent owns, so fields missing here are never lost.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "snapshot.storage.k8s.io";
pub const API_VERSION: &str = "snapshot.storage.k8s.io/v1";

/// A snapshot's or a content's `status.error`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_content_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotSpec {
    #[serde(default)]
    pub source: VolumeSnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_volume_snapshot_content_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VolumeSnapshot {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VolumeSnapshotSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeSnapshotStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_handle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentSpec {
    #[serde(default)]
    pub volume_snapshot_ref: ObjectReference,
    #[serde(default)]
    pub deletion_policy: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    #[serde(default)]
    pub source: VolumeSnapshotContentSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume_mode: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// Nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_to_use: Option<bool>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SnapshotError>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotContent {
    /// Set on the contents the agent creates (an API server needs them in a create's body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VolumeSnapshotContentSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeSnapshotContentStatus>,
}

macro_rules! snapshot_kind {
    ($ty:ty, $kind:literal, $plural:literal, $scope:ty) => {
        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = API_VERSION;
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }

        impl k8s_openapi::Metadata for $ty {
            type Ty = ObjectMeta;

            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

snapshot_kind!(
    VolumeSnapshot,
    "VolumeSnapshot",
    "volumesnapshots",
    NamespaceResourceScope
);
snapshot_kind!(
    VolumeSnapshotContent,
    "VolumeSnapshotContent",
    "volumesnapshotcontents",
    ClusterResourceScope
);

/// On a VolumeSnapshotContent: the snapshot-controller saw its VolumeSnapshot being deleted.
pub const BEING_DELETED_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";
/// On a VolumeSnapshotContent: the csi-snapshotter is making its physical snapshot.
pub const BEING_CREATED_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-being-created";
/// On a VolumeSnapshot: held while a claim is being restored from it.
pub const AS_SOURCE_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection";
/// On a VolumeSnapshotContent bound to its snapshot: held until the physical snapshot is handled.
pub const CONTENT_FINALIZER: &str =
    "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";

impl VolumeSnapshot {
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.ready_to_use)
            .unwrap_or(false)
    }

    pub fn bound_content(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.bound_volume_snapshot_content_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    pub fn source_content(&self) -> Option<&str> {
        self.spec
            .source
            .volume_snapshot_content_name
            .as_deref()
            .filter(|n| !n.is_empty())
    }
}

impl VolumeSnapshotContent {
    pub fn is_ready(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.ready_to_use)
            .unwrap_or(false)
    }

    /// Whether the content's `volumeSnapshotRef` names this snapshot, uid included.
    pub fn points_to(&self, vs: &VolumeSnapshot) -> bool {
        let r = &self.spec.volume_snapshot_ref;
        r.name == vs.metadata.name
            && r.namespace == vs.metadata.namespace
            && r.uid.is_some()
            && r.uid == vs.metadata.uid
    }

    pub fn status_handle(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.snapshot_handle.as_deref())
            .filter(|h| !h.is_empty())
    }

    pub fn error_message(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.error.as_ref())
            .and_then(|e| e.message.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_shapes_deserialise() {
        let content: VolumeSnapshotContent = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "VolumeSnapshotContent",
            "metadata": {"name": "snapcontent-1"},
            "spec": {"deletionPolicy": "Delete", "driver": "ebs.csi.aws.com",
                     "source": {"volumeHandle": "pvc-1"}, "volumeSnapshotClassName": "c",
                     "volumeSnapshotRef": {"name": "s", "namespace": "default", "uid": "1"}},
            "status": {"creationTime": 1_700_000_000_000_000_000i64, "readyToUse": true,
                       "restoreSize": 1073741824, "snapshotHandle": "snap-1"}
        }))
        .expect("content");
        assert!(content.is_ready());
        assert_eq!(content.status_handle(), Some("snap-1"));
        let vs: VolumeSnapshot = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "default", "uid": "1"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}},
            "status": {"restoreSize": "1Gi", "readyToUse": false,
                       "error": {"message": "m", "time": "2026-01-01T00:00:00Z"}}
        }))
        .expect("snapshot");
        assert!(content.points_to(&vs));
        assert!(!vs.is_ready());
    }
}
