//! The attestation as data: built purely from a `SovereignWorkload` (with its status), its
//! `VolumeTransfer`s, the source and target `SovereignCluster`s and the `ResidencyPolicy`.
//!
//! Missing evidence is written down as missing (`null`, `found: false`, a sentence in
//! `conclusion.problems` or `conclusion.notes`), never filled in: a report that cannot attest a
//! finished, compliant, verified move says so in its first lines, and the CLI's exit code follows
//! `conclusion.attested`.
//!
//! Field order is the serialization order (serde keeps struct order), so the same inputs always give
//! the same JSON bytes, which is what the signature covers.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::api::transfer::TransferPhase;
use crate::api::workload::{Mode, Phase};
use crate::api::{
    Finding, ResidencyPolicy, SovereignCluster, SovereignWorkload, Verdict, VolumeTransfer,
};

/// What the attestation is built from, as read from the operator's cluster.
pub struct Inputs<'a> {
    pub workload: &'a SovereignWorkload,
    /// The workload's VolumeTransfers (those it owns).
    pub transfers: &'a [VolumeTransfer],
    /// `None` when the SovereignCluster named by `spec.source.cluster` does not exist.
    pub source: Option<&'a SovereignCluster>,
    pub target: Option<&'a SovereignCluster>,
    /// `None` when the ResidencyPolicy named by `spec.residencyPolicy` does not exist.
    pub policy: Option<&'a ResidencyPolicy>,
}

/// When and by what the attestation was made, and with which key it is signed. Passed in (not read
/// from the clock or the cluster here) so that the model stays a pure function of its inputs.
pub struct Provenance {
    pub generated_at: jiff::Timestamp,
    pub signer: Signer,
}

/// The `kind` every attestation carries, so a filed document says what it is.
pub const KIND: &str = "SovereignMigrationAttestation";
/// Bumped when a field changes meaning or disappears; new fields do not bump it.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    pub kind: String,
    pub format_version: u32,
    pub generated_at: String,
    /// `sovereign-operator <version>`.
    pub generator: String,
    pub conclusion: Conclusion,
    pub workload: WorkloadIdentity,
    pub governance: GovernanceEvidence,
    pub migration: MigrationEvidence,
    pub source: ClusterEvidence,
    pub target: ClusterEvidence,
    pub plan: Option<PlanEvidence>,
    pub volumes: Vec<VolumeEvidence>,
    pub residency: ResidencyEvidence,
    pub decommissioning: DecommissioningEvidence,
    pub cost: Option<CostEvidence>,
    /// The key the signature was made with. Inside the signed bytes so that a signature cannot be
    /// presented as coming from another key Secret; a verifier still takes the public key from the
    /// Québec cluster (or another trusted copy), never from this field alone.
    pub signing: Signer,
}

/// The first thing a reader needs: can this be filed as proof of a finished, compliant move?
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Conclusion {
    /// True only for a Completed migration whose residency verdict is Compliant and whose every
    /// volume's source and target root hashes were recorded and match.
    pub attested: bool,
    /// One sentence: what is attested, or why not.
    pub statement: String,
    /// Each reason `attested` is false.
    pub problems: Vec<String>,
    /// What a reader should know that does not by itself stop the attestation (a source kept with
    /// its data, a declared location the operator did not observe, missing cost figures, …).
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub generation: Option<i64>,
    /// The generation the status describes.
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GovernanceEvidence {
    pub data_classification: Option<String>,
    pub privacy_impact_assessment_ref: Option<String>,
    pub owner: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MigrationEvidence {
    /// `Move`, `Copy` or `Plan`.
    pub mode: String,
    /// `null` when the operator has not written a status yet.
    pub phase: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub cutover_at: Option<String>,
    pub completed_at: Option<String>,
    pub conditions: Vec<ConditionEvidence>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionEvidence {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
}

/// One side of the move: what the cluster claims (spec) and what the operator observed (status).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvidence {
    /// The SovereignCluster's name.
    pub cluster: String,
    /// Whether that SovereignCluster exists; when it does not, everything below is `null`.
    pub found: bool,
    pub namespace: String,
    pub declared: Placement,
    pub observed: Placement,
    /// `Sovereign`, `ForeignControlled` or `Unknown`, as the operator derived it.
    pub sovereignty: Option<String>,
    /// The cluster's verdict against the operator's default policy.
    pub verdict: Option<String>,
    pub reachable: Option<bool>,
    pub last_probe_time: Option<String>,
    pub kubernetes_version: Option<String>,
    pub node_regions: Vec<String>,
    pub node_zones: Vec<String>,
    pub provider_id_schemes: Vec<String>,
    pub storage_provisioners: Vec<String>,
    /// Residency findings about the cluster itself.
    pub findings: Vec<Finding>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub provider: Option<String>,
    pub region: Option<String>,
    /// ISO 3166-2 style code (`CA-QC`).
    pub location: Option<String>,
    /// Country of the operator's parent company.
    pub jurisdiction: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanEvidence {
    pub hash: String,
    pub approved_hash: Option<String>,
    /// Whether the approved hash is the plan's hash (an approval names exactly one plan).
    pub approval_matches_plan: bool,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub computed_at: Option<String>,
    pub objects: i64,
    pub volumes: i64,
    pub bytes: i64,
    pub transforms: Vec<String>,
    pub findings: Vec<Finding>,
}

/// One volume: what the mover did and the proof that the target holds what the source held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEvidence {
    pub pvc: String,
    /// The VolumeTransfer's name.
    pub transfer: String,
    /// Whether that VolumeTransfer exists; when it does not, nothing below was observed.
    pub found: bool,
    /// `cluster/namespace/pvc`.
    pub source_claim: Option<String>,
    pub target_claim: Option<String>,
    pub phase: Option<String>,
    pub passes: i32,
    pub final_pass: bool,
    pub pass_wire_bytes: Vec<i64>,
    pub wire_bytes: i64,
    pub bytes: i64,
    pub files: i64,
    pub source_root_hash: Option<String>,
    pub target_root_hash: Option<String>,
    /// Both hashes recorded and equal.
    pub hashes_match: bool,
    /// `Verified`, `Mismatch`, `NotRecorded` or `TransferMissing`.
    pub verification: String,
    pub completed_at: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyEvidence {
    /// `Compliant`, `NonCompliant`, `Unknown`; `null` when the operator has not judged the workload.
    pub verdict: Option<String>,
    pub location: Option<String>,
    pub jurisdiction: Option<String>,
    /// The policy the verdict was made against, as the status names it.
    pub policy: Option<String>,
    pub checked_at: Option<String>,
    /// Most severe first, each with what to do about it.
    pub findings: Vec<Finding>,
    /// The policy's rules as they are now.
    pub policy_rules: Option<PolicyRules>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRules {
    pub name: String,
    pub generation: Option<i64>,
    pub enforcement: String,
    pub allowed_locations: Vec<String>,
    pub allowed_jurisdictions: Vec<String>,
    pub allow_foreign_controlled_providers: bool,
    pub allowed_registries: Vec<String>,
    pub require_privacy_impact_assessment: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecommissioningEvidence {
    /// `spec.cutover.decommissionSource`.
    pub requested: bool,
    pub retain_source_for: String,
    /// When the retention ends (completedAt + retainSourceFor), when both are known.
    pub retained_until: Option<String>,
    /// What happened to the source, in one sentence.
    pub statement: String,
    /// `status.decommissioned`, verbatim.
    pub evidence: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CostEvidence {
    pub currency: String,
    pub estimated: Option<EstimatedCost>,
    pub actual: Option<ActualCost>,
    pub budget: Option<Budget>,
    /// The estimate's breakdown.
    pub items: Vec<CostLine>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EstimatedCost {
    pub one_time: f64,
    pub monthly_before: f64,
    pub monthly_after: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActualCost {
    pub one_time: f64,
    pub wire_bytes: i64,
    pub parallel_seconds: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub amount: f64,
    pub currency: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    pub name: String,
    pub quantity: f64,
    pub unit: String,
    pub unit_price: f64,
    pub amount: f64,
    pub source: String,
}

/// The signing key, as recorded inside the signed bytes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signer {
    /// `Ed25519`.
    pub algorithm: String,
    /// `namespace/name` of the Secret holding the key in the operator's (Québec) cluster.
    pub key_secret: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
    /// The API server the key was read from.
    pub api_server: Option<String>,
}

/// Builds the attestation. Pure: the same inputs and provenance give the same attestation.
pub fn build(inputs: &Inputs, provenance: &Provenance) -> Attestation {
    let w = inputs.workload;
    let status = w.status.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    let workload = WorkloadIdentity {
        namespace: w.namespace().unwrap_or_default(),
        name: w.name_any(),
        uid: w.uid(),
        generation: w.metadata.generation,
        observed_generation: status.observed_generation,
    };
    if let (Some(g), Some(o)) = (workload.generation, workload.observed_generation)
        && g != o
    {
        notes.push(format!(
            "the status describes generation {o} of the workload, its spec is at generation {g}: the spec changed after the operator last acted on it"
        ));
    }

    let governance = GovernanceEvidence {
        data_classification: w
            .spec
            .governance
            .as_ref()
            .map(|g| variant(&g.data_classification)),
        privacy_impact_assessment_ref: w
            .spec
            .governance
            .as_ref()
            .and_then(|g| g.privacy_impact_assessment_ref.clone()),
        owner: w.spec.governance.as_ref().and_then(|g| g.owner.clone()),
    };
    if governance.privacy_impact_assessment_ref.is_none() {
        notes.push("no privacy-impact-assessment reference is recorded on the workload".into());
    }

    let phase = status.phase;
    let migration = MigrationEvidence {
        mode: variant(&w.spec.mode),
        phase: phase.map(|p| p.as_str().to_string()),
        message: status.message.clone(),
        started_at: status.started_at.as_ref().map(time),
        cutover_at: status.cutover_at.as_ref().map(time),
        completed_at: status.completed_at.as_ref().map(time),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionEvidence {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: time(&c.last_transition_time),
            })
            .collect(),
    };
    let completed = phase == Some(Phase::Completed);
    if !completed {
        problems.push(format!(
            "NOT COMPLETED — the migration is in phase {}: this is not an attestation of a finished move",
            migration.phase.as_deref().unwrap_or("(none recorded)")
        ));
    }

    let target_ns = w
        .spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| w.spec.source.namespace.clone());
    let source = cluster_evidence(
        &w.spec.source.cluster,
        &w.spec.source.namespace,
        inputs.source,
    );
    let target = cluster_evidence(&w.spec.target.cluster, &target_ns, inputs.target);
    if !source.found {
        notes.push(format!(
            "the source SovereignCluster {} no longer exists: what it declared and what was observed of it are not in this report",
            source.cluster
        ));
    }
    if !target.found {
        problems.push(format!(
            "the target SovereignCluster {} does not exist: where the workload runs cannot be shown from the cluster's own evidence",
            target.cluster
        ));
    }
    for side in [&source, &target] {
        notes.extend(placement_discrepancies(side));
    }

    let plan = status.plan.as_ref().map(|p| PlanEvidence {
        hash: p.hash.clone(),
        approved_hash: p.approved_hash.clone(),
        approval_matches_plan: p.approved_hash.as_deref() == Some(p.hash.as_str()),
        approved_by: p.approved_by.clone(),
        approved_at: p.approved_at.as_ref().map(time),
        computed_at: p.computed_at.as_ref().map(time),
        objects: p.objects,
        volumes: p.volumes,
        bytes: p.bytes,
        transforms: p.transforms.clone(),
        findings: p.findings.clone(),
    });
    match &plan {
        None => notes.push("no plan is recorded in the workload's status".into()),
        Some(p) if p.approved_hash.is_none() => {
            notes.push("the plan's approval is not recorded (no approved hash)".into())
        }
        Some(p) if !p.approval_matches_plan => notes.push(format!(
            "the approved hash {} is not the current plan's hash {}: the plan was recomputed after the approval",
            p.approved_hash.as_deref().unwrap_or_default(),
            p.hash
        )),
        Some(_) => {}
    }

    let volumes = volume_evidence(&status.volumes, inputs.transfers);
    for v in &volumes {
        match v.verification.as_str() {
            VERIFIED => {}
            MISMATCH => problems.push(format!(
                "volume {}: the source and target root hashes DIFFER (source {}, target {}): the target does not hold what the source held",
                v.pvc,
                v.source_root_hash.as_deref().unwrap_or_default(),
                v.target_root_hash.as_deref().unwrap_or_default()
            )),
            TRANSFER_MISSING => problems.push(format!(
                "volume {}: its VolumeTransfer {} does not exist (or is not owned by this workload), so its data cannot be shown to be verified",
                v.pvc, v.transfer
            )),
            _ => problems.push(format!(
                "volume {}: {} not recorded, so its data is NOT VERIFIED",
                v.pvc,
                match (&v.source_root_hash, &v.target_root_hash) {
                    (None, None) => "neither root hash is",
                    (None, Some(_)) => "the source root hash is",
                    _ => "the target root hash is",
                }
            )),
        }
        if v.found
            && v.verification == VERIFIED
            && v.phase.as_deref() != Some(variant(&TransferPhase::Completed).as_str())
        {
            let phase = v.phase.as_deref().unwrap_or("(none)");
            let text = format!(
                "volume {}: its transfer is in phase {phase}, not Completed: the matching hashes are those of a pass before the final one",
                v.pvc
            );
            // A finished migration's volumes must have finished their final pass.
            if completed {
                problems.push(text);
            } else {
                notes.push(text);
            }
        }
    }
    if let Some(p) = &plan
        && usize::try_from(p.volumes).is_ok_and(|n| n > volumes.len())
    {
        problems.push(format!(
            "the plan counts {} volume(s) but evidence exists for {} only",
            p.volumes,
            volumes.len()
        ));
    }

    let residency = residency_evidence(&status, inputs.policy);
    match residency.verdict.as_deref() {
        Some(v) if v == variant(&Verdict::Compliant) => {}
        Some(v) => problems.push(format!(
            "the residency verdict is {v}, not Compliant{}",
            residency
                .findings
                .first()
                .map(|f| format!(" (first finding: {} — {})", f.object, f.rule))
                .unwrap_or_default()
        )),
        None => problems.push("no residency verdict is recorded for the workload".into()),
    }
    if inputs.policy.is_none() {
        notes.push(format!(
            "the ResidencyPolicy {} does not exist any more: its rules are not in this report",
            w.spec.residency_policy
        ));
    }

    let decommissioning = decommissioning_evidence(w, &status, &source);
    if completed && w.spec.mode != Mode::Plan && status.decommissioned.is_empty() {
        notes.push(decommissioning.statement.clone());
    }
    notes.extend(
        status
            .decommissioned
            .iter()
            .filter(|l| l.contains("Retain") || l.contains("kept"))
            .map(|l| format!("decommissioning left something behind: {l}")),
    );

    let cost = cost_evidence(w, &status);
    match &cost {
        None => notes.push("no cost is recorded in the workload's status".into()),
        Some(c) => {
            let transfer_wire: i64 = volumes.iter().map(|v| v.wire_bytes).sum();
            if let Some(a) = &c.actual
                && completed
                && a.wire_bytes != transfer_wire
            {
                notes.push(format!(
                    "the cost ledger counts {} wire bytes, the volume transfers {transfer_wire}",
                    a.wire_bytes
                ));
            }
            if c.actual.is_none() {
                notes.push("no actual cost is recorded, only the estimate".into());
            }
        }
    }

    let attested = problems.is_empty();
    let statement = statement(
        attested, &workload, &migration, &source, &target, &residency, &volumes,
    );
    Attestation {
        kind: KIND.into(),
        format_version: FORMAT_VERSION,
        generated_at: timestamp(provenance.generated_at),
        generator: format!("sovereign-operator {}", env!("CARGO_PKG_VERSION")),
        conclusion: Conclusion {
            attested,
            statement,
            problems,
            notes,
        },
        workload,
        governance,
        migration,
        source,
        target,
        plan,
        volumes,
        residency,
        decommissioning,
        cost,
        signing: provenance.signer.clone(),
    }
}

pub const VERIFIED: &str = "Verified";
pub const MISMATCH: &str = "Mismatch";
pub const NOT_RECORDED: &str = "NotRecorded";
pub const TRANSFER_MISSING: &str = "TransferMissing";

/// The name an API enum serializes to (`Completed`, `NonCompliant`): the same word `kubectl` shows.
fn variant<T: Serialize + std::fmt::Debug>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{v:?}"),
    }
}

/// Kubernetes' own timestamp form (seconds, UTC).
fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn time(t: &Time) -> String {
    timestamp(t.0)
}

fn cluster_evidence(name: &str, namespace: &str, c: Option<&SovereignCluster>) -> ClusterEvidence {
    let spec = c.map(|c| &c.spec);
    let st = c.and_then(|c| c.status.clone()).unwrap_or_default();
    let nodes = st.nodes.clone().unwrap_or_default();
    ClusterEvidence {
        cluster: name.to_string(),
        found: c.is_some(),
        namespace: namespace.to_string(),
        declared: Placement {
            provider: spec.and_then(|s| s.provider.clone()),
            region: spec.and_then(|s| s.region.clone()),
            location: spec.and_then(|s| s.location.as_ref()).map(|l| l.code()),
            jurisdiction: spec.and_then(|s| s.jurisdiction.clone()),
        },
        observed: Placement {
            provider: st.provider.clone(),
            region: st.region.clone(),
            location: st.location.clone(),
            jurisdiction: st.jurisdiction.clone(),
        },
        sovereignty: st.sovereignty.as_ref().map(variant),
        verdict: st.verdict.as_ref().map(variant),
        reachable: st.reachable,
        last_probe_time: st.last_probe_time.as_ref().map(time),
        kubernetes_version: st.kubernetes_version.clone(),
        node_regions: nodes.regions,
        node_zones: nodes.zones,
        provider_id_schemes: nodes.provider_id_schemes,
        storage_provisioners: st.storage_provisioners.clone(),
        findings: st.findings,
    }
}

/// Where a cluster's claim and the operator's observation disagree: worth a reader's attention
/// (an observation wins for the verdict, but the claim is what someone signed off on).
fn placement_discrepancies(c: &ClusterEvidence) -> Vec<String> {
    if !c.found {
        return Vec::new();
    }
    let pairs = [
        ("location", &c.declared.location, &c.observed.location),
        (
            "jurisdiction",
            &c.declared.jurisdiction,
            &c.observed.jurisdiction,
        ),
    ];
    let mut out = Vec::new();
    for (what, declared, observed) in pairs {
        match (declared, observed) {
            (Some(d), Some(o)) if d != o => out.push(format!(
                "cluster {} declares {what} {d} but the operator observed {o}",
                c.cluster
            )),
            (Some(d), None) => out.push(format!(
                "cluster {} declares {what} {d}; the operator has not observed it",
                c.cluster
            )),
            _ => {}
        }
    }
    out
}

/// One entry per volume: those the status lists, and any transfer the workload owns that the
/// status does not list (a transfer is evidence whether or not the roll-up mentions it).
fn volume_evidence(
    summaries: &[crate::api::workload::VolumeSummary],
    transfers: &[VolumeTransfer],
) -> Vec<VolumeEvidence> {
    let by_name: BTreeMap<String, &VolumeTransfer> =
        transfers.iter().map(|t| (t.name_any(), t)).collect();
    let mut names: BTreeMap<String, String> = BTreeMap::new(); // transfer → pvc
    for s in summaries {
        names.insert(s.transfer.clone(), s.pvc.clone());
    }
    for t in transfers {
        names
            .entry(t.name_any())
            .or_insert_with(|| t.spec.source.pvc.clone());
    }
    let mut out: Vec<VolumeEvidence> = names
        .into_iter()
        .map(|(transfer, pvc)| match by_name.get(&transfer) {
            Some(t) => from_transfer(&pvc, t),
            None => VolumeEvidence {
                pvc,
                transfer,
                found: false,
                source_claim: None,
                target_claim: None,
                phase: None,
                passes: 0,
                final_pass: false,
                pass_wire_bytes: Vec::new(),
                wire_bytes: 0,
                bytes: 0,
                files: 0,
                source_root_hash: None,
                target_root_hash: None,
                hashes_match: false,
                verification: TRANSFER_MISSING.into(),
                completed_at: None,
            },
        })
        .collect();
    out.sort_by(|a, b| (&a.pvc, &a.transfer).cmp(&(&b.pvc, &b.transfer)));
    out
}

fn from_transfer(pvc: &str, t: &VolumeTransfer) -> VolumeEvidence {
    let s = t.status.clone().unwrap_or_default();
    let claim =
        |e: &crate::api::transfer::VolumeEnd| format!("{}/{}/{}", e.cluster, e.namespace, e.pvc);
    let hashes_match =
        matches!((&s.source_root_hash, &s.target_root_hash), (Some(a), Some(b)) if a == b);
    let verification = match (&s.source_root_hash, &s.target_root_hash) {
        (Some(_), Some(_)) if hashes_match => VERIFIED,
        (Some(_), Some(_)) => MISMATCH,
        _ => NOT_RECORDED,
    };
    VolumeEvidence {
        pvc: pvc.to_string(),
        transfer: t.name_any(),
        found: true,
        source_claim: Some(claim(&t.spec.source)),
        target_claim: Some(claim(&t.spec.target)),
        phase: s.phase.as_ref().map(variant),
        passes: s.pass,
        final_pass: s.final_pass,
        pass_wire_bytes: s.pass_wire_bytes.clone(),
        wire_bytes: s.wire_bytes,
        bytes: s.bytes_total,
        files: s.files_total,
        source_root_hash: s.source_root_hash.clone(),
        target_root_hash: s.target_root_hash.clone(),
        hashes_match,
        verification: verification.into(),
        completed_at: s.completed_at.as_ref().map(time),
    }
}

fn residency_evidence(
    status: &crate::api::SovereignWorkloadStatus,
    policy: Option<&ResidencyPolicy>,
) -> ResidencyEvidence {
    let r = status.residency.as_ref();
    ResidencyEvidence {
        verdict: r.map(|r| variant(&r.verdict)),
        location: r.and_then(|r| r.location.clone()),
        jurisdiction: r.and_then(|r| r.jurisdiction.clone()),
        policy: r.and_then(|r| r.policy.clone()),
        checked_at: r.and_then(|r| r.checked_at.as_ref()).map(time),
        findings: r.map(|r| r.findings.clone()).unwrap_or_default(),
        policy_rules: policy.map(|p| PolicyRules {
            name: p.name_any(),
            generation: p.metadata.generation,
            enforcement: variant(&p.spec.enforcement),
            allowed_locations: p.spec.allowed_locations.clone(),
            allowed_jurisdictions: p.spec.allowed_jurisdictions.clone(),
            allow_foreign_controlled_providers: p.spec.allow_foreign_controlled_providers,
            allowed_registries: p.spec.allowed_registries.clone(),
            require_privacy_impact_assessment: p.spec.require_privacy_impact_assessment,
        }),
    }
}

fn decommissioning_evidence(
    w: &SovereignWorkload,
    status: &crate::api::SovereignWorkloadStatus,
    source: &ClusterEvidence,
) -> DecommissioningEvidence {
    let cutover = w.spec.cutover.clone().unwrap_or_default();
    let retained_until = status.completed_at.as_ref().and_then(|done| {
        let retain = crate::api::duration::parse(&cutover.retain_source_for)?;
        let retain = jiff::SignedDuration::try_from(retain).ok()?;
        done.0.checked_add(retain).ok().map(timestamp)
    });
    let whose = match (&source.observed.jurisdiction, &source.declared.jurisdiction) {
        (Some(j), _) | (None, Some(j)) => format!(" ({}, jurisdiction {j})", source.cluster),
        _ => format!(" ({})", source.cluster),
    };
    let completed = status.phase == Some(Phase::Completed);
    let until = retained_until
        .clone()
        .unwrap_or_else(|| format!("{} after completion", cutover.retain_source_for));
    let statement = if !status.decommissioned.is_empty() {
        format!(
            "The source{whose} was decommissioned; the operator recorded {} line(s) of evidence of what it removed and what it kept.",
            status.decommissioned.len()
        )
    } else {
        match (w.spec.mode, completed) {
            (Mode::Plan, _) => {
                "Plan mode: nothing was moved and the source was not touched.".into()
            }
            (Mode::Copy, _) => format!(
                "Copy mode: the source{whose} is never touched; it still holds the workload and its data."
            ),
            (Mode::Move, false) => format!(
                "The migration is not completed: the source{whose} still holds the workload and its data."
            ),
            (Mode::Move, true) if cutover.decommission_source => format!(
                "The source{whose} is retained, scaled to zero, until {until}, then decommissioned by the operator; until then it still holds the workload's data."
            ),
            (Mode::Move, true) => format!(
                "The source{whose} is retained, scaled to zero, until at least {until}; decommissioning was not requested (cutover.decommissionSource is false), so the workload's data stays in the source until someone removes it."
            ),
        }
    };
    DecommissioningEvidence {
        requested: cutover.decommission_source,
        retain_source_for: cutover.retain_source_for,
        retained_until,
        statement,
        evidence: status.decommissioned.clone(),
    }
}

fn cost_evidence(
    w: &SovereignWorkload,
    status: &crate::api::SovereignWorkloadStatus,
) -> Option<CostEvidence> {
    let c = status.cost.as_ref()?;
    Some(CostEvidence {
        currency: c.currency.clone(),
        estimated: c.estimated.as_ref().map(|e| EstimatedCost {
            one_time: e.one_time,
            monthly_before: e.monthly_before,
            monthly_after: e.monthly_after,
        }),
        actual: c.actual.as_ref().map(|a| ActualCost {
            one_time: a.one_time,
            wire_bytes: a.wire_bytes,
            parallel_seconds: a.parallel_seconds,
        }),
        budget: w
            .spec
            .cost
            .as_ref()
            .and_then(|c| c.budget.as_ref())
            .map(|b| Budget {
                amount: b.amount,
                currency: b.currency.clone(),
            }),
        items: c
            .items
            .iter()
            .map(|i| CostLine {
                name: i.name.clone(),
                quantity: i.quantity,
                unit: i.unit.clone(),
                unit_price: i.unit_price,
                amount: i.amount,
                source: i.source.clone(),
            })
            .collect(),
    })
}

fn statement(
    attested: bool,
    workload: &WorkloadIdentity,
    migration: &MigrationEvidence,
    source: &ClusterEvidence,
    target: &ClusterEvidence,
    residency: &ResidencyEvidence,
    volumes: &[VolumeEvidence],
) -> String {
    let place = |c: &ClusterEvidence| {
        let p = if c.observed.location.is_some() || c.observed.jurisdiction.is_some() {
            &c.observed
        } else {
            &c.declared
        };
        format!(
            "{} ({}, location {}, jurisdiction {})",
            c.cluster,
            p.provider.as_deref().unwrap_or("provider unknown"),
            p.location.as_deref().unwrap_or("unknown"),
            p.jurisdiction.as_deref().unwrap_or("unknown")
        )
    };
    let id = format!("{}/{}", workload.namespace, workload.name);
    if attested {
        let verb = if migration.mode == "Copy" {
            "copied"
        } else {
            "moved"
        };
        format!(
            "{id} was {verb} from {} to {}; residency {} (location {}, jurisdiction {}); {} volume(s) verified by matching source and target root hashes.",
            place(source),
            place(target),
            residency.verdict.as_deref().unwrap_or("unknown"),
            residency.location.as_deref().unwrap_or("unknown"),
            residency.jurisdiction.as_deref().unwrap_or("unknown"),
            volumes.len()
        )
    } else if migration.phase.as_deref() != Some("Completed") {
        format!(
            "NOT COMPLETED — this is not an attestation of a finished move: {id} is in phase {} on its way from {} to {}.",
            migration.phase.as_deref().unwrap_or("(none recorded)"),
            place(source),
            place(target)
        )
    } else {
        format!(
            "PROBLEMS FOUND — {id} completed its move from {} to {}, but this report cannot attest it: see the problems below.",
            place(source),
            place(target)
        )
    }
}
