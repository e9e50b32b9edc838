//! `VolumeTransfer`: one volume's move, the mover's checkpointed state. A restarted operator resumes
//! from it; `kubectl get vt` shows each volume's progress.

// Several `printcolumn(...)` share keys by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workload::Consistency;

/// One volume of a SovereignWorkload being moved. Created and owned by the workload.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sovereign.dev",
    version = "v1alpha1",
    kind = "VolumeTransfer",
    plural = "volumetransfers",
    shortname = "vt",
    category = "sovereign",
    namespaced,
    status = "VolumeTransferStatus",
    derive = "PartialEq",
    doc = "One volume of a SovereignWorkload on its way from the source cluster to the target cluster: the mover's checkpointed state.",
    printcolumn(name = "PVC", type_ = "string", json_path = ".spec.source.pvc"),
    printcolumn(name = "Pass", type_ = "integer", json_path = ".status.pass"),
    printcolumn(
        name = "Done/Total",
        type_ = "string",
        json_path = ".status.display.bytes"
    ),
    printcolumn(name = "Rate", type_ = "string", json_path = ".status.display.rate"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Workload",
        type_ = "string",
        json_path = ".spec.workload",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("a VolumeTransfer's spec is immutable: the operator creates a new one when the plan changes"))]
#[serde(rename_all = "camelCase")]
pub struct VolumeTransferSpec {
    /// The SovereignWorkload this volume belongs to (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub workload: String,
    pub source: VolumeEnd,
    pub target: VolumeEnd,
    #[serde(default)]
    pub consistency: Consistency,
    /// Requested capacity of the target PVC, as a Kubernetes quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
}

/// One end of a volume transfer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEnd {
    /// The SovereignCluster.
    #[schemars(length(min = 1, max = 253))]
    pub cluster: String,
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub pvc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TransferPhase {
    #[default]
    Pending,
    /// Target PVC, certificates, receiver and sender being created.
    Preparing,
    Transferring,
    /// A pass ended; both root hashes being compared.
    Verifying,
    /// A pre-copy pass verified; the source still serves.
    Synced,
    /// The final pass verified after the source was quiesced.
    Completed,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTransferStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TransferPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The pass under way or last finished (1-based); the final pass is the last.
    #[serde(default)]
    pub pass: i32,
    /// The attempt of the current pass (a sender that failed is retried, up to a limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: i32,
    /// Whether the current pass is the final one (source quiesced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_pass: bool,
    #[serde(default)]
    pub bytes_done: i64,
    #[serde(default)]
    pub bytes_total: i64,
    #[serde(default)]
    pub files_done: i64,
    #[serde(default)]
    pub files_total: i64,
    /// Bytes actually sent on the wire over all passes, after deduplication and compression.
    #[serde(default)]
    pub wire_bytes: i64,
    /// Wire bytes of each finished pass, so that a retried pass is never counted twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_wire_bytes: Vec<i64>,
    #[serde(default)]
    pub bytes_per_second: i64,
    #[serde(default)]
    pub duration_seconds: i64,
    /// Bytes that changed in the last pre-copy pass: what the final pass will have to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delta_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_root_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_root_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Human-readable figures for the printer columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<TransferDisplay>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferDisplay {
    /// `1.2GiB/4.0GiB`
    pub bytes: String,
    /// `118MiB/s`
    pub rate: String,
}
