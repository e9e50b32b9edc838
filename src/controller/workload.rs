//! The `SovereignWorkload` controller: the migration's phase machine.
//!
//! observe (the referenced clusters and policy) → plan (pure: references → phase, conditions) → act
//! (status, Events) → report (metrics). This build validates references and governance; planning,
//! replication, cutover and verification are filled in by the migration engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use super::context::{Context, FINALIZER};
use super::error::{Error, Result};
use super::migration;
use super::status;
use crate::api::conditions::{
    self, APPROVED, DATA_SYNCED, Desired, READY, RECONCILING, RESIDENCY_COMPLIANT, STALLED,
    WITHIN_BUDGET,
};
use crate::api::policy::Enforcement;
use crate::api::workload::ResidencyStatus;
use crate::api::workload::{Consistency, Mode, ObjectOutcome, ObjectResult, PlanStatus};
use crate::api::workload::{Phase, SovereignWorkloadStatus};
use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload};
use crate::api::{Severity, Verdict};
use crate::cost;
use crate::migrate::approval::{self, Approval};
use crate::migrate::{self, Plan as MigrationPlan, PlanInput, discover};
use crate::remote;
use crate::residency::preflight;
use crate::telemetry::metrics::ControllerName;

/// The objects a workload refers to, as the caches hold them.
#[derive(Default)]
pub struct Refs {
    pub source: Option<Arc<SovereignCluster>>,
    pub target: Option<Arc<SovereignCluster>>,
    pub policy: Option<Arc<ResidencyPolicy>>,
}

/// What the workload's status should say.
#[derive(Debug, PartialEq)]
pub struct Decision {
    pub phase: Phase,
    pub message: String,
    pub conditions: Vec<Desired>,
    /// The residency pre-flight, once the target and the policy are known.
    pub residency: Option<ResidencyStatus>,
}

pub async fn reconcile(obj: Arc<SovereignWorkload>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span = info_span!("reconcile", controller = "sovereignworkload", namespace = %ns, workload = %name);
    async move {
        let _timer = ctx
            .metrics
            .reconcile_started(ControllerName::SovereignWorkload);
        let api: Api<SovereignWorkload> = Api::namespaced(ctx.client.clone(), &ns);
        let result = finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                finalizer::Event::Apply(w) => apply(w, &ctx).await,
                finalizer::Event::Cleanup(w) => cleanup(w, &ctx).await,
            }
        })
        .await;
        report_phases(&ctx);
        let key = format!("{ns}/{name}");
        super::finalize::outcome(&ctx, "SovereignWorkload", key, result)
    }
    .instrument(span)
    .await
}

pub fn error_policy(obj: Arc<SovereignWorkload>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    warn!(workload = %key, error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(ControllerName::SovereignWorkload, error.reason());
    Action::requeue(ctx.next_retry(&key))
}

/// The workloads that refer to a cluster, so that a change of the cluster wakes them.
pub fn workloads_using_cluster(
    ctx_workloads: &kube::runtime::reflector::Store<SovereignWorkload>,
    cluster: &str,
) -> Vec<ObjectRef<SovereignWorkload>> {
    ctx_workloads
        .state()
        .iter()
        .filter(|w| w.spec.source.cluster == cluster || w.spec.target.cluster == cluster)
        .map(|w| ObjectRef::from_obj(w.as_ref()))
        .collect()
}

/// The workloads governed by a policy.
pub fn workloads_using_policy(
    ctx_workloads: &kube::runtime::reflector::Store<SovereignWorkload>,
    policy: &str,
) -> Vec<ObjectRef<SovereignWorkload>> {
    ctx_workloads
        .state()
        .iter()
        .filter(|w| w.spec.residency_policy == policy)
        .map(|w| ObjectRef::from_obj(w.as_ref()))
        .collect()
}

/// The workload's SovereignClusters (and its ResidencyPolicy when `with_policy`), read from the API.
async fn read_refs(w: &SovereignWorkload, ctx: &Context, with_policy: bool) -> Result<Refs> {
    let key = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
    let clusters: Api<SovereignCluster> = Api::all(ctx.client.clone());
    let read = |what: &'static str| {
        let key = key.clone();
        move |source| Error::Read {
            what,
            kind: "SovereignWorkload",
            name: key,
            source,
        }
    };
    let policy = if with_policy {
        Api::<ResidencyPolicy>::all(ctx.client.clone())
            .get_opt(&w.spec.residency_policy)
            .await
            .map_err(read("the ResidencyPolicy"))?
            .map(Arc::new)
    } else {
        None
    };
    Ok(Refs {
        source: clusters
            .get_opt(&w.spec.source.cluster)
            .await
            .map_err(read("the source SovereignCluster"))?
            .map(Arc::new),
        target: clusters
            .get_opt(&w.spec.target.cluster)
            .await
            .map_err(read("the target SovereignCluster"))?
            .map(Arc::new),
        policy,
    })
}

async fn apply(w: Arc<SovereignWorkload>, ctx: &Context) -> Result<Action> {
    // observe: read the references from the API, not from the caches. A change of a cluster wakes
    // this controller through its own watch, which can be ahead of the cluster controller's cache.
    let refs = read_refs(&w, ctx, true).await?;
    let key = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
    let old = w.status.clone().unwrap_or_default();
    if migration::in_flight(&old, w.spec.mode) {
        // Past replication the plan is frozen: the source is being (or was) quiesced, and re-planning
        // from it would describe a stopped workload. Both clusters and the status say where we are.
        return drive(w, &refs, ctx, old).await;
    }
    // plan: references and residency first, then the migration plan from the source's objects
    let mut decision = plan(&w, &refs);
    let mut planned = None;
    let mut applied: Option<Vec<ObjectResult>> = None;
    let mut edit = migration::Edit::default();
    let mut requeue = None;
    let mut applied_hash = None;
    // The VolumeTransfers as listed while replicating, reused by the cost ledger below.
    let mut transfers: Option<Vec<crate::api::VolumeTransfer>> = None;
    if decision.phase == Phase::Planning {
        match plan_source(&w, &refs, ctx).await {
            Ok(p) => {
                let fx = ctx.fx().await;
                let (estimate, budget) = price(&w, &refs, &p, &fx);
                decision = after_plan(&w, decision, &p, budget.as_ref());
                if decision.phase == Phase::Replicating && old.phase != Some(Phase::Replicating) {
                    // The decision (and the approval it rests on) is recorded before it is acted
                    // on: a reconcile cut short while applying then leaves a status that says
                    // what is under way, not the phase before it.
                    let message = format!(
                        "replication starting: {} object(s) and {} volume(s) to copy",
                        p.objects.len(),
                        p.volumes.len()
                    );
                    decision
                        .conditions
                        .retain(|c| ![READY, RECONCILING, STALLED].contains(&c.type_));
                    decision.conditions.extend(kstatus(
                        false,
                        "ReplicationStarting",
                        &message,
                        true,
                        false,
                    ));
                    decision.message = message;
                    requeue = Some(Duration::from_millis(100));
                } else if decision.phase == Phase::Replicating {
                    let already = old.plan.as_ref().and_then(|o| o.applied_hash.as_deref())
                        == Some(p.hash.as_str());
                    let (d, results) = replicate(&w, &refs, ctx, decision, &p, already).await;
                    decision = d;
                    if results
                        .as_ref()
                        .is_some_and(|r| r.iter().all(|o| o.result != ObjectOutcome::Failed))
                    {
                        applied_hash = Some(p.hash.clone());
                    }
                    applied = results;
                    if decision.phase == Phase::Replicating
                        && decision
                            .conditions
                            .iter()
                            .any(|c| c.type_ == READY && c.reason == "ObjectsApplied")
                    {
                        // Objects are in the target: the volumes come next.
                        let keep: Vec<Desired> = decision.conditions.clone();
                        let step = match migration::volumes::observe(&ctx.client, &w).await {
                            Ok(existing) => {
                                let step = migration::replicate_volumes(
                                    &w,
                                    &ctx.client,
                                    &p.volumes,
                                    &existing,
                                )
                                .await;
                                transfers = Some(existing);
                                step
                            }
                            Err(e) => Err(e),
                        };
                        match step {
                            Ok(step) => {
                                decision = step.decision;
                                decision.conditions.extend(keep.into_iter().filter(|c| {
                                    ![READY, RECONCILING, STALLED, DATA_SYNCED].contains(&c.type_)
                                }));
                                edit = step.edit;
                                requeue = Some(step.requeue);
                            }
                            Err(e) => {
                                let message = e.to_string();
                                decision.message = message.clone();
                                decision
                                    .conditions
                                    .retain(|c| ![READY, RECONCILING, STALLED].contains(&c.type_));
                                decision.conditions.extend(kstatus(
                                    false,
                                    "TransfersUnavailable",
                                    &message,
                                    true,
                                    false,
                                ));
                            }
                        }
                    }
                }
                planned = Some((p, estimate, budget));
            }
            Err(message) => {
                decision = Decision {
                    phase: Phase::Planning,
                    message: message.clone(),
                    conditions: vec![
                        Desired::new(READY, false, "SourceUnreadable", message.clone()),
                        Desired::new(RECONCILING, true, "SourceUnreadable", message),
                        Desired::new(STALLED, false, "SourceUnreadable", ""),
                    ],
                    residency: decision.residency,
                }
            }
        }
    }
    let now = Time(Timestamp::now());
    let plan = decision;
    let mut status = render_status(&w, &old, &plan, &now);
    if let Some(results) = applied {
        let done = results
            .iter()
            .filter(|r| r.result != ObjectOutcome::Failed)
            .count() as i64;
        let total = results.len() as i64;
        let mut progress = status.progress.clone().unwrap_or_default();
        progress.objects_done = done;
        progress.objects_total = total;
        progress.bytes_total = planned
            .as_ref()
            .map(|(p, ..)| i64::try_from(p.bytes()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        status.progress = Some(progress);
        let mut results = results;
        // Failures first, bounded: the status stays small whatever the namespace holds.
        results.sort_by_key(|r| r.result != ObjectOutcome::Failed);
        results.truncate(MAX_OBJECT_RESULTS);
        status.objects = results;
        if status.started_at.is_none() {
            status.started_at = Some(now.clone());
        }
    }
    if let Some((p, estimate, _)) = &planned {
        let mut ps = plan_status(&w, old.plan.as_ref(), p, &now);
        if applied_hash.is_some() {
            ps.applied_hash = applied_hash.clone();
        }
        status.plan = Some(ps);
        if let Some(e) = estimate {
            let mut c = cost::cost_status(&e.currency, Some(e), None);
            // An actual cost already recorded stays until it is recomputed below.
            if let Some(a) = old.cost.as_ref().and_then(|c| c.actual.clone()) {
                c.actual = Some(a);
                c.display = old.cost.as_ref().and_then(|c| c.display.clone());
            }
            status.cost = Some(c);
            ctx.metrics
                .set_migration_cost(&key, "estimated", e.one_time.total);
        }
    }
    edit.apply(&mut status);
    // Once data may have moved (objects applied, transfers created), the actual cost is kept up
    // to date whatever the phase this reconcile ends in.
    if status.started_at.is_some()
        && w.spec.mode != Mode::Plan
        && let (Some((p, estimate, _)), Some(src), Some(dst)) =
            (&planned, refs.source.as_ref(), refs.target.as_ref())
    {
        let transfers = match transfers {
            Some(t) => t,
            None => migration::volumes::observe(&ctx.client, &w)
                .await
                .unwrap_or_default(),
        };
        let fx = ctx.fx().await;
        let objects: Vec<serde_json::Value> = p.objects.iter().map(|o| o.object.clone()).collect();
        if let Some(a) = migration::ledger::actual(&w, &status, &objects, &transfers, src, dst, &fx)
        {
            ctx.metrics
                .set_migration_cost(&key, "actual", a.one_time.total);
            let currency = a.currency.clone();
            status.cost = Some(cost::cost_status(&currency, estimate.as_ref(), Some(&a)));
            over_budget_pause(&w, &mut status, &a, &now, &fx);
        }
    }
    set_percent(&mut status);
    // act
    let api: Api<SovereignWorkload> =
        Api::namespaced(ctx.client.clone(), &w.namespace().unwrap_or_default());
    status::write(&api, &w.name_any(), &old, &status).await?;
    if let Some(ev) = transition_event(&old, &status) {
        publish(ctx, &w, ev).await;
    }
    // The watches on clusters, policies and transfers wake the workload when something changes; the
    // requeue is a safety net, sooner while waiting on something that fixes itself.
    let waiting = conditions::is_true(&status.conditions, RECONCILING);
    Ok(Action::requeue(requeue.unwrap_or(Duration::from_secs(
        if waiting { 30 } else { 300 },
    ))))
}

/// An actual cost past the budget pauses the migration at this safe point (before the cutover;
/// a cutover under way is never interrupted): the transfers finish their pass and start no other.
fn over_budget_pause(
    w: &SovereignWorkload,
    status: &mut SovereignWorkloadStatus,
    actual: &cost::Actual,
    now: &Time,
    fx: &cost::FxTable,
) {
    let Some(budget) = w.spec.cost.as_ref().and_then(|c| c.budget.as_ref()) else {
        return;
    };
    let Ok(check) = cost::check_actual(actual, budget, fx) else {
        return;
    };
    let mut desired = vec![Desired::new(
        WITHIN_BUDGET,
        check.within,
        if check.within {
            "WithinBudget"
        } else {
            "OverBudget"
        },
        check.message.clone(),
    )];
    if !check.within {
        let message = format!(
            "{}; paused before the cutover: raise spec.cost.budget to go on",
            check.message
        );
        desired.extend(kstatus(false, "OverBudget", &message, false, true));
        status.phase = Some(Phase::Paused);
        status.message = Some(message);
    }
    status.conditions = conditions::merge(&status.conditions, &desired, w.metadata.generation, now);
}

/// Objects are the first half of the work, the volumes' bytes the second; a finished migration is
/// at 100%.
fn set_percent(status: &mut SovereignWorkloadStatus) {
    let Some(progress) = status.progress.as_mut() else {
        return;
    };
    let bytes_part = if progress.bytes_total > 0 {
        (progress.bytes_done as f64 / progress.bytes_total as f64).min(1.0)
    } else {
        1.0
    };
    let objects_part = if progress.objects_total > 0 {
        progress.objects_done as f64 / progress.objects_total as f64
    } else {
        1.0
    };
    let mut percent = ((objects_part * 0.5 + bytes_part * 0.5) * 100.0)
        .floor()
        .clamp(0.0, 100.0) as i32;
    match status.phase {
        Some(Phase::Completed) => percent = 100,
        // Not done until verified.
        _ => percent = percent.min(99),
    }
    progress.percent = percent;
    progress.display = Some(format!("{percent}%"));
}

/// One step of the phases after replication (see `migration`), and its status.
async fn drive(
    w: Arc<SovereignWorkload>,
    refs: &Refs,
    ctx: &Context,
    old: SovereignWorkloadStatus,
) -> Result<Action> {
    let now = Time(Timestamp::now());
    let phase = old.phase.unwrap_or_default();
    let hold = |reason: &str, message: String| migration::Step {
        decision: Decision {
            phase,
            message: message.clone(),
            conditions: kstatus(false, reason, &message, true, false),
            residency: None,
        },
        edit: migration::Edit::default(),
        requeue: Duration::from_secs(10),
    };
    let sides = sides(&w, refs, ctx).await;
    let step = match &sides {
        Ok(sides) => {
            let catalog = ctx.catalog().await;
            let policy = refs.policy.as_ref().map(|p| &p.spec);
            match migration::drive(
                &w,
                &old,
                &ctx.client,
                sides,
                policy,
                &catalog,
                ctx.residency_recheck,
            )
            .await
            {
                Ok(step) => step,
                Err(e) => match e.forbidden() {
                    // A permission the operator's identity lacks: the step waits for it to be
                    // granted (nothing done is undone; the step is repeated from what is observed).
                    Some((cluster, refused)) => hold(
                        "Forbidden",
                        format!(
                            "{}: the cluster {cluster:?} refused a call: {refused}; grant that permission (see the chart README), the step is retried",
                            phase.as_str()
                        ),
                    ),
                    // A failed read or write mid-step: the step is repeated from what is observed.
                    None => hold("StepRetrying", format!("{}: {e}; retrying", phase.as_str())),
                },
            }
        }
        Err(message) => hold("ClusterUnreachable", message.clone()),
    };
    let mut status = render_status(&w, &old, &step.decision, &now);
    step.edit.apply(&mut status);
    if let (Ok(sides), Some(src), Some(dst)) = (&sides, refs.source.as_ref(), refs.target.as_ref())
    {
        let transfers = migration::volumes::observe(&ctx.client, &w)
            .await
            .unwrap_or_default();
        let objects = migration::ledger::target_objects(sides).await;
        let fx = ctx.fx().await;
        if let Some(a) = migration::ledger::actual(&w, &status, &objects, &transfers, src, dst, &fx)
        {
            let key = format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any());
            ctx.metrics
                .set_migration_cost(&key, "actual", a.one_time.total);
            let mut c = status.cost.clone().unwrap_or_default();
            c.currency = a.currency.clone();
            c.actual = Some(a.to_cost_actual());
            c.display = Some(a.display());
            status.cost = Some(c);
        }
    }
    if let Some(r) = status.residency.as_mut()
        && r.checked_at.is_none()
    {
        r.checked_at = Some(now.clone());
    }
    set_percent(&mut status);
    let api: Api<SovereignWorkload> =
        Api::namespaced(ctx.client.clone(), &w.namespace().unwrap_or_default());
    status::write(&api, &w.name_any(), &old, &status).await?;
    if let Some(ev) = transition_event(&old, &status) {
        publish(ctx, &w, ev).await;
    }
    // What runs is judged again at every step after cutover: a changed verdict is news.
    if let Some(r) = &status.residency {
        ctx.metrics.set_residency(
            &format!(
                "SovereignWorkload/{}/{}",
                w.namespace().unwrap_or_default(),
                w.name_any()
            ),
            r.verdict,
        );
        let before = old.residency.as_ref().map(|o| o.verdict);
        if before.is_some() && before != Some(r.verdict) && phase == Phase::Completed {
            let head = r
                .findings
                .iter()
                .find(|f| f.severity != Severity::Info)
                .map(|f| format!(": {} ({}: {})", f.rule, f.object, f.evidence))
                .unwrap_or_default();
            publish(
                ctx,
                &w,
                Event {
                    type_: if r.verdict == Verdict::Compliant {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    },
                    reason: if r.verdict == Verdict::Compliant {
                        "ResidencyRestored".into()
                    } else {
                        "ResidencyDrifted".into()
                    },
                    note: Some(format!(
                        "residency of what runs in the target changed from {:?} to {:?}{head}",
                        before.unwrap_or_default(),
                        r.verdict
                    )),
                    action: "CheckResidency".into(),
                    secondary: None,
                },
            )
            .await;
        }
    }
    Ok(Action::requeue(step.requeue))
}

/// Clients for both clusters and the namespaces, or a sentence saying which cannot be reached.
async fn sides(
    w: &SovereignWorkload,
    refs: &Refs,
    ctx: &Context,
) -> Result<migration::Sides, String> {
    let (Some(source), Some(target)) = (refs.source.as_ref(), refs.target.as_ref()) else {
        return Err(format!(
            "SovereignCluster {:?} or {:?} is gone; the migration waits for it",
            w.spec.source.cluster, w.spec.target.cluster
        ));
    };
    let src = remote::client_for(source, &ctx.client, &ctx.secret_namespaces)
        .await
        .map_err(|e| {
            format!(
                "cannot reach the source cluster {:?}: {e}",
                w.spec.source.cluster
            )
        })?;
    let dst = remote::client_for(target, &ctx.client, &ctx.secret_namespaces)
        .await
        .map_err(|e| {
            format!(
                "cannot reach the target cluster {:?}: {e}",
                w.spec.target.cluster
            )
        })?;
    Ok(migration::Sides {
        source: src.client,
        target: dst.client,
        source_cluster: w.spec.source.cluster.clone(),
        target_cluster: w.spec.target.cluster.clone(),
        source_ns: w.spec.source.namespace.clone(),
        target_ns: w
            .spec
            .target
            .namespace
            .clone()
            .unwrap_or_else(|| w.spec.source.namespace.clone()),
        label: format!("{}.{}", w.namespace().unwrap_or_default(), w.name_any()),
        target_declared: Some(target.spec.clone()),
    })
}

async fn cleanup(w: Arc<SovereignWorkload>, ctx: &Context) -> Result<Action> {
    // A completed migration's target is the workload: it stays, and so does the retained source.
    // Deleting a migration that has not completed aborts it: the source gets back the replica
    // counts recorded before quiescing, and the half-built target is removed. The source's objects
    // and data are never deleted by a cleanup.
    let status = w.status.clone().unwrap_or_default();
    let completed = matches!(status.phase, Some(Phase::Completed)) && w.spec.mode != Mode::Plan;
    let mut note =
        "nothing the operator created is left behind; the source was not touched".to_string();
    let touched = !status.objects.is_empty() || status.cutover_at.is_some();
    if !completed && touched {
        cleanup_abort(&w, ctx, &status, &mut note).await?;
    }
    publish(
        ctx,
        &w,
        Event {
            type_: EventType::Normal,
            reason: "CleanedUp".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        },
    )
    .await;
    info!("SovereignWorkload cleaned up");
    Ok(Action::await_change())
}

/// Aborts a migration that has not completed: restores the source, removes the half-built target.
async fn cleanup_abort(
    w: &SovereignWorkload,
    ctx: &Context,
    status: &SovereignWorkloadStatus,
    note: &mut String,
) -> Result<()> {
    let finalizer_error = |message: String| Error::Finalizer {
        kind: "SovereignWorkload",
        name: w.name_any(),
        message,
    };
    {
        let refs = read_refs(w, ctx, false).await?;
        if refs.source.is_none() || refs.target.is_none() {
            *note = "a SovereignCluster of this migration is gone: nothing could be restored or removed".into();
            return Ok(());
        }
        let sides = sides(w, &refs, ctx)
            .await
            .map_err(|m| finalizer_error(format!("cannot abort the migration cleanly: {m}")))?;
        let mut restored = 0;
        if w.spec.mode == Mode::Move && !status.quiesced.is_empty() {
            let source = sides
                .source_workloads()
                .await
                .map_err(|e| finalizer_error(format!("cannot restore the source: {e}")))?;
            restored = migration::workloads::converge(
                &sides.source,
                &sides.source_cluster,
                &sides.source_ns,
                &source,
                &status.quiesced,
            )
            .await
            .map_err(|e| finalizer_error(format!("cannot restore the source: {e}")))?;
        }
        let removed =
            migrate::apply::remove_half_built(&sides.target, &sides.target_ns, &sides.label)
                .await
                .map_err(|e| {
                    finalizer_error(format!("cannot remove the half-built target: {e}"))
                })?;
        *note = format!(
            "aborted before completion: removed {removed} half-built object(s) from the target namespace {:?}; {}",
            sides.target_ns,
            if restored > 0 || !status.quiesced.is_empty() {
                format!(
                    "the source's {} workload(s) restored to their recorded replicas",
                    status.quiesced.len()
                )
            } else {
                "the source was not touched".to_string()
            }
        );
    }
    Ok(())
}

/// The three kstatus conditions of a state: Ready, and Reconciling and Stalled, which carry the
/// message only while they are true.
pub(super) fn kstatus(
    ready: bool,
    reason: &str,
    message: &str,
    reconciling: bool,
    stalled: bool,
) -> Vec<Desired> {
    let when = |on: bool| {
        if on {
            message.to_string()
        } else {
            String::new()
        }
    };
    vec![
        Desired::new(READY, ready, reason, message),
        Desired::new(RECONCILING, reconciling, reason, when(reconciling)),
        Desired::new(STALLED, stalled, reason, when(stalled)),
    ]
}

/// Per-object results kept in status.
const MAX_OBJECT_RESULTS: usize = 50;

/// Replicates the plan's objects into the target (workloads at zero replicas). Refuses when the
/// source and the target are the same namespace of the same cluster: applying would overwrite the
/// source.
async fn replicate(
    w: &SovereignWorkload,
    refs: &Refs,
    ctx: &Context,
    before: Decision,
    p: &MigrationPlan,
    already_applied: bool,
) -> (Decision, Option<Vec<ObjectResult>>) {
    let keep: Vec<Desired> = before
        .conditions
        .iter()
        .filter(|c| c.type_ != READY && c.type_ != RECONCILING && c.type_ != STALLED)
        .cloned()
        .collect();
    let decide = |phase, reason: &str, message: String, reconciling: bool, stalled: bool| {
        let mut conditions = kstatus(false, reason, &message, reconciling, stalled);
        conditions.extend(keep.iter().cloned());
        Decision {
            phase,
            message,
            conditions,
            residency: before.residency.clone(),
        }
    };
    let (Some(source), Some(target)) = (refs.source.as_ref(), refs.target.as_ref()) else {
        return (
            decide(
                Phase::Replicating,
                "ClusterGone",
                "a SovereignCluster disappeared".into(),
                true,
                false,
            ),
            None,
        );
    };
    let target_namespace = w
        .spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| w.spec.source.namespace.clone());
    let (src, dst) = match (
        remote::client_for(source, &ctx.client, &ctx.secret_namespaces).await,
        remote::client_for(target, &ctx.client, &ctx.secret_namespaces).await,
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => {
            return (
                decide(
                    Phase::Replicating,
                    "ClusterUnreachable",
                    format!("cannot reach a cluster: {e}"),
                    true,
                    false,
                ),
                None,
            );
        }
    };
    if src.server == dst.server && w.spec.source.namespace == target_namespace {
        let message = format!(
            "SovereignClusters {:?} and {:?} are the same cluster and the target namespace is the source namespace: replicating would overwrite the source; set spec.target.namespace",
            w.spec.source.cluster, w.spec.target.cluster
        );
        return (
            decide(Phase::Replicating, "SourceIsTarget", message, false, true),
            None,
        );
    }
    if already_applied {
        // The plan did not change since its objects were applied: nothing to write again.
        let message = format!("{} object(s) in the target", p.objects.len());
        return (
            decide(Phase::Replicating, "ObjectsApplied", message, true, false),
            None,
        );
    }
    match migrate::apply::apply(&dst.client, p, &target_namespace).await {
        Ok(results) => {
            let failed: Vec<&ObjectResult> = results
                .iter()
                .filter(|r| r.result == ObjectOutcome::Failed)
                .collect();
            if let Some(f) = failed.first() {
                let message = format!(
                    "{} of {} object(s) could not be applied in the target; first: {}/{}: {}",
                    failed.len(),
                    results.len(),
                    f.kind,
                    f.name,
                    f.message
                );
                return (
                    decide(Phase::Replicating, "ObjectsFailed", message, true, false),
                    Some(results),
                );
            }
            let message = format!(
                "{} object(s) applied in the target namespace {target_namespace:?}, workloads at zero replicas",
                results.len(),
            );
            (
                decide(Phase::Replicating, "ObjectsApplied", message, true, false),
                Some(results),
            )
        }
        Err(e) => (
            decide(
                Phase::Replicating,
                "TargetUnreadable",
                e.to_string(),
                true,
                false,
            ),
            None,
        ),
    }
}

/// Lists the source namespace and plans the move. The error is a sentence for the condition.
async fn plan_source(
    w: &SovereignWorkload,
    refs: &Refs,
    ctx: &Context,
) -> Result<MigrationPlan, String> {
    let source = refs
        .source
        .as_ref()
        .ok_or("the source SovereignCluster is gone")?;
    let access = remote::client_for(source, &ctx.client, &ctx.secret_namespaces)
        .await
        .map_err(|e| {
            format!(
                "cannot reach the source cluster {:?}: {e}",
                w.spec.source.cluster
            )
        })?;
    let discovered = discover::namespace_objects(&access.client, &w.spec.source.namespace)
        .await
        .map_err(|e| {
            format!(
                "cannot read the source namespace {:?}: {e}",
                w.spec.source.namespace
            )
        })?;
    let target = refs
        .target
        .as_ref()
        .and_then(|t| t.status.clone())
        .unwrap_or_default();
    // Only a region the target's nodes carry as a label can pin a pod there; a declared region
    // no node shows would leave every pod Pending.
    let target_region = target
        .nodes
        .as_ref()
        .filter(|n| n.regions.len() == 1)
        .and_then(|n| n.regions.first())
        .map(String::as_str);
    let target_namespace = w
        .spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| w.spec.source.namespace.clone());
    let catalog = ctx.catalog().await;
    let mut plan = migrate::build(&PlanInput {
        objects: &discovered.objects,
        source_namespace: &w.spec.source.namespace,
        target_namespace: &target_namespace,
        target_cluster: &w.spec.target.cluster,
        selector: w.spec.source.selector.as_ref(),
        include_kinds: &w.spec.source.include_kinds,
        exclude_kinds: &w.spec.source.exclude_kinds,
        storage_class_map: &w.spec.target.storage_class_map,
        target_storage_classes: &target.storage_classes,
        image_rewrites: &w.spec.target.image_rewrites,
        target_region,
        patches: &w.spec.target.patches,
        workload: &format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any()),
        catalog: &catalog,
    });
    plan.findings
        .extend(discovered.finding(&w.spec.source.namespace));
    // Snapshot consistency is refused here, before anything moves, when a claim's CSI driver has
    // no VolumeSnapshotClass in the source.
    let consistency = w.spec.data.as_ref().map(|d| d.consistency);
    if consistency == Some(Consistency::Snapshot) && !plan.volumes.is_empty() {
        let inv = migrate::snapshot::inventory(&access.client)
            .await
            .map_err(|e| {
                format!(
                    "cannot read the StorageClasses and VolumeSnapshotClasses of the source cluster {:?} (consistency Snapshot): {e}",
                    w.spec.source.cluster
                )
            })?;
        plan.findings
            .extend(migrate::snapshot::preflight(&plan.volumes, &inv));
    }
    Ok(plan)
}

/// The estimate of the planned move, and its check against the budget. A cost model that cannot
/// price (a bad rate) leaves both out, with a log line: pricing never blocks a migration by error.
fn price(
    w: &SovereignWorkload,
    refs: &Refs,
    p: &MigrationPlan,
    fx: &cost::FxTable,
) -> (Option<cost::Estimate>, Option<cost::BudgetCheck>) {
    let (Some(source), Some(target)) = (refs.source.as_ref(), refs.target.as_ref()) else {
        return (None, None);
    };
    let currency = w
        .spec
        .cost
        .as_ref()
        .map(|c| c.currency.clone())
        .unwrap_or_else(|| "CAD".into());
    let estimate = match cost::estimate_plan(p, source, target, &currency, fx, true) {
        Ok(e) => e,
        Err(e) => {
            warn!(error = %e, "cannot estimate the migration's cost");
            return (None, None);
        }
    };
    let budget = w
        .spec
        .cost
        .as_ref()
        .and_then(|c| c.budget.as_ref())
        .and_then(|b| match cost::check_estimate(&estimate, b, fx) {
            Ok(check) => Some(check),
            Err(e) => {
                warn!(error = %e, "cannot check the budget");
                None
            }
        });
    (Some(estimate), budget)
}

/// The phase once the plan is known: errors in the plan stop it; an estimate over budget pauses it
/// before data moves; `Plan` mode is done; `Manual` waits for the plan's hash in the spec. Pure.
pub fn after_plan(
    w: &SovereignWorkload,
    before: Decision,
    p: &MigrationPlan,
    budget: Option<&cost::BudgetCheck>,
) -> Decision {
    let mut residency = before
        .conditions
        .into_iter()
        .filter(|c| c.type_ == RESIDENCY_COMPLIANT)
        .collect::<Vec<_>>();
    if let Some(b) = budget {
        let reason = if b.within {
            "WithinBudget"
        } else {
            "OverBudget"
        };
        residency.push(Desired::new(
            WITHIN_BUDGET,
            b.within,
            reason,
            b.message.clone(),
        ));
    }
    let summary = format!(
        "{} object(s), {} volume(s), {} byte(s) to move",
        p.objects.len(),
        p.volumes.len(),
        p.bytes()
    );
    let decision = |phase,
                    ready: bool,
                    reason: &str,
                    message: String,
                    reconciling: bool,
                    stalled: bool,
                    approved: Option<Desired>| {
        let mut conditions = kstatus(ready, reason, &message, reconciling, stalled);
        conditions.extend(approved);
        conditions.extend(residency.iter().cloned());
        Decision {
            phase,
            message,
            conditions,
            residency: before.residency.clone(),
        }
    };
    if let Some(e) = p.findings.iter().find(|f| f.severity == Severity::Error) {
        let message = format!(
            "the plan has {} error(s), first: {}: {} ({}); {}",
            p.findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .count(),
            e.object,
            e.rule,
            e.evidence,
            e.remediation
        );
        return decision(
            Phase::Planning,
            false,
            "PlanHasErrors",
            message,
            false,
            true,
            None,
        );
    }
    if let Some(b) = budget.filter(|b| !b.within && w.spec.mode != Mode::Plan) {
        let message = format!("{}; raise spec.cost.budget to go on", b.message);
        return decision(
            Phase::Paused,
            false,
            "OverBudget",
            message,
            false,
            true,
            None,
        );
    }
    if w.spec.mode == Mode::Plan {
        let message = format!(
            "plan {} ready: {summary}; Plan mode touches nothing",
            &p.hash[..12]
        );
        return decision(
            Phase::Completed,
            true,
            "PlanReady",
            message,
            false,
            false,
            None,
        );
    }
    match approval::check(&w.spec, &p.hash) {
        Approval::Awaiting => decision(
            Phase::AwaitingApproval,
            false,
            "AwaitingApproval",
            format!(
                "plan ready ({summary}); approve it by setting spec.cutover.approvedPlanHash to {}",
                p.hash
            ),
            false,
            false,
            Some(Desired::new(
                APPROVED,
                false,
                "AwaitingApproval",
                format!("set spec.cutover.approvedPlanHash to {}", p.hash),
            )),
        ),
        Approval::Stale { approved } => decision(
            Phase::AwaitingApproval,
            false,
            "StalePlanHash",
            format!(
                "the approved hash {approved} names an older plan: the plan changed (now {}); review and approve the new hash",
                p.hash
            ),
            false,
            false,
            Some(Desired::new(
                APPROVED,
                false,
                "StalePlanHash",
                format!("approved {approved}, current plan {}", p.hash),
            )),
        ),
        a @ (Approval::Approved { .. } | Approval::NotRequired) => {
            let (reason, note) = if a == Approval::NotRequired {
                ("NotRequired", "cutover strategy Automatic")
            } else {
                ("Approved", "the current plan's hash is approved")
            };
            decision(
                Phase::Replicating,
                false,
                "Replicating",
                format!("plan {} approved ({summary}); replicating", &p.hash[..12]),
                true,
                false,
                Some(Desired::new(APPROVED, true, reason, note)),
            )
        }
    }
}

/// The plan's summary in status; approval and computation times stay put while the plan does.
pub fn plan_status(
    w: &SovereignWorkload,
    old: Option<&PlanStatus>,
    p: &MigrationPlan,
    now: &Time,
) -> PlanStatus {
    let same_plan = old.is_some_and(|o| o.hash == p.hash);
    let approved = matches!(approval::check(&w.spec, &p.hash), Approval::Approved { .. });
    let mut findings = p.findings.clone();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings.truncate(MAX_FINDINGS);
    let was_approved = old.filter(|o| o.approved_hash.as_deref() == Some(p.hash.as_str()));
    PlanStatus {
        hash: p.hash.clone(),
        objects: p.objects.len() as i64,
        volumes: p.volumes.len() as i64,
        bytes: i64::try_from(p.bytes()).unwrap_or(i64::MAX),
        transforms: p.transforms.clone(),
        findings,
        approved_hash: approved.then(|| p.hash.clone()),
        approved_by: if approved {
            w.spec
                .cutover
                .as_ref()
                .and_then(|c| c.approved_by.clone())
                .or_else(|| was_approved.and_then(|o| o.approved_by.clone()))
        } else {
            None
        },
        approved_at: if approved {
            was_approved
                .and_then(|o| o.approved_at.clone())
                .or_else(|| Some(now.clone()))
        } else {
            None
        },
        computed_at: if same_plan {
            old.and_then(|o| o.computed_at.clone())
        } else {
            Some(now.clone())
        },
        applied_hash: old.and_then(|o| o.applied_hash.clone()),
    }
}

/// Decides the phase and conditions from the workload and what it refers to. Pure.
pub fn plan(w: &SovereignWorkload, refs: &Refs) -> Decision {
    let stalled = |reason: &str, message: String| Decision {
        phase: Phase::Pending,
        message: message.clone(),
        conditions: vec![
            Desired::new(READY, false, reason, message.clone()),
            Desired::new(
                RECONCILING,
                false,
                reason,
                "waiting for the problem to be fixed",
            ),
            Desired::new(STALLED, true, reason, message),
        ],
        residency: None,
    };
    let waiting = |reason: &str, message: String| Decision {
        phase: Phase::Pending,
        message: message.clone(),
        conditions: vec![
            Desired::new(READY, false, reason, message.clone()),
            Desired::new(RECONCILING, true, reason, message),
            Desired::new(STALLED, false, reason, ""),
        ],
        residency: None,
    };
    if w.spec.suspend {
        let message =
            "spec.suspend is true: the migration waits at its next safe point".to_string();
        return Decision {
            phase: Phase::Paused,
            message: message.clone(),
            conditions: vec![
                Desired::new(READY, false, "Suspended", message.clone()),
                Desired::new(RECONCILING, false, "Suspended", message),
                Desired::new(STALLED, false, "Suspended", ""),
            ],
            residency: None,
        };
    }
    for (role, wanted, found) in [
        ("source", &w.spec.source.cluster, &refs.source),
        ("target", &w.spec.target.cluster, &refs.target),
    ] {
        let reason_missing = if role == "source" {
            "SourceClusterNotFound"
        } else {
            "TargetClusterNotFound"
        };
        let reason_unready = if role == "source" {
            "SourceClusterNotReady"
        } else {
            "TargetClusterNotReady"
        };
        let Some(c) = found else {
            return stalled(
                reason_missing,
                format!("SovereignCluster {wanted:?} ({role}) does not exist"),
            );
        };
        let conds = c
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[]);
        if !conditions::is_true(conds, READY) {
            let why = conditions::find(conds, READY)
                .map(|r| format!("{}: {}", r.reason, r.message))
                .unwrap_or_else(|| "not probed yet".into());
            return waiting(
                reason_unready,
                format!("SovereignCluster {wanted:?} ({role}) is not ready ({why})"),
            );
        }
    }
    let Some(policy) = &refs.policy else {
        return stalled(
            "ResidencyPolicyNotFound",
            format!(
                "ResidencyPolicy {:?} does not exist",
                w.spec.residency_policy
            ),
        );
    };
    let pia = w
        .spec
        .governance
        .as_ref()
        .and_then(|g| g.privacy_impact_assessment_ref.as_deref())
        .is_some_and(|r| !r.trim().is_empty());
    if policy.spec.require_privacy_impact_assessment && !pia {
        return stalled(
            "PrivacyImpactAssessmentRequired",
            format!(
                "ResidencyPolicy {:?} requires spec.governance.privacyImpactAssessmentRef (Québec Law 25): record the assessment's reference before moving personal information",
                w.spec.residency_policy
            ),
        );
    }
    // Residency pre-flight: the target under the workload's policy, before anything moves.
    let target = refs.target.as_ref().and_then(|t| t.status.as_ref());
    let (verdict, mut findings) = preflight::target(&w.spec.target.cluster, target, &policy.spec);
    findings.truncate(MAX_FINDINGS);
    let residency = ResidencyStatus {
        verdict,
        location: target.and_then(|t| t.location.clone()),
        jurisdiction: target.and_then(|t| t.jurisdiction.clone()),
        policy: Some(w.spec.residency_policy.clone()),
        checked_at: None,
        findings,
    };
    let head = residency
        .findings
        .iter()
        .find(|f| f.severity != Severity::Info)
        .map(|f| format!("{} ({}: {})", f.rule, f.object, f.evidence))
        .unwrap_or_default();
    let blocked = verdict != Verdict::Compliant && policy.spec.enforcement == Enforcement::Block;
    let residency_condition = match verdict {
        Verdict::Compliant => Desired::new(
            RESIDENCY_COMPLIANT,
            true,
            "Compliant",
            "the target satisfies the policy",
        ),
        Verdict::NonCompliant if blocked => {
            Desired::new(RESIDENCY_COMPLIANT, false, "Blocked", head.clone())
        }
        Verdict::NonCompliant => Desired::new(
            RESIDENCY_COMPLIANT,
            false,
            "NonCompliantWarned",
            head.clone(),
        ),
        Verdict::Unknown => Desired::new(
            RESIDENCY_COMPLIANT,
            conditions::Status::Unknown,
            if blocked { "Blocked" } else { "UnknownWarned" },
            head.clone(),
        ),
    };
    if blocked {
        let message = format!(
            "ResidencyPolicy {:?} (enforcement Block) stops this migration before anything moves: {head}",
            w.spec.residency_policy
        );
        return Decision {
            phase: Phase::Pending,
            message: message.clone(),
            conditions: vec![
                Desired::new(READY, false, "ResidencyBlocked", message.clone()),
                Desired::new(
                    RECONCILING,
                    false,
                    "ResidencyBlocked",
                    "waiting for the target or the policy to change",
                ),
                Desired::new(STALLED, true, "ResidencyBlocked", message),
                residency_condition,
            ],
            residency: Some(residency),
        };
    }
    let message = "references resolved; the migration engine (planning, replication, cutover) is not part of this build yet".to_string();
    Decision {
        phase: Phase::Planning,
        message: message.clone(),
        conditions: vec![
            Desired::new(READY, false, "MigrationEngineUnavailable", message.clone()),
            Desired::new(RECONCILING, true, "Planning", message),
            Desired::new(STALLED, false, "Planning", ""),
            residency_condition,
        ],
        residency: Some(residency),
    }
}

/// Findings kept in the workload's status.
const MAX_FINDINGS: usize = 20;

/// The status the plan leads to, keeping what the plan does not decide.
pub fn render_status(
    w: &SovereignWorkload,
    old: &SovereignWorkloadStatus,
    plan: &Decision,
    now: &Time,
) -> SovereignWorkloadStatus {
    let mut s = old.clone();
    if let Some(r) = &plan.residency {
        // Keep the check time unless the verdict or findings changed: no churn, no self-wakeups.
        let same = old.residency.as_ref().is_some_and(|o| {
            o.verdict == r.verdict
                && o.findings == r.findings
                && o.location == r.location
                && o.jurisdiction == r.jurisdiction
        });
        let mut r = r.clone();
        r.checked_at = if same {
            old.residency.as_ref().and_then(|o| o.checked_at.clone())
        } else {
            Some(now.clone())
        };
        s.residency = Some(r);
    }
    s.phase = Some(plan.phase);
    s.message = Some(plan.message.clone());
    s.observed_generation = w.metadata.generation;
    s.conditions = conditions::merge(
        &old.conditions,
        &plan.conditions,
        w.metadata.generation,
        now,
    );
    s
}

fn transition_event(old: &SovereignWorkloadStatus, new: &SovereignWorkloadStatus) -> Option<Event> {
    let reason_of = |s: &SovereignWorkloadStatus| {
        conditions::find(&s.conditions, READY).map(|c| c.reason.clone())
    };
    if old.phase == new.phase && reason_of(old) == reason_of(new) {
        return None;
    }
    let stalled = conditions::is_true(&new.conditions, STALLED);
    let from = old.phase.map(|p| p.as_str()).unwrap_or("New");
    let to = new.phase.map(|p| p.as_str()).unwrap_or("Unknown");
    Some(Event {
        type_: if stalled {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason_of(new).unwrap_or_else(|| "PhaseChanged".into()),
        note: Some(format!(
            "{from} → {to}: {}",
            new.message.as_deref().unwrap_or("")
        )),
        action: "Reconcile".into(),
        secondary: None,
    })
}

async fn publish(ctx: &Context, w: &SovereignWorkload, ev: Event) {
    if let Err(e) = ctx.workload_recorder.publish(&ev, &w.object_ref(&())).await {
        warn!(error = %e, reason = %ev.reason, "cannot publish Event");
    }
}

fn report_phases(ctx: &Context) {
    let mut counts: HashMap<Phase, i64> = HashMap::new();
    for w in ctx.workloads.state() {
        let phase = w.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
        *counts.entry(phase).or_default() += 1;
    }
    ctx.metrics.set_workload_phases(&counts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(yaml: &str) -> SovereignWorkload {
        serde_yaml::from_str(yaml).expect("workload fixture")
    }

    const W: &str = "apiVersion: sovereign.dev/v1alpha1\nkind: SovereignWorkload\nmetadata: {name: dossier, namespace: migrations, generation: 2}\nspec:\n  source: {cluster: aws, namespace: sante}\n  target: {cluster: ovh}\n";

    fn cluster(name: &str, ready: bool) -> Arc<SovereignCluster> {
        located(name, ready, "CA-QC", "CA")
    }

    fn located(
        name: &str,
        ready: bool,
        location: &str,
        jurisdiction: &str,
    ) -> Arc<SovereignCluster> {
        let mut c: SovereignCluster =
            serde_yaml::from_str(&format!("apiVersion: sovereign.dev/v1alpha1\nkind: SovereignCluster\nmetadata: {{name: {name}}}\nspec: {{inCluster: true}}\n")).expect("cluster");
        let now = Time("2026-11-28T12:00:00Z".parse().expect("ts"));
        let cond = if ready {
            Desired::new(READY, true, "Reachable", "ok")
        } else {
            Desired::new(READY, false, "Unreachable", "connection refused")
        };
        c.status = Some(crate::api::SovereignClusterStatus {
            conditions: conditions::merge(&[], &[cond], None, &now),
            location: Some(location.into()),
            jurisdiction: Some(jurisdiction.into()),
            verdict: Some(Verdict::Compliant),
            ..Default::default()
        });
        Arc::new(c)
    }

    fn policy(require_pia: bool) -> Arc<ResidencyPolicy> {
        enforced(require_pia, "Block")
    }

    fn enforced(require_pia: bool, enforcement: &str) -> Arc<ResidencyPolicy> {
        Arc::new(
            serde_yaml::from_str(&format!("apiVersion: sovereign.dev/v1alpha1\nkind: ResidencyPolicy\nmetadata: {{name: quebec-strict}}\nspec: {{enforcement: {enforcement}, allowedLocations: [CA-QC], allowedJurisdictions: [CA], requirePrivacyImpactAssessment: {require_pia}}}\n")).expect("policy"),
        )
    }

    #[test]
    fn a_target_outside_the_policy_blocks_or_warns() {
        let w = workload(W);
        let us_in_quebec = located("ovh", true, "CA-QC", "US");
        let refs = Refs {
            source: Some(cluster("aws", true)),
            target: Some(us_in_quebec.clone()),
            policy: Some(policy(false)),
        };
        let p = plan(&w, &refs);
        assert_eq!((p.phase, reason(&p)), (Phase::Pending, "ResidencyBlocked"));
        assert!(
            p.conditions
                .iter()
                .any(|c| c.type_ == STALLED && c.status == conditions::Status::True)
        );
        let r = p.residency.as_ref().expect("residency in status");
        assert_eq!(r.verdict, Verdict::NonCompliant);
        assert!(r.findings.iter().any(|f| f.evidence == "US"), "{r:?}");
        let rc = p
            .conditions
            .iter()
            .find(|c| c.type_ == RESIDENCY_COMPLIANT)
            .expect("ResidencyCompliant");
        assert_eq!(
            (rc.status, rc.reason.as_str()),
            (conditions::Status::False, "Blocked")
        );
        // Warn: the migration goes on, the findings stay.
        let refs = Refs {
            policy: Some(enforced(false, "Warn")),
            ..refs
        };
        let p = plan(&w, &refs);
        assert_eq!(p.phase, Phase::Planning);
        let rc = p
            .conditions
            .iter()
            .find(|c| c.type_ == RESIDENCY_COMPLIANT)
            .expect("ResidencyCompliant");
        assert_eq!(
            (rc.status, rc.reason.as_str()),
            (conditions::Status::False, "NonCompliantWarned")
        );
        // An unclassified target is never compliant: Block stops it too.
        let mut bare = (*cluster("ovh", true)).clone();
        if let Some(s) = bare.status.as_mut() {
            s.location = None;
            s.jurisdiction = None;
        }
        let refs = Refs {
            source: Some(cluster("aws", true)),
            target: Some(Arc::new(bare)),
            policy: Some(policy(false)),
        };
        let p = plan(&w, &refs);
        assert_eq!(reason(&p), "ResidencyBlocked");
        assert_eq!(p.residency.map(|r| r.verdict), Some(Verdict::Unknown));
    }

    fn reason(p: &Decision) -> &str {
        &p.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("Ready")
            .reason
    }

    #[test]
    fn each_missing_reference_has_its_reason() {
        let w = workload(W);
        let p = plan(&w, &Refs::default());
        assert_eq!(
            (p.phase, reason(&p)),
            (Phase::Pending, "SourceClusterNotFound")
        );
        let p = plan(
            &w,
            &Refs {
                source: Some(cluster("aws", true)),
                ..Default::default()
            },
        );
        assert_eq!(reason(&p), "TargetClusterNotFound");
        let p = plan(
            &w,
            &Refs {
                source: Some(cluster("aws", true)),
                target: Some(cluster("ovh", false)),
                policy: None,
            },
        );
        assert_eq!(reason(&p), "TargetClusterNotReady");
        assert!(p.message.contains("connection refused"), "{}", p.message);
        assert!(
            p.conditions
                .iter()
                .any(|c| c.type_ == RECONCILING && c.status == conditions::Status::True)
        );
        let p = plan(
            &w,
            &Refs {
                source: Some(cluster("aws", true)),
                target: Some(cluster("ovh", true)),
                policy: None,
            },
        );
        assert_eq!(reason(&p), "ResidencyPolicyNotFound");
        assert!(
            p.conditions
                .iter()
                .any(|c| c.type_ == STALLED && c.status == conditions::Status::True)
        );
    }

    #[test]
    fn a_policy_requiring_a_pia_stalls_a_workload_without_one() {
        let refs = Refs {
            source: Some(cluster("aws", true)),
            target: Some(cluster("ovh", true)),
            policy: Some(policy(true)),
        };
        let p = plan(&workload(W), &refs);
        assert_eq!(reason(&p), "PrivacyImpactAssessmentRequired");
        let with_pia = format!(
            "{W}  governance: {{dataClassification: Confidential, privacyImpactAssessmentRef: EFVP-2026-0412}}\n"
        );
        let p = plan(&workload(&with_pia), &refs);
        assert_eq!(p.phase, Phase::Planning);
    }

    #[test]
    fn suspend_pauses_and_status_is_stable() {
        let w = workload(&format!("{W}  suspend: true\n"));
        let p = plan(&w, &Refs::default());
        assert_eq!(p.phase, Phase::Paused);
        let now = Time("2026-11-28T12:00:00Z".parse().expect("ts"));
        let s1 = render_status(&w, &SovereignWorkloadStatus::default(), &p, &now);
        let later = Time("2026-11-28T12:05:00Z".parse().expect("ts"));
        let s2 = render_status(&w, &s1, &plan(&w, &Refs::default()), &later);
        assert_eq!(s1, s2);
        assert_eq!(s1.observed_generation, Some(2));
        assert!(transition_event(&SovereignWorkloadStatus::default(), &s1).is_some());
        assert!(transition_event(&s1, &s2).is_none());
    }
}
