//! The `VolumeTransfer` controller: runs the mover for one volume. It creates the migration's
//! certificates (a CA per transfer, Secrets in both clusters), the receiver Pod and Service in the
//! target, and one sender Pod per pass in the source; it reads the sender's progress from its log
//! and records each pass in status. Pre-copy passes run while the source serves; the final pass
//! runs when the workload asks for it (annotation `sovereign.dev/final-pass`), after quiescing.
//!
//! With consistency Snapshot each pass's sender reads a claim restored from a VolumeSnapshot of
//! the source claim taken at the pass's start (`snapshot`), instead of the live claim. Otherwise
//! the senders keep their stat cache across passes in a claim of the transfer's own (`cache`), so
//! that a pass reads only the files that changed since the last one.
//!
//! One reconcile, one step, status written before the next action: the pass number and attempt
//! in status name the sender Pod, so a restarted operator finds the pod it started, reads how it
//! ended, and never counts a pass twice (`passWireBytes` has one entry per pass).

pub mod cache;
pub mod objects;
pub mod progress;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, info_span, warn};

use super::context::{Context, FIELD_MANAGER, FINALIZER};
use super::error::{Error, Result};
use super::status;
use crate::api::conditions::{self, Desired};
use crate::api::transfer::{TransferDisplay, TransferPhase, VolumeTransfer, VolumeTransferStatus};
use crate::api::workload::{Consistency, Transport, keys};
use crate::api::{SovereignCluster, SovereignWorkload};
use crate::remote;
use crate::telemetry::metrics::ControllerName;

/// A pass's sender is retried this many times before the transfer fails.
const MAX_ATTEMPTS: i32 = 4;
const ACTIVE: Duration = Duration::from_secs(2);

pub async fn reconcile(obj: Arc<VolumeTransfer>, ctx: Arc<Context>) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let span =
        info_span!("reconcile", controller = "volumetransfer", namespace = %ns, transfer = %name);
    async move {
        let _timer = ctx
            .metrics
            .reconcile_started(ControllerName::VolumeTransfer);
        let api: Api<VolumeTransfer> = Api::namespaced(ctx.client.clone(), &ns);
        let key = format!("{ns}/{name}");
        let result = finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                finalizer::Event::Apply(vt) => apply(vt, &ctx).await,
                finalizer::Event::Cleanup(vt) => cleanup(vt, &ctx).await,
            }
        })
        .await;
        crate::controller::finalize::outcome(&ctx, "VolumeTransfer", key, result)
    }
    .instrument(span)
    .await
}

pub fn error_policy(obj: Arc<VolumeTransfer>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
    warn!(transfer = %key, error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(ControllerName::VolumeTransfer, error.reason());
    Action::requeue(ctx.next_retry(&key))
}

/// Both clusters' clients, or why not.
struct Ends {
    source: Client,
    target: Client,
}

async fn ends(vt: &VolumeTransfer, ctx: &Context) -> std::result::Result<Ends, String> {
    let clusters: Api<SovereignCluster> = Api::all(ctx.client.clone());
    let get = |name: String| {
        let clusters = clusters.clone();
        async move {
            let c = clusters
                .get_opt(&name)
                .await
                .map_err(|e| format!("cannot read SovereignCluster {name:?}: {e}"))?
                .ok_or_else(|| format!("SovereignCluster {name:?} does not exist"))?;
            remote::client_for(&c, &ctx.client, &ctx.secret_namespaces)
                .await
                .map(|a| a.client)
                .map_err(|e| format!("cannot reach cluster {name:?}: {e}"))
        }
    };
    Ok(Ends {
        source: get(vt.spec.source.cluster.clone()).await?,
        target: get(vt.spec.target.cluster.clone()).await?,
    })
}

fn kube_err(vt: &VolumeTransfer, what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    let name = format!("{}/{}", vt.namespace().unwrap_or_default(), vt.name_any());
    move |source| Error::Read {
        what,
        kind: "VolumeTransfer",
        name,
        source,
    }
}

/// Why the cluster refused to create a mover pod, when a person must act on it: an admission
/// refusal (Pod Security level, ResourceQuota, a policy engine: 403) or an invalid object (422).
/// Anything else is a failure a retry may fix.
fn refused(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 422 => Some(s.message.clone()),
        _ => None,
    }
}

/// Says in the status why the pod cannot be created, and looks again later: the namespace's
/// label or quota may be fixed meanwhile; nothing moved, nothing is lost by waiting.
async fn wait_refused(
    vt: &VolumeTransfer,
    ctx: &Context,
    mut s: VolumeTransferStatus,
    role: &str,
    cluster: &str,
    why: String,
) -> Result<Action> {
    s.message = Some(format!(
        "cluster {cluster:?} refused the mover's {role} pod: {why}; the movers need the Pod Security \"baseline\" level and room in the namespace's quota; retrying every 30s"
    ));
    write(vt, ctx, &s).await?;
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Publishes an Event on the transfer; a failure to record it is logged, never a reconcile error.
async fn publish(ctx: &Context, vt: &VolumeTransfer, ev: &Event) {
    if let Err(e) = ctx.transfer_recorder.publish(ev, &vt.object_ref(&())).await {
        warn!(error = %e, reason = %ev.reason, "cannot publish Event");
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// `1.2GiB`
pub fn human_bytes(b: i64) -> String {
    let b = b.max(0) as f64;
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{}B", b as i64)
    } else {
        format!("{v:.1}{}", units[i])
    }
}

fn display(s: &VolumeTransferStatus) -> TransferDisplay {
    TransferDisplay {
        bytes: format!(
            "{}/{}",
            human_bytes(s.bytes_done),
            human_bytes(s.bytes_total)
        ),
        rate: format!("{}/s", human_bytes(s.bytes_per_second)),
    }
}

async fn write(vt: &VolumeTransfer, ctx: &Context, new: &VolumeTransferStatus) -> Result<()> {
    let api: Api<VolumeTransfer> =
        Api::namespaced(ctx.client.clone(), &vt.namespace().unwrap_or_default());
    let old = vt.status.clone().unwrap_or_default();
    let mut new = new.clone();
    new.observed_generation = vt.metadata.generation;
    new.display = Some(display(&new));
    status::write(&api, &vt.name_any(), &old, &new).await?;
    if old.phase != new.phase {
        let ev = Event {
            type_: if new.phase == Some(TransferPhase::Failed) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: format!("{:?}", new.phase.unwrap_or_default()),
            note: new.message.clone(),
            action: "Transfer".into(),
            secondary: None,
        };
        publish(ctx, vt, &ev).await;
    }
    Ok(())
}

async fn apply(vt: Arc<VolumeTransfer>, ctx: &Context) -> Result<Action> {
    let old = vt.status.clone().unwrap_or_default();
    let mut s = old.clone();
    let phase = old.phase.unwrap_or_default();
    // The final pass verified: the mover's objects go, the record stays.
    if phase == TransferPhase::Completed || phase == TransferPhase::Failed {
        if let Ok(e) = ends(&vt, ctx).await {
            remove_mover_objects(&vt, &e).await;
        }
        return Ok(Action::await_change());
    }
    let workloads: Api<SovereignWorkload> =
        Api::namespaced(ctx.client.clone(), &vt.namespace().unwrap_or_default());
    let Some(w) = workloads
        .get_opt(&vt.spec.workload)
        .await
        .map_err(kube_err(&vt, "the owning SovereignWorkload"))?
    else {
        // Being garbage-collected with its workload.
        return Ok(Action::await_change());
    };
    let data = w.spec.data.clone().unwrap_or_default();
    let snapshots = vt.spec.consistency == Consistency::Snapshot;
    let e = match ends(&vt, ctx).await {
        Ok(e) => e,
        Err(message) => {
            s.message = Some(format!("{message}; retrying"));
            write(&vt, ctx, &s).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
    };
    let src_ns = vt.spec.source.namespace.clone();
    let dst_ns = vt.spec.target.namespace.clone();
    let pp = PatchParams::apply(FIELD_MANAGER).force();

    // 1. Certificates: one CA per transfer; both Secrets must carry the same CA, else both are
    //    issued anew (a crash between the two writes leaves them unmatched).
    let src_secrets: Api<Secret> = Api::namespaced(e.source.clone(), &src_ns);
    let dst_secrets: Api<Secret> = Api::namespaced(e.target.clone(), &dst_ns);
    let sname = objects::secret_name(&vt);
    let ca_of = |s: Option<Secret>| {
        s.and_then(|s| s.data)
            .and_then(|d| d.get("ca.crt").map(|b| b.0.clone()))
    };
    let src_ca = ca_of(
        src_secrets
            .get_opt(&sname)
            .await
            .map_err(kube_err(&vt, "the sender's Secret"))?,
    );
    let dst_ca = ca_of(
        dst_secrets
            .get_opt(&sname)
            .await
            .map_err(kube_err(&vt, "the receiver's Secret"))?,
    );
    if src_ca.is_none() || src_ca != dst_ca {
        let migration = format!("{}/{}", vt.namespace().unwrap_or_default(), vt.name_any());
        let set = crate::mover::certs::generate(&migration, 30).map_err(|e| Error::Finalizer {
            kind: "VolumeTransfer",
            name: vt.name_any(),
            message: format!("cannot issue the mover's certificates: {e}"),
        })?;
        dst_secrets
            .patch(
                &sname,
                &pp,
                &Patch::Apply(&objects::secret(&vt, &dst_ns, "receiver", &set.receiver)),
            )
            .await
            .map_err(kube_err(&vt, "the receiver's Secret"))?;
        src_secrets
            .patch(
                &sname,
                &pp,
                &Patch::Apply(&objects::secret(&vt, &src_ns, "sender", &set.sender)),
            )
            .await
            .map_err(kube_err(&vt, "the sender's Secret"))?;
        // Pods started with the old certificates cannot talk to each other: restart them.
        remove_pods(&e.target, &dst_ns, &objects::selector(&vt)).await;
        remove_pods(&e.source, &src_ns, &objects::selector(&vt)).await;
    }

    // 2. The target claim (normally created with the workload's objects).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(e.target.clone(), &dst_ns);
    if claims
        .get_opt(&vt.spec.target.pvc)
        .await
        .map_err(kube_err(&vt, "the target PVC"))?
        .is_none()
    {
        s.phase = Some(TransferPhase::Preparing);
        s.message = Some(format!(
            "waiting for the target PVC {:?} (created with the workload's objects)",
            vt.spec.target.pvc
        ));
        write(&vt, ctx, &s).await?;
        return Ok(Action::requeue(ACTIVE));
    }

    // 3. The receiver and its Service.
    let services: Api<Service> = Api::namespaced(e.target.clone(), &dst_ns);
    let rname = objects::receiver_name(&vt);
    services
        .patch(
            &rname,
            &pp,
            &Patch::Apply(&objects::receiver_service(&vt, data.transport)),
        )
        .await
        .map_err(kube_err(&vt, "the receiver's Service"))?;
    let dst_pods: Api<Pod> = Api::namespaced(e.target.clone(), &dst_ns);
    let receiver = dst_pods
        .get_opt(&rname)
        .await
        .map_err(kube_err(&vt, "the receiver Pod"))?;
    let receiver = match receiver {
        None => {
            match dst_pods
                .create(
                    &PostParams::default(),
                    &objects::receiver_pod(&vt, &ctx.mover_image),
                )
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    let Some(why) = refused(&e) else {
                        return Err(kube_err(&vt, "the receiver Pod")(e));
                    };
                    return wait_refused(&vt, ctx, s, "receiver", &vt.spec.target.cluster, why)
                        .await;
                }
            }
            None
        }
        Some(p) => Some(p),
    };
    let address = match receiver.as_ref().filter(|p| pod_ready(p)) {
        None => None,
        Some(p) => {
            receiver_address(
                &services,
                &rname,
                p,
                data.transport,
                data.endpoint.as_deref(),
            )
            .await
        }
    };
    let Some(address) = address else {
        if phase == TransferPhase::Pending {
            s.phase = Some(TransferPhase::Preparing);
        }
        let why = receiver
            .as_ref()
            .and_then(pod_waiting)
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        s.message = Some(format!(
            "waiting for the receiver {rname:?} to be ready and reachable ({:?}){why}",
            data.transport
        ));
        write(&vt, ctx, &s).await?;
        return Ok(Action::requeue(ACTIVE));
    };

    // 4. Which pass: the pre-copies, then the final one once asked for.
    let want_final = vt.annotations().get(keys::FINAL_PASS).map(String::as_str) == Some("true");
    let pre_copy = data.pre_copy_passes.max(1);
    let idle = matches!(
        phase,
        TransferPhase::Pending | TransferPhase::Preparing | TransferPhase::Synced
    );
    if idle {
        // No pass under way: the snapshot objects of finished passes go (a restart between
        // recording a pass and deleting them left them).
        if snapshots {
            snapshot::remove_all(&vt, &e.source).await;
        }
        // A paused or suspended workload (budget, spec.suspend) starts no new pass; the one
        // under way finishes. The final pass is the cutover's, which a pause never interrupts.
        let paused = w.spec.suspend
            || w.status.as_ref().and_then(|s| s.phase) == Some(crate::api::workload::Phase::Paused);
        if paused && !want_final {
            s.message = Some(format!(
                "{} pass(es) verified; the workload is paused, no new pass starts",
                old.pass
            ));
            write(&vt, ctx, &s).await?;
            return Ok(Action::requeue(Duration::from_secs(10)));
        }
        let next = if old.pass < pre_copy {
            Some(false)
        } else if want_final && !old.final_pass {
            Some(true)
        } else {
            None
        };
        let Some(final_pass) = next else {
            s.message = Some(format!(
                "{} pre-copy pass(es) verified; waiting for the cutover's final pass",
                old.pass
            ));
            write(&vt, ctx, &s).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        s.pass = old.pass + 1;
        s.attempt = 1;
        s.final_pass = final_pass;
        s.phase = Some(TransferPhase::Transferring);
        s.bytes_done = 0;
        s.files_done = 0;
        s.message = Some(format!(
            "pass {} ({}) starting",
            s.pass,
            if final_pass { "final" } else { "pre-copy" }
        ));
        if s.started_at.is_none() {
            s.started_at = Some(now());
        }
        write(&vt, ctx, &s).await?;
        return Ok(Action::requeue(Duration::from_millis(200)));
    }

    // 5. The pass under way: its sender Pod, named by pass and attempt.
    let src_pods: Api<Pod> = Api::namespaced(e.source.clone(), &src_ns);
    let sender = objects::sender_name(&vt, old.pass, old.attempt.max(1));
    // Senders of earlier passes or attempts are done with: their outcome is in status.
    if let Ok(list) = src_pods
        .list(&ListParams::default().labels(&objects::selector(&vt)))
        .await
    {
        for p in list.items.iter().filter(|p| p.name_any() != sender) {
            let _ = src_pods
                .delete(&p.name_any(), &DeleteParams::background())
                .await;
        }
    }
    let Some(pod) = src_pods
        .get_opt(&sender)
        .await
        .map_err(kube_err(&vt, "the sender Pod"))?
    else {
        let (claim, node) = if snapshots {
            // The pass reads a snapshot taken now, restored into a claim of its own: no pinning,
            // the restored volume attaches wherever the sender lands.
            match snapshot::prepare(&vt, &e.source, old.pass).await? {
                snapshot::Source::Ready { claim } => (claim, None),
                snapshot::Source::Waiting(what) => {
                    s.message = Some(format!(
                        "pass {} ({}), attempt {}: {what}",
                        old.pass,
                        if old.final_pass { "final" } else { "pre-copy" },
                        old.attempt.max(1),
                    ));
                    write(&vt, ctx, &s).await?;
                    return Ok(Action::requeue(ACTIVE));
                }
                snapshot::Source::Retry(why) => return fail_attempt(&vt, ctx, s, why).await,
                snapshot::Source::Refused(why) => {
                    s.phase = Some(TransferPhase::Failed);
                    s.message = Some(why);
                    write(&vt, ctx, &s).await?;
                    return Ok(Action::await_change());
                }
            }
        } else {
            let node = consumer_node(&e.source, &src_ns, &vt.spec.source.pvc, &vt).await;
            (vt.spec.source.pvc.clone(), node)
        };
        // The stat cache's claim before the sender that mounts it (not with snapshots: see
        // `cache`); without one the pass still runs, only slower.
        let cache = if snapshots || cache::given_up(&old.conditions) {
            None
        } else {
            let cache = cache::prepare(&vt, &e.source).await;
            note_cache(&vt, ctx, &mut s, &cache).await;
            write(&vt, ctx, &s).await?;
            match cache {
                cache::Cache::Ready(claim) => Some(claim),
                cache::Cache::Unavailable(_) | cache::Cache::Unschedulable(_) => None,
            }
        };
        match src_pods
            .create(
                &PostParams::default(),
                &objects::sender_pod(
                    &vt,
                    &ctx.mover_image,
                    &address,
                    old.pass,
                    old.final_pass,
                    old.attempt.max(1),
                    &claim,
                    node.as_deref(),
                    cache.as_deref(),
                ),
            )
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let Some(why) = refused(&e) else {
                    return Err(kube_err(&vt, "the sender Pod")(e));
                };
                return wait_refused(&vt, ctx, s, "sender", &vt.spec.source.cluster, why).await;
            }
        }
        return Ok(Action::requeue(ACTIVE));
    };
    let pod_phase = pod
        .status
        .as_ref()
        .and_then(|p| p.phase.clone())
        .unwrap_or_default();
    let log = src_pods
        .logs(
            &sender,
            &LogParams {
                container: Some("sender".into()),
                tail_lines: Some(50),
                ..LogParams::default()
            },
        )
        .await
        .unwrap_or_default();
    let last = progress::last(&log);
    if let Some(p) = &last {
        s.bytes_done = p.bytes_done;
        s.bytes_total = p.bytes_total;
        s.files_done = p.files_done;
        s.files_total = p.files_total;
        s.bytes_per_second = p.bytes_per_second;
    }
    match pod_phase.as_str() {
        "Succeeded" => {
            let Some(p) = last.filter(|p| p.verified && p.root_hash.is_some()) else {
                return fail_attempt(
                    &vt,
                    ctx,
                    s,
                    "the sender exited 0 without reporting a verified root hash".into(),
                )
                .await;
            };
            let pass_index = (old.pass - 1).max(0) as usize;
            if s.pass_wire_bytes.len() <= pass_index {
                s.pass_wire_bytes.resize(pass_index + 1, 0);
            }
            s.pass_wire_bytes[pass_index] = p.wire_bytes;
            s.wire_bytes = s.pass_wire_bytes.iter().sum();
            s.source_root_hash = p.root_hash.clone();
            // The sender exits 0 only when the receiver's root hash equals its own.
            s.target_root_hash = p.root_hash.clone();
            s.duration_seconds = p.elapsed_seconds.round() as i64;
            if old.pass >= 2 || !old.final_pass {
                s.last_delta_bytes = Some(if old.pass >= 2 {
                    p.wire_bytes
                } else {
                    p.bytes_total
                });
            }
            s.bytes_done = s.bytes_total;
            if old.final_pass {
                s.phase = Some(TransferPhase::Completed);
                s.completed_at = Some(now());
                s.message = Some(format!(
                    "final pass {} verified: root hash {}",
                    old.pass,
                    p.root_hash.as_deref().unwrap_or("")
                ));
            } else {
                s.phase = Some(TransferPhase::Synced);
                s.message = Some(format!(
                    "pre-copy pass {} verified; the source still serves",
                    old.pass
                ));
            }
            write(&vt, ctx, &s).await?;
            // The pass's snapshot and restored claim are done with once it is recorded.
            if snapshots {
                snapshot::remove_all(&vt, &e.source).await;
            }
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        "Failed" => {
            let why = progress::failure(&log).unwrap_or_else(|| {
                pod.status
                    .as_ref()
                    .and_then(|st| st.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref()?.terminated.as_ref())
                    .map(|t| format!("exit code {}", t.exit_code))
                    .unwrap_or_else(|| "the sender failed".into())
            });
            fail_attempt(&vt, ctx, s, why).await
        }
        "Running" if stalled(&pod, last.as_ref()) => {
            // A sender that prints nothing for this long is stuck (a peer that vanished mid-stream,
            // a hung mount): a fresh attempt resumes from what the receiver verified.
            let _ = src_pods.delete(&sender, &DeleteParams::background()).await;
            fail_attempt(&vt, ctx, s, format!("no progress for {}s", STALL.as_secs())).await
        }
        "Pending" | "" if let Some(why) = cache::unschedulable(&pod, Timestamp::now()) => {
            // The cache claim may be what keeps the sender off every node (provisioned in
            // another zone, or not at all): the transfer goes on without a cache.
            // Not counted as a failed attempt: the cache is no reason to fail a transfer.
            let _ = src_pods.delete(&sender, &DeleteParams::background()).await;
            note_cache(&vt, ctx, &mut s, &cache::Cache::Unschedulable(why.clone())).await;
            s.attempt = old.attempt.max(1) + 1;
            s.message = Some(format!(
                "pass {}: its sender could not be scheduled with the stat-cache claim ({why}); attempt {} runs without it",
                old.pass, s.attempt
            ));
            write(&vt, ctx, &s).await?;
            Ok(Action::requeue(ACTIVE))
        }
        _ => {
            // A sender that cannot start says why (the scheduler's or kubelet's words).
            let waiting = pod_waiting(&pod);
            s.message = Some(format!(
                "pass {} ({}), attempt {}: {} of {}{}",
                old.pass,
                if old.final_pass { "final" } else { "pre-copy" },
                old.attempt.max(1),
                human_bytes(s.bytes_done),
                human_bytes(s.bytes_total),
                waiting
                    .map(|w| format!("; sender {pod_phase}: {w}"))
                    .unwrap_or_default()
            ));
            write(&vt, ctx, &s).await?;
            Ok(Action::requeue(ACTIVE))
        }
    }
}

/// Records in the `SenderCache` condition whether the next sender has its stat cache. When it
/// becomes unavailable (or for another reason), that is also logged, said in the message and in a
/// Warning Event, once.
async fn note_cache(
    vt: &VolumeTransfer,
    ctx: &Context,
    s: &mut VolumeTransferStatus,
    cache: &cache::Cache,
) {
    let desired = match cache {
        cache::Cache::Ready(claim) => Desired::new(
            conditions::SENDER_CACHE,
            true,
            "ClaimReady",
            format!(
                "the senders keep their stat cache in the claim {}/{claim}: a pass reads only the files that changed since the last verified one",
                vt.spec.source.namespace
            ),
        ),
        cache::Cache::Unavailable(why) => {
            Desired::new(conditions::SENDER_CACHE, false, "Unavailable", why.clone())
        }
        cache::Cache::Unschedulable(why) => Desired::new(
            conditions::SENDER_CACHE,
            false,
            cache::UNSCHEDULABLE,
            format!(
                "a sender that mounted the stat-cache claim could not be scheduled ({why}): the transfer's other passes run without it"
            ),
        ),
    };
    let known = conditions::find(&s.conditions, conditions::SENDER_CACHE)
        .is_some_and(|c| c.status == desired.status.as_str() && c.message == desired.message);
    s.conditions = conditions::merge(
        &s.conditions,
        std::slice::from_ref(&desired),
        vt.metadata.generation,
        &now(),
    );
    let (cache::Cache::Unavailable(why) | cache::Cache::Unschedulable(why)) = cache else {
        return;
    };
    if known {
        return;
    }
    warn!(transfer = %vt.name_any(), reason = %why, "the sender runs without its stat cache");
    s.message = Some(format!(
        "pass {} runs without the sender's stat cache (every file is read again): {why}",
        s.pass
    ));
    let ev = Event {
        type_: EventType::Warning,
        reason: "SenderCacheUnavailable".into(),
        note: Some(why.clone()),
        action: "Transfer".into(),
        secondary: None,
    };
    publish(ctx, vt, &ev).await;
}

/// Records a failed attempt: the next reconcile starts a fresh sender, which resumes from what the
/// receiver already verified; after `MAX_ATTEMPTS` the transfer fails with the reason.
async fn fail_attempt(
    vt: &VolumeTransfer,
    ctx: &Context,
    mut s: VolumeTransferStatus,
    why: String,
) -> Result<Action> {
    let attempt = s.attempt.max(1);
    if attempt >= MAX_ATTEMPTS {
        s.phase = Some(TransferPhase::Failed);
        s.message = Some(format!(
            "pass {} failed {attempt} time(s); last: {why}",
            s.pass
        ));
        write(vt, ctx, &s).await?;
        return Ok(Action::await_change());
    }
    s.attempt = attempt + 1;
    s.message = Some(format!(
        "pass {} attempt {attempt} failed ({why}); retrying",
        s.pass
    ));
    write(vt, ctx, &s).await?;
    Ok(Action::requeue(Duration::from_secs(
        2u64.pow(attempt as u32),
    )))
}

/// How long a running sender may go without a progress line (it prints one a second).
// Generous: the walk of a very large tree precedes the first line.
const STALL: Duration = Duration::from_secs(600);

/// Whether a running sender has gone quiet: the time since its start minus the time its last
/// progress line reports is the time since that line.
fn stalled(pod: &Pod, last: Option<&progress::Seen>) -> bool {
    let Some(started) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) else {
        return false;
    };
    let running = (Timestamp::now().as_second() - started.0.as_second()).max(0) as f64;
    let reported = last.map(|p| p.elapsed_seconds).unwrap_or(0.0);
    running - reported > STALL.as_secs_f64()
}

/// Why a pod is not running yet, if it says.
fn pod_waiting(p: &Pod) -> Option<String> {
    let st = p.status.as_ref()?;
    if let Some(c) = st.conditions.as_ref().and_then(|c| {
        c.iter()
            .find(|c| c.status == "False" && c.message.is_some())
    }) {
        return Some(format!(
            "{} {}",
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        ));
    }
    st.container_statuses
        .as_ref()?
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Where the sender reaches the receiver: the load balancer's address, a node port, or the
/// endpoint the spec names.
async fn receiver_address(
    services: &Api<Service>,
    name: &str,
    pod: &Pod,
    transport: Transport,
    endpoint: Option<&str>,
) -> Option<String> {
    if transport == Transport::Endpoint {
        return endpoint.map(String::from);
    }
    let svc = services.get_opt(name).await.ok()??;
    match transport {
        Transport::LoadBalancer => {
            let ingress = svc.status?.load_balancer?.ingress?.into_iter().next()?;
            let host = ingress.ip.or(ingress.hostname)?;
            Some(format!("{host}:{}", objects::PORT))
        }
        Transport::NodePort => {
            let port = svc.spec?.ports?.into_iter().next()?.node_port?;
            let host = pod.status.as_ref()?.host_ip.clone()?;
            Some(format!("{host}:{port}"))
        }
        Transport::Endpoint => None,
    }
}

/// The node of a running pod that mounts the claim: a ReadWriteOnce volume is attached there.
async fn consumer_node(
    client: &Client,
    ns: &str,
    claim: &str,
    vt: &VolumeTransfer,
) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default()).await.ok()?;
    list.items
        .into_iter()
        .filter(|p| p.labels().get(keys::TRANSFER) != Some(&vt.name_any()))
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|v| {
                    v.iter().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == claim)
                    })
                })
        })
        .find_map(|p| p.spec.and_then(|s| s.node_name))
}

async fn remove_pods(client: &Client, ns: &str, selector: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&ListParams::default().labels(selector)).await {
        for p in list {
            let _ = pods
                .delete(&p.name_any(), &DeleteParams::background())
                .await;
        }
    }
}

/// Deletes every mover object of a transfer in both clusters (idempotent).
async fn remove_mover_objects(vt: &VolumeTransfer, e: &Ends) {
    let sel = objects::selector(vt);
    // The senders first: they mount the restored claims and the cache claim.
    remove_pods(&e.source, &vt.spec.source.namespace, &sel).await;
    if vt.spec.consistency == Consistency::Snapshot {
        snapshot::remove_all(vt, &e.source).await;
    }
    cache::remove(vt, &e.source).await;
    for (client, ns) in [
        (&e.source, vt.spec.source.namespace.as_str()),
        (&e.target, vt.spec.target.namespace.as_str()),
    ] {
        remove_pods(client, ns, &sel).await;
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = services.list(&ListParams::default().labels(&sel)).await {
            for x in list {
                let _ = services
                    .delete(&x.name_any(), &DeleteParams::background())
                    .await;
            }
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = secrets.list(&ListParams::default().labels(&sel)).await {
            for x in list {
                let _ = secrets
                    .delete(&x.name_any(), &DeleteParams::background())
                    .await;
            }
        }
    }
}

async fn cleanup(vt: Arc<VolumeTransfer>, ctx: &Context) -> Result<Action> {
    match ends(&vt, ctx).await {
        Ok(e) => remove_mover_objects(&vt, &e).await,
        // A cluster that is gone has nothing left to clean.
        Err(message) => warn!(%message, "mover objects not cleaned up"),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_admission_refusal_is_a_message_and_other_failures_are_errors() {
        let api = |code: u16, message: &str| {
            kube::Error::Api(
                kube::core::Status::failure(message, "Forbidden")
                    .with_code(code)
                    .boxed(),
            )
        };
        let psa = "pods \"x-send-1-1\" is forbidden: violates PodSecurity \"restricted:latest\": runAsNonRoot != true";
        assert_eq!(super::refused(&api(403, psa)).as_deref(), Some(psa));
        assert!(super::refused(&api(422, "spec.containers[0].image: Required value")).is_some());
        assert!(super::refused(&api(500, "etcdserver: request timed out")).is_none());
        assert!(super::refused(&api(409, "already exists")).is_none());
    }
}
