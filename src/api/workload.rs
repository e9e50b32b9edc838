//! `SovereignWorkload`: what to move, where, how, under which policy and budget; and, in status, the
//! migration's phase, plan, progress, residency verdict and cost.

// Several `printcolumn(...)` share keys by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Finding, Verdict, any_json};

/// A workload to migrate: its Kubernetes objects and the data in its volumes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sovereign.dev",
    version = "v1alpha1",
    kind = "SovereignWorkload",
    plural = "sovereignworkloads",
    shortname = "sw",
    category = "sovereign",
    namespaced,
    status = "SovereignWorkloadStatus",
    derive = "PartialEq",
    doc = "A workload to move, objects and volume data, from a source cluster to a target cluster under a residency policy and a budget.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.display",
        description = "Percent done (objects and bytes)"
    ),
    printcolumn(
        name = "Residency",
        type_ = "string",
        json_path = ".status.residency.verdict"
    ),
    printcolumn(
        name = "Cost",
        type_ = "string",
        json_path = ".status.cost.display",
        description = "Actual cost so far, or the estimate before data moves, with currency"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        priority = 1
    ),
    printcolumn(
        name = "Source",
        type_ = "string",
        json_path = ".spec.source.cluster",
        priority = 1
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target.cluster",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.source.cluster != self.target.cluster").message("source.cluster and target.cluster must name different SovereignClusters").field_path(".target.cluster"))]
#[x_kube(validation = Rule::new("self.mode != 'Plan' || !has(self.cutover) || !has(self.cutover.approvedPlanHash) || self.cutover.approvedPlanHash == ''").message("a Plan-mode workload touches nothing, so it cannot carry a cutover approval: remove cutover.approvedPlanHash or choose mode Move or Copy").field_path(".cutover.approvedPlanHash"))]
#[x_kube(validation = Rule::new("!has(self.data) || !has(self.data.transport) || self.data.transport != 'Endpoint' || (has(self.data.endpoint) && self.data.endpoint != '')").message("data.transport Endpoint needs data.endpoint (host:port the sender can reach the receiver at)").field_path(".data.endpoint"))]
#[serde(rename_all = "camelCase")]
pub struct SovereignWorkloadSpec {
    /// What to move.
    pub source: Source,
    /// Where to move it.
    pub target: Target,
    /// `Move` cuts over (the source ends scaled to zero), `Copy` replicates and starts the target
    /// without touching the source, `Plan` only computes the plan, the residency pre-flight and the
    /// cost estimate.
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover: Option<CutoverSpec>,
    /// The ResidencyPolicy the workload must satisfy.
    #[serde(default = "default_policy")]
    #[schemars(length(min = 1, max = 253))]
    pub residency_policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<Governance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSpec>,
    /// Pause the migration at the next safe point (never in the middle of a cutover).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

fn default_policy() -> String {
    "quebec-strict".to_string()
}

/// What to move.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The SovereignCluster to move from. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("source.cluster is immutable: create a new SovereignWorkload to migrate from another cluster"))]
    pub cluster: String,
    /// The namespace the workload lives in. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("source.namespace is immutable: create a new SovereignWorkload to migrate another namespace"))]
    pub namespace: String,
    /// Only objects matching this selector (and what they reference) are moved; empty selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Kinds to move; empty means every kind the workload uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 317)))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Z][A-Za-z0-9]*(\\\\.[a-z0-9.-]+)?$'))").message("includeKinds entries are Kinds such as Deployment, or Kind.group such as Widget.example.com"))]
    pub include_kinds: Vec<String>,
    /// Kinds never moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 317)))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Z][A-Za-z0-9]*(\\\\.[a-z0-9.-]+)?$'))").message("excludeKinds entries are Kinds such as Event, or Kind.group such as Widget.example.com"))]
    pub exclude_kinds: Vec<String>,
}

/// Where to move it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The SovereignCluster to move to. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("target.cluster is immutable: create a new SovereignWorkload to migrate to another cluster"))]
    pub cluster: String,
    /// The namespace in the target cluster; defaults to the source namespace. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("target.namespace is immutable once set"))]
    pub namespace: Option<String>,
    /// Source StorageClass name → target StorageClass name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, size(k) > 0 && size(self[k]) > 0)").message("storageClassMap must not contain empty StorageClass names"))]
    pub storage_class_map: BTreeMap<String, String>,
    /// Image registry prefixes to rewrite, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub image_rewrites: Vec<ImageRewrite>,
    /// JSON patches (RFC 6902) applied to matching objects after the built-in transforms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub patches: Vec<ObjectPatch>,
}

/// A registry prefix rewrite: `from` is replaced by `to` at the start of an image reference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.from != self.to").message("an image rewrite must change the registry: from and to are equal"))]
#[serde(rename_all = "camelCase")]
pub struct ImageRewrite {
    #[schemars(length(min = 1, max = 512))]
    pub from: String,
    #[schemars(length(min = 1, max = 512))]
    pub to: String,
}

/// A user-supplied JSON patch for the objects of a kind (optionally one name).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPatch {
    #[schemars(length(min = 1, max = 253))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    #[schemars(length(min = 1, max = 64))]
    pub operations: Vec<PatchOperation>,
}

/// One RFC 6902 operation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(self.op in ['move', 'copy']) == has(self.from)").message("move and copy need from; other operations take none"))]
#[serde(rename_all = "camelCase")]
pub struct PatchOperation {
    pub op: PatchOp,
    #[schemars(regex(pattern = r"^(/([^~/]|~[01])*)*$"))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(/([^~/]|~[01])*)*$"))]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub value: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Mode {
    #[default]
    Move,
    Copy,
    Plan,
}

/// How the data is kept consistent and moved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSpec {
    #[serde(default)]
    pub consistency: Consistency,
    /// Incremental passes while the source keeps serving, before the final pass.
    #[serde(default = "default_pre_copy")]
    #[schemars(range(min = 0, max = 10))]
    pub pre_copy_passes: i32,
    #[serde(default)]
    pub transport: Transport,
    /// `host:port` the sender reaches the receiver at, with transport `Endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.\[\]:-]+:[0-9]{1,5}$"))]
    pub endpoint: Option<String>,
    /// Volumes moved at the same time.
    #[serde(default = "default_parallel_volumes")]
    #[schemars(range(min = 1, max = 16))]
    pub parallel_volumes: i32,
}

fn default_pre_copy() -> i32 {
    1
}

fn default_parallel_volumes() -> i32 {
    2
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Consistency {
    /// Pre-copy while the source runs, final pass after the source is scaled to zero.
    #[default]
    Quiesce,
    /// Copy from a CSI VolumeSnapshot (needs a VolumeSnapshotClass in the source).
    Snapshot,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Transport {
    #[default]
    LoadBalancer,
    NodePort,
    Endpoint,
}

/// How the cutover happens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CutoverSpec {
    #[serde(default)]
    pub strategy: CutoverStrategy,
    /// The `status.plan.hash` a person approved (committed through GitOps); with `Manual`, nothing is
    /// cut over until it matches the current plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([a-f0-9]{64})?$"))]
    pub approved_plan_hash: Option<String>,
    /// Who approved, for the record (e.g. a commit author); defaults to the last writer of the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub approved_by: Option<String>,
    /// How long the target may take to become healthy before the migration rolls back.
    #[serde(default = "default_health_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('30s') && duration(self) <= duration('24h')").message("healthTimeout must be between 30s and 24h"))]
    pub health_timeout: String,
    /// How long the source is kept, scaled to zero, after a completed `Move` (rollback stays possible).
    #[serde(default = "default_retain")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')").message("retainSourceFor must be a non-negative duration such as 168h"))]
    pub retain_source_for: String,
    /// Remove the source objects, PVCs and PVs once `retainSourceFor` has passed.
    #[serde(default)]
    pub decommission_source: bool,
    /// Request a rollback: scale the target down and restore the source as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

impl Default for CutoverSpec {
    fn default() -> Self {
        CutoverSpec {
            strategy: CutoverStrategy::Manual,
            approved_plan_hash: None,
            approved_by: None,
            health_timeout: default_health_timeout(),
            retain_source_for: default_retain(),
            decommission_source: false,
            rollback: false,
        }
    }
}

fn default_health_timeout() -> String {
    "10m".to_string()
}

fn default_retain() -> String {
    "168h".to_string()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CutoverStrategy {
    /// Wait in `AwaitingApproval` until `approvedPlanHash` equals the plan's hash.
    #[default]
    Manual,
    Automatic,
}

/// The facts a public body must keep about the data it moves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Governance {
    pub data_classification: DataClassification,
    /// Reference of the privacy-impact assessment (évaluation des facteurs relatifs à la vie
    /// privée, Law 25); a policy can require it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub privacy_impact_assessment_ref: Option<String>,
    /// The accountable person or office.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub owner: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DataClassification {
    Public,
    Internal,
    Confidential,
    Restricted,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSpec {
    /// Currency the cost is reported in.
    #[serde(default = "default_currency")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Money>,
}

fn default_currency() -> String {
    "CAD".to_string()
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    #[schemars(range(min = 0.0))]
    pub amount: f64,
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

/// The phases of a migration. `phase` is for people and printer columns; conditions are the
/// machine API.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Planning,
    AwaitingApproval,
    Replicating,
    CuttingOver,
    Verifying,
    Completed,
    Paused,
    Failed,
    RollingBack,
    RolledBack,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Pending,
        Phase::Planning,
        Phase::AwaitingApproval,
        Phase::Replicating,
        Phase::CuttingOver,
        Phase::Verifying,
        Phase::Completed,
        Phase::Paused,
        Phase::Failed,
        Phase::RollingBack,
        Phase::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Planning => "Planning",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Replicating => "Replicating",
            Phase::CuttingOver => "CuttingOver",
            Phase::Verifying => "Verifying",
            Phase::Completed => "Completed",
            Phase::Paused => "Paused",
            Phase::Failed => "Failed",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SovereignWorkloadStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// A sentence on why the workload is in its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// One entry per volume, rolled up from its VolumeTransfer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSummary>,
    /// Per-object results (bounded; failures first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<ResidencyStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostStatus>,
    /// Replica counts and CronJob suspension of the source as they were before quiescing, so that a
    /// rollback restores them exactly, even after an operator restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quiesced: Vec<QuiescedObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover_at: Option<Time>,
    /// When the target was started and its health watch began (the health timeout counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifying_since: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// What decommissioning removed from the source, as evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decommissioned: Vec<String>,
}

/// The plan, summarised with a stable hash.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// SHA-256 of the planned objects, transforms, volumes and target: what an approval names.
    pub hash: String,
    pub objects: i64,
    pub volumes: i64,
    /// Bytes of volume data to move (the PVCs' used bytes when known, else their capacity).
    pub bytes: i64,
    /// The named transforms applied, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<String>,
    /// What the plan found: missing references, removed annotations, … (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    /// The hash that was approved, who approved it and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_at: Option<Time>,
    /// The plan hash whose objects were last applied to the target in full; a plan that did not
    /// change is not applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub objects_done: i64,
    pub objects_total: i64,
    pub bytes_done: i64,
    pub bytes_total: i64,
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    /// `percent` as people read it, for the printer column (`61%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default)]
    pub bytes_per_second: i64,
    /// Estimated time to completion of the current pass (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// Predicted downtime of the final pass, from the last pre-copy's delta and rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_downtime: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSummary {
    pub pvc: String,
    /// The VolumeTransfer that holds this volume's state.
    pub transfer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default)]
    pub pass: i32,
    #[serde(default)]
    pub bytes_done: i64,
    #[serde(default)]
    pub bytes_total: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    pub kind: String,
    pub name: String,
    pub result: ObjectOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ObjectOutcome {
    Applied,
    Unchanged,
    Skipped,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyStatus {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// The policy evaluated, and its generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// Bounded list, most severe first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostStatus {
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated: Option<CostEstimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<CostActual>,
    /// What the COST column shows: the actual cost once data moves, else the estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// The estimate's breakdown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<CostItem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostEstimate {
    pub one_time: f64,
    pub monthly_before: f64,
    pub monthly_after: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostActual {
    pub one_time: f64,
    /// Bytes the movers actually sent, counted once per pass.
    #[serde(default)]
    pub wire_bytes: i64,
    /// Seconds both sides ran in parallel.
    #[serde(default)]
    pub parallel_seconds: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostItem {
    pub name: String,
    pub quantity: f64,
    pub unit: String,
    pub unit_price: f64,
    pub amount: f64,
    pub source: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuiescedObject {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
}

/// Annotations and labels the operator writes on objects it creates.
pub mod keys {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "sovereign-operator";
    pub const WORKLOAD: &str = "sovereign.dev/workload";
    pub const SOURCE_UID: &str = "sovereign.dev/source-uid";
    pub const SOURCE_HASH: &str = "sovereign.dev/source-hash";
    /// The replica count a workload created at zero gets back at cutover.
    pub const REPLICAS: &str = "sovereign.dev/replicas";
    /// Whether a CronJob created suspended was suspended in the source (on a DaemonSet: whether
    /// it was held in the source).
    pub const SUSPENDED: &str = "sovereign.dev/suspended";
    /// A DaemonSet has no replica count: it is stopped by this node-selector key, which no node
    /// carries, and started again by removing it.
    pub const HELD: &str = "sovereign.dev/held";
    /// On a VolumeTransfer: the workload asks for the final pass (the source is quiesced, or in
    /// `Copy` mode the pre-copy passes are done).
    pub const FINAL_PASS: &str = "sovereign.dev/final-pass";
    /// On the mover's own objects (pods, services, secrets): the VolumeTransfer they serve.
    pub const TRANSFER: &str = "sovereign.dev/volume-transfer";
}
