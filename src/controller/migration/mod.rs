//! The migration engine: what happens after the plan is approved. One reconcile takes one step and
//! writes what it learned; the next reconcile observes both clusters again and takes the next. The
//! state lives in the two clusters and the workload's status, so an operator killed at any instant
//! resumes where it was.
//!
//! Replicating (objects applied, workloads at zero; volumes pre-copied while the source serves) →
//! CuttingOver (record the source's replica counts, *then* quiesce it; final pass; start the target)
//! → Verifying (target healthy within `healthTimeout`, residency of what actually runs) → Completed
//! (source kept at zero for `retainSourceFor`, then decommissioned if asked). A target that does not
//! become healthy, a failed final pass, or `spec.cutover.rollback` → RollingBack → RolledBack: the
//! target scaled down, the source restored exactly as recorded. The source's data is never written.

pub mod decommission;
pub mod ledger;
pub mod residency;
pub mod volumes;
pub mod workloads;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, ResourceExt};

use crate::api::SovereignWorkload;
use crate::api::conditions::{DATA_SYNCED, Desired, READY, Status};
use crate::api::duration;
use crate::api::workload::{Mode, Phase, QuiescedObject, SovereignWorkloadStatus};

use super::workload::{Decision, kstatus};
use volumes::Rollup;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "cannot read or write {what} in namespace {namespace:?} of cluster {cluster:?}: {source}"
    )]
    Kube {
        what: &'static str,
        cluster: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

impl MigrationError {
    /// When the cluster refused the call (403): the cluster and the API server's own sentence,
    /// which names the identity, the verb, the resource and the namespace that were refused.
    pub fn forbidden(&self) -> Option<(&str, &str)> {
        match self {
            MigrationError::Kube {
                cluster,
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => Some((cluster.as_str(), s.message.as_str())),
            MigrationError::Kube { .. } => None,
        }
    }
}

/// Clients for both ends, and where the workload lives on each.
pub struct Sides {
    pub source: Client,
    pub target: Client,
    pub source_cluster: String,
    pub target_cluster: String,
    pub source_ns: String,
    pub target_ns: String,
    /// The label value that marks the target objects of this workload (`namespace.name`).
    pub label: String,
    /// What the target's SovereignCluster declares (residency rests on it when nothing shows).
    pub target_declared: Option<crate::api::SovereignClusterSpec>,
}

impl Sides {
    pub fn selector(&self) -> String {
        format!("{}={}", crate::api::workload::keys::WORKLOAD, self.label)
    }

    /// The scalable workloads this migration created in the target.
    pub async fn target_workloads(&self) -> Result<Vec<workloads::Workload>, MigrationError> {
        workloads::list(
            &self.target,
            &self.target_cluster,
            &self.target_ns,
            Some(&self.selector()),
        )
        .await
    }

    /// Every scalable workload of the source namespace (what a quiesce recorded is among them).
    pub async fn source_workloads(&self) -> Result<Vec<workloads::Workload>, MigrationError> {
        workloads::list(&self.source, &self.source_cluster, &self.source_ns, None).await
    }
}

/// What a step decided, and what it learned that the status must keep.
#[derive(Debug)]
pub struct Step {
    pub decision: Decision,
    pub edit: Edit,
    pub requeue: Duration,
}

#[derive(Debug, Default)]
pub struct Edit {
    pub quiesced: Option<Vec<QuiescedObject>>,
    pub cutover_at: Option<Time>,
    pub verifying_since: Option<Time>,
    pub completed_at: Option<Time>,
    pub rollup: Option<Rollup>,
    pub decommissioned: Option<Vec<String>>,
    pub residency: Option<crate::api::workload::ResidencyStatus>,
}

impl Edit {
    /// Lays what was learned onto the status.
    pub fn apply(self, s: &mut SovereignWorkloadStatus) {
        if let Some(q) = self.quiesced {
            s.quiesced = q;
        }
        if let Some(t) = self.cutover_at {
            s.cutover_at = Some(t);
        }
        if let Some(t) = self.verifying_since {
            s.verifying_since = Some(t);
        }
        if let Some(t) = self.completed_at {
            s.completed_at = Some(t);
        }
        if let Some(d) = self.decommissioned {
            s.decommissioned = d;
        }
        if let Some(r) = self.residency {
            s.residency = Some(r);
        }
        if let Some(r) = self.rollup {
            let mut p = s.progress.clone().unwrap_or_default();
            p.bytes_done = r.bytes_done;
            // Before the movers report, the plan's figure stands.
            if r.bytes_total > 0 {
                p.bytes_total = r.bytes_total;
            }
            p.bytes_per_second = r.bytes_per_second;
            p.eta = r.eta.clone();
            if r.predicted_downtime.is_some() {
                p.predicted_downtime = r.predicted_downtime.clone();
            }
            s.volumes = r.volumes;
            s.progress = Some(p);
        }
    }
}

/// The phases this engine drives (the planner handles those before).
pub fn in_flight(status: &SovereignWorkloadStatus, mode: Mode) -> bool {
    mode != Mode::Plan
        && matches!(
            status.phase,
            Some(
                Phase::CuttingOver
                    | Phase::Verifying
                    | Phase::Completed
                    | Phase::RollingBack
                    | Phase::RolledBack
            )
        )
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn since(t: &Time) -> Duration {
    let secs = Timestamp::now().as_second() - t.0.as_second();
    Duration::from_secs(secs.max(0) as u64)
}

fn step(phase: Phase, reason: &str, message: String, requeue: Duration) -> Step {
    let terminal_ok = phase == Phase::Completed;
    let stalled = phase == Phase::RolledBack;
    Step {
        decision: Decision {
            phase,
            conditions: kstatus(
                terminal_ok,
                reason,
                &message,
                !terminal_ok && !stalled,
                stalled,
            ),
            message,
            residency: None,
        },
        edit: Edit::default(),
        requeue,
    }
}

const SOON: Duration = Duration::from_secs(2);
const NOW: Duration = Duration::from_millis(200);

fn data_synced(r: &Rollup, planned: i64) -> Desired {
    if planned == 0 {
        return Desired::new(
            DATA_SYNCED,
            true,
            "NoVolumes",
            "the workload has no volumes",
        );
    }
    if r.completed {
        return Desired::new(
            DATA_SYNCED,
            true,
            "FinalPassVerified",
            format!("{planned} volume(s): final pass verified, root hashes match"),
        );
    }
    if r.precopied {
        return Desired::new(
            DATA_SYNCED,
            Status::False,
            "PreCopied",
            format!("{planned} volume(s) pre-copied; the final pass runs at cutover"),
        );
    }
    Desired::new(
        DATA_SYNCED,
        false,
        "Transferring",
        format!("{} of {} byte(s) copied", r.bytes_done, r.bytes_total),
    )
}

/// Replicating, once the objects are in the target: the volumes' transfers exist and have done
/// their pre-copy passes → CuttingOver. Called with the plan's volumes.
/// `existing` is what `volumes::observe` returned this reconcile (the caller keeps it for the
/// cost ledger, so the transfers are listed once).
pub async fn replicate_volumes(
    w: &SovereignWorkload,
    operator: &Client,
    planned: &[crate::migrate::PlannedVolume],
    existing: &[crate::api::VolumeTransfer],
) -> Result<Step, MigrationError> {
    let wanted = volumes::desired(w, planned);
    if volumes::ensure(operator, w, existing, &wanted).await? > 0 {
        let mut s = step(
            Phase::Replicating,
            "TransfersCreated",
            format!(
                "{} volume transfer(s) created; pre-copy starting",
                wanted.len()
            ),
            SOON,
        );
        s.decision
            .conditions
            .push(data_synced(&Rollup::default(), wanted.len() as i64));
        return Ok(s);
    }
    let passes = w.spec.data.as_ref().map(|d| d.pre_copy_passes).unwrap_or(1);
    let r = volumes::rollup(existing, wanted.len(), passes);
    let synced = data_synced(&r, wanted.len() as i64);
    let mut s = if let Some(f) = &r.failed {
        // Nothing was quiesced: the source serves on. The transfer retries by itself; a failure
        // here is one it gave up on.
        let mut s = step(
            Phase::Failed,
            "DataTransferFailed",
            format!("{f}; the source was not touched"),
            Duration::from_secs(60),
        );
        s.decision.conditions = kstatus(
            false,
            "DataTransferFailed",
            &s.decision.message.clone(),
            false,
            true,
        );
        s
    } else if r.precopied {
        let what = if w.spec.mode == Mode::Move {
            "cutting over: the source will be quiesced for the final pass"
        } else {
            "Copy mode: final pass with the source running, then the target starts"
        };
        step(
            Phase::CuttingOver,
            "PreCopyDone",
            format!("{} volume(s) pre-copied; {what}", wanted.len()),
            NOW,
        )
    } else {
        step(
            Phase::Replicating,
            "PreCopying",
            format!(
                "pre-copying {} volume(s) while the source serves: {} of {} byte(s)",
                wanted.len(),
                r.bytes_done,
                r.bytes_total
            ),
            SOON,
        )
    };
    s.decision.conditions.push(synced);
    s.edit.rollup = Some(r);
    Ok(s)
}

/// One step of the phases after replication.
pub async fn drive(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    operator: &Client,
    sides: &Sides,
    policy: Option<&crate::api::policy::ResidencyPolicySpec>,
    catalog: &crate::residency::Catalog,
    recheck: Duration,
) -> Result<Step, MigrationError> {
    let cutover = w.spec.cutover.clone().unwrap_or_default();
    let phase = old.phase.unwrap_or_default();
    let rollback_requested = cutover.rollback
        && matches!(
            phase,
            Phase::CuttingOver | Phase::Verifying | Phase::Completed
        )
        && old.decommissioned.is_empty();
    if rollback_requested {
        return Ok(step(
            Phase::RollingBack,
            "RollbackRequested",
            "spec.cutover.rollback is set: scaling the target down and restoring the source".into(),
            NOW,
        ));
    }
    match phase {
        Phase::CuttingOver => cut_over(w, old, operator, sides).await,
        Phase::Verifying => verify(w, old, sides, &cutover.health_timeout, policy, catalog).await,
        Phase::Completed => completed(w, old, sides, &cutover, policy, catalog, recheck).await,
        Phase::RollingBack => roll_back(w, old, sides).await,
        _ => {
            // RolledBack is terminal: the Ready condition keeps the reason it ended with.
            let reason = crate::api::conditions::find(&old.conditions, READY)
                .map(|c| c.reason.clone())
                .unwrap_or_else(|| "RolledBack".into());
            let message = old.message.clone().unwrap_or_default();
            Ok(step(
                Phase::RolledBack,
                &reason,
                message,
                Duration::from_secs(3600),
            ))
        }
    }
}

async fn cut_over(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    operator: &Client,
    sides: &Sides,
) -> Result<Step, MigrationError> {
    let moving = w.spec.mode == Mode::Move;
    let target = sides.target_workloads().await?;
    // 1. Record the source as it is, before touching it: a rollback restores exactly this, even
    //    after a restart. Nothing is scaled in the reconcile that records.
    if old.cutover_at.is_none() {
        let record = if moving {
            let source = sides.source_workloads().await?;
            workloads::record(&source, &target)
        } else {
            Vec::new()
        };
        let mut s = step(
            Phase::CuttingOver,
            "Quiescing",
            if moving {
                format!(
                    "recorded {} source workload(s); quiescing the source",
                    record.len()
                )
            } else {
                "Copy mode: the source keeps serving; final pass".into()
            },
            NOW,
        );
        s.edit.quiesced = Some(record);
        s.edit.cutover_at = Some(now());
        return Ok(s);
    }
    // 2. Quiesce the source and wait for its pods to stop writing.
    if moving {
        let source = sides.source_workloads().await?;
        let stopped = workloads::stopped(&old.quiesced);
        if workloads::converge(
            &sides.source,
            &sides.source_cluster,
            &sides.source_ns,
            &source,
            &stopped,
        )
        .await?
            > 0
        {
            return Ok(step(
                Phase::CuttingOver,
                "Quiescing",
                "scaling the source to zero and suspending its CronJobs".into(),
                SOON,
            ));
        }
        let busy = workloads::drained(&source, &old.quiesced);
        if !busy.is_empty() {
            return Ok(step(
                Phase::CuttingOver,
                "Quiescing",
                format!("waiting for the source's pods to stop: {}", busy.join(", ")),
                SOON,
            ));
        }
    }
    // 3. The final pass, now that nothing writes (Move) or after the pre-copies (Copy).
    let planned = old.plan.as_ref().map(|p| p.volumes).unwrap_or(0);
    let transfers = volumes::observe(operator, w).await?;
    volumes::request_final(operator, &transfers).await?;
    let r = volumes::rollup(&transfers, planned as usize, 0);
    let synced = data_synced(&r, planned);
    if let Some(f) = r.failed.clone() {
        let mut s = step(
            Phase::RollingBack,
            "FinalPassFailed",
            format!("{f}; restoring the source"),
            NOW,
        );
        s.decision.conditions.push(synced);
        s.edit.rollup = Some(r);
        return Ok(s);
    }
    if !r.completed && planned > 0 {
        let mut s = step(
            Phase::CuttingOver,
            "FinalPass",
            format!("final pass: {} of {} byte(s)", r.bytes_done, r.bytes_total),
            SOON,
        );
        s.decision.conditions.push(synced);
        s.edit.rollup = Some(r);
        return Ok(s);
    }
    // 4. Start the target with the source's replica counts.
    let started = workloads::started(&target);
    workloads::converge(
        &sides.target,
        &sides.target_cluster,
        &sides.target_ns,
        &target,
        &started,
    )
    .await?;
    let mut s = step(
        Phase::Verifying,
        "TargetStarting",
        format!(
            "data verified; {} target workload(s) started; waiting for them to become ready",
            started.len()
        ),
        SOON,
    );
    s.decision.conditions.push(synced);
    s.edit.rollup = Some(r);
    s.edit.verifying_since = Some(now());
    Ok(s)
}

async fn verify(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    sides: &Sides,
    timeout: &str,
    policy: Option<&crate::api::policy::ResidencyPolicySpec>,
    catalog: &crate::residency::Catalog,
) -> Result<Step, MigrationError> {
    let target = sides.target_workloads().await?;
    // The start is re-applied: a restart between recording Verifying and scaling loses nothing.
    let started = workloads::started(&target);
    if workloads::converge(
        &sides.target,
        &sides.target_cluster,
        &sides.target_ns,
        &target,
        &started,
    )
    .await?
        > 0
    {
        return Ok(step(
            Phase::Verifying,
            "TargetStarting",
            "starting the target workloads".into(),
            SOON,
        ));
    }
    let unhealthy = workloads::unhealthy(&target);
    let limit = duration::parse(timeout).unwrap_or(Duration::from_secs(600));
    let waited = old.verifying_since.as_ref().map(since).unwrap_or_default();
    if let Some(first) = unhealthy.first() {
        let why = workloads::diagnose(&sides.target, &sides.target_ns, first).await;
        if waited >= limit {
            return Ok(step(
                Phase::RollingBack,
                "TargetUnhealthy",
                format!(
                    "the target did not become healthy within healthTimeout {timeout}: {why}; rolling back"
                ),
                NOW,
            ));
        }
        return Ok(step(
            Phase::Verifying,
            "WaitingForTarget",
            format!(
                "{} target workload(s) not ready yet (rolling back if still so {timeout} after the start): {why}",
                unhealthy.len(),
            ),
            SOON,
        ));
    }
    // Healthy: check where it actually runs before calling it done.
    let (verdict, residency) = residency::check(
        &sides.target,
        &sides.target_ns,
        w,
        sides.target_declared.as_ref(),
        policy,
        catalog,
    )
    .await;
    let mut s = step(
        Phase::Completed,
        "Completed",
        completed_message(w, old, &verdict),
        Duration::from_secs(60),
    );
    s.decision
        .conditions
        .extend(residency::condition(&residency));
    s.edit.residency = Some(residency);
    s.edit.completed_at = Some(now());
    Ok(s)
}

fn completed_message(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    verdict: &str,
) -> String {
    let volumes = old.volumes.len();
    match w.spec.mode {
        Mode::Move => format!(
            "moved: the target serves with {volumes} verified volume(s); residency {verdict}; the source is kept at zero replicas for {}",
            w.spec.cutover.clone().unwrap_or_default().retain_source_for
        ),
        _ => format!(
            "copied: the target serves with {volumes} verified volume(s); residency {verdict}; the source was not touched"
        ),
    }
}

async fn completed(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    sides: &Sides,
    cutover: &crate::api::workload::CutoverSpec,
    policy: Option<&crate::api::policy::ResidencyPolicySpec>,
    catalog: &crate::residency::Catalog,
    recheck: Duration,
) -> Result<Step, MigrationError> {
    // Drift: the same check on what runs now (a pod rescheduled to a foreign node pool).
    let (verdict, residency) = residency::check(
        &sides.target,
        &sides.target_ns,
        w,
        sides.target_declared.as_ref(),
        policy,
        catalog,
    )
    .await;
    let retain =
        duration::parse(&cutover.retain_source_for).unwrap_or(Duration::from_secs(168 * 3600));
    let done_for = old.completed_at.as_ref().map(since).unwrap_or_default();
    let mut message = completed_message(w, old, &verdict);
    let mut decommissioned = None;
    if w.spec.mode == Mode::Move && cutover.decommission_source && done_for >= retain {
        if old.decommissioned.is_empty() {
            let removed = decommission::run(sides).await?;
            message = format!(
                "{message}; the source was decommissioned ({} object(s) removed)",
                removed.len()
            );
            decommissioned = Some(removed);
        } else {
            message = format!("{message}; the source was decommissioned");
        }
    }
    // Wake at the end of the retention, and often enough to catch drift.
    let next = if w.spec.mode == Mode::Move && cutover.decommission_source && done_for < retain {
        (retain - done_for).min(recheck)
    } else {
        recheck
    };
    let mut s = step(Phase::Completed, "Completed", message, next);
    s.decision
        .conditions
        .extend(residency::condition(&residency));
    s.edit.residency = Some(residency);
    s.edit.decommissioned = decommissioned;
    Ok(s)
}

async fn roll_back(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    sides: &Sides,
) -> Result<Step, MigrationError> {
    let cause = crate::api::conditions::find(&old.conditions, READY)
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| ("RolledBack".into(), String::new()));
    let target = sides.target_workloads().await?;
    let stop_target = workloads::stopped(&workloads::started(&target));
    let mut writes = workloads::converge(
        &sides.target,
        &sides.target_cluster,
        &sides.target_ns,
        &target,
        &stop_target,
    )
    .await?;
    if w.spec.mode == Mode::Move {
        let source = sides.source_workloads().await?;
        writes += workloads::converge(
            &sides.source,
            &sides.source_cluster,
            &sides.source_ns,
            &source,
            &old.quiesced,
        )
        .await?;
    }
    if writes > 0 {
        return Ok(step(Phase::RollingBack, &cause.0, cause.1, SOON));
    }
    let message = if cause.1.starts_with("rolled back:") {
        cause.1.clone()
    } else {
        format!(
            "rolled back: {}; the source serves again with its original replica counts ({} object(s) restored)",
            cause.1,
            old.quiesced.len()
        )
    };
    Ok(step(
        Phase::RolledBack,
        &cause.0,
        message,
        Duration::from_secs(3600),
    ))
}

/// The name used in Events and messages.
pub fn key(w: &SovereignWorkload) -> String {
    format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any())
}
