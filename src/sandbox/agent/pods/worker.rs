//! One pod's worker (the kubelet's pod worker): from the pod's latest version, its containers'
//! states and a one-second tick, it gives the pod its address, sets up its volumes, starts its
//! containers in order (init containers to completion first), probes readiness, keeps its
//! tokens fresh, writes its status when it changed, and takes it down when it is deleted:
//! SIGTERM, the grace period (at most 30 s), SIGKILL, the final status, then the deletion for
//! good (grace 0, UID precondition, as the kubelet's status manager does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{Notify, watch};

use super::containers::{RunState, Slot, Stop, now};
use super::events::Subject;
use super::launch::{self, Net, Prepared, Start};
use super::restart::Role;
use super::status::{self, Observed, View};
use super::{PodRef, Shared, probes};
use crate::sandbox::agent::nodes;

const MANAGER: &str = "kubelet";
const TICK: Duration = Duration::from_secs(1);
/// The sandbox never waits longer than this for a process to stop after SIGTERM.
const MAX_GRACE: Duration = Duration::from_secs(30);
/// A simulated container of a Job's pod runs this long before it succeeds.
const SIMULATED_JOB: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Active,
    /// Succeeded or Failed: nothing runs; the address is released.
    Terminal,
    /// Deleted for good (or on its way out with finalizers): nothing more to do.
    Deleted,
}

pub struct Worker {
    shared: Arc<Shared>,
    pod: Arc<PodRef>,
    dir: PathBuf,
    slots: Vec<Arc<Slot>>,
    wake: Arc<Notify>,
    pod_ip: Option<String>,
    host_ip: String,
    start_time: Option<Timestamp>,
    first_seen: Instant,
    prepared: Option<Prepared>,
    /// The last volume failure reported (its Event is not repeated).
    mount_failure: Option<String>,
    stage: Stage,
    /// What was last written and what the API server returned for it.
    written: Option<(PodStatus, PodStatus)>,
    /// The newest version of the pod known: an event, or the answer to a status write.
    latest: Option<Arc<Pod>>,
}

fn version(p: &Pod) -> u64 {
    p.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn terminal_phase(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A simulated pod of a Job (owner kind Job, restartPolicy not Always): it completes.
fn is_job(p: &Pod) -> bool {
    let owned = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job" && o.controller == Some(true));
    let policy = p.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    owned && matches!(policy, Some("OnFailure" | "Never"))
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        pod: Arc<PodRef>,
        dir: PathBuf,
        slots: Vec<Arc<Slot>>,
    ) -> Worker {
        let host_ip = nodes::node_ip(&shared.host, &pod.node)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        Worker {
            shared,
            pod,
            dir,
            slots,
            wake: Arc::new(Notify::new()),
            pod_ip: None,
            host_ip,
            start_time: None,
            first_seen: Instant::now(),
            prepared: None,
            mount_failure: None,
            stage: Stage::Active,
            written: None,
            latest: None,
        }
    }

    /// Runs until the pod is gone for good (true), or the agent stops (false: its processes
    /// are then killed by `Runtime::kill_all`).
    pub async fn run(
        mut self,
        mut updates: watch::Receiver<Option<Arc<Pod>>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> bool {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let seen = updates.borrow_and_update().clone();
            match seen {
                None => {
                    self.vanished().await;
                    return true;
                }
                Some(p) => {
                    let pod = match &self.latest {
                        Some(l) if version(l) > version(&p) => l.clone(),
                        _ => p,
                    };
                    self.latest = Some(pod.clone());
                    self.sync(&pod).await;
                }
            }
            tokio::select! {
                r = updates.changed() => if r.is_err() { return false },
                _ = self.wake.notified() => {}
                _ = tick.tick() => {}
                _ = shutdown.changed() => return false,
            }
        }
    }

    fn executed(&self) -> bool {
        self.slots.iter().any(|s| s.binary.is_some())
    }

    fn live(&self) -> bool {
        self.slots.iter().any(|s| s.live())
    }

    async fn sync(&mut self, pod: &Arc<Pod>) {
        if self.stage == Stage::Deleted {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            return self.delete(pod).await;
        }
        if self.stage == Stage::Terminal {
            return;
        }
        if terminal_phase(pod) && !self.live() {
            return self.finish();
        }
        let Some(pod_ip) = self.ensure_ip(pod) else {
            return;
        };
        self.start_time.get_or_insert_with(|| {
            pod.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0)
                .unwrap_or_else(now)
        });
        if self.executed() {
            // The address is in the status before any process starts (`status.podIP` env).
            let has_ip = pod.status.as_ref().is_some_and(|s| s.pod_ip.is_some());
            if !has_ip || !self.ready_to_start(pod, &pod_ip).await {
                return self.write_status(pod, false).await;
            }
            self.advance(pod, &pod_ip).await;
            self.refresh_tokens().await;
            self.probe(pod, &pod_ip).await;
        } else {
            self.simulate(pod);
        }
        self.write_status(pod, false).await;
    }

    /// The address the API is told: a pod's loopback address as the cluster network knows it
    /// (`Block::cluster_address`: the API server refuses loopback addresses in EndpointSlices),
    /// a host-network pod's node address as it is.
    fn published_ip(&self) -> Option<String> {
        let ip = self.pod_ip.as_ref()?;
        let net = &self.shared.host.net;
        Some(
            ip.parse()
                .ok()
                .filter(|_| *ip != self.host_ip)
                .and_then(|a| net.cluster_address(a))
                .map(|a| a.to_string())
                .unwrap_or_else(|| ip.clone()),
        )
    }

    /// The pod's loopback address, which its processes bind and its probes reach: the one its
    /// status has (a restarted agent), or a new one.
    fn ensure_ip(&mut self, pod: &Pod) -> Option<String> {
        if let Some(ip) = &self.pod_ip {
            return Some(ip.clone());
        }
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let net = &self.shared.host.net;
        let existing = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .map(|a| net.loopback_address(a).to_string());
        let ip = if host_network {
            Some(self.host_ip.clone())
        } else if let Some(ip) = existing.filter(|ip| net.adopt_pod(&self.pod.uid, ip)) {
            Some(ip)
        } else {
            net.pod_ip(&self.pod.uid).map(|ip| ip.to_string())
        };
        if ip.is_none() {
            tracing::warn!(cluster = %self.pod.cluster, pod = %self.pod.key(), "the cluster's pod addresses are exhausted");
        }
        self.pod_ip = ip.clone();
        ip
    }

    /// Sets up the volumes once; false (and a FailedMount Event) while one cannot be.
    async fn ready_to_start(&mut self, pod: &Pod, pod_ip: &str) -> bool {
        if self.prepared.is_some() {
            return true;
        }
        let net = Net {
            pod_ip,
            host_ip: &self.host_ip,
        };
        match launch::prepare(&self.shared, &self.pod, pod, &self.dir, &net).await {
            Ok(p) => {
                self.prepared = Some(p);
                true
            }
            Err(f) => {
                let message = format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {}",
                    f.volume, f.message
                );
                if self.mount_failure.as_deref() != Some(message.as_str()) {
                    tracing::info!(cluster = %self.pod.cluster, pod = %self.pod.key(), %message, "volume not ready");
                    self.shared
                        .events
                        .warning(&Subject::pod(&self.pod), "FailedMount", message.clone())
                        .await;
                    self.mount_failure = Some(message);
                }
                false
            }
        }
    }

    /// Starts what may start now: the next init container (a sidecar once it runs), then every
    /// container.
    async fn advance(&mut self, pod: &Pod, pod_ip: &str) {
        let slots = self.slots.clone();
        for slot in slots.iter().filter(|s| s.role != Role::Main) {
            let run = slot.snapshot();
            let done = match slot.role {
                Role::Init => run.succeeded(),
                _ => run.running() && run.started,
            };
            if done {
                continue;
            }
            if !slot.launched() && !run.finished {
                self.start(pod, pod_ip, slot).await;
            }
            return;
        }
        let mains: Vec<&Arc<Slot>> = slots.iter().filter(|s| s.role == Role::Main).collect();
        for slot in &mains {
            if !slot.launched() && !slot.snapshot().finished {
                self.start(pod, pod_ip, slot).await;
            }
        }
        // Simulated containers beside processes end when every process has ended for good.
        let (executed, simulated): (Vec<_>, Vec<_>) =
            mains.into_iter().partition(|s| s.binary.is_some());
        if !executed.is_empty() && executed.iter().all(|s| s.snapshot().finished) {
            for s in simulated.into_iter().filter(|s| !s.snapshot().finished) {
                launch::complete(s);
            }
        }
    }

    async fn start(&self, pod: &Pod, pod_ip: &str, slot: &Arc<Slot>) {
        if slot.binary.is_none() {
            return launch::simulate(slot);
        }
        let Some(prepared) = &self.prepared else {
            return;
        };
        let s = Start {
            shared: &self.shared,
            pod: &self.pod,
            spec: pod,
            dir: &self.dir,
            net: Net {
                pod_ip,
                host_ip: &self.host_ip,
            },
            prepared,
            wake: &self.wake,
        };
        if let Err(e) = launch::start(&s, slot).await {
            let changed = slot.snapshot().state
                != RunState::Waiting {
                    reason: e.reason.to_string(),
                    message: e.message.clone(),
                };
            if changed {
                let subject = Subject::container(&self.pod, slot.role, &slot.name);
                self.shared
                    .events
                    .warning(&subject, "Failed", format!("Error: {}", e.message))
                    .await;
                slot.update(|r| {
                    r.state = RunState::Waiting {
                        reason: e.reason.to_string(),
                        message: e.message,
                    }
                });
            }
        }
    }

    /// Simulated pods: every container runs and is ready at once; a Job's completes after a
    /// second.
    fn simulate(&mut self, pod: &Pod) {
        for slot in &self.slots {
            if !slot.launched() {
                launch::simulate(slot);
            }
        }
        if is_job(pod) && self.first_seen.elapsed() >= SIMULATED_JOB {
            for slot in self.slots.iter().filter(|s| s.role != Role::Init) {
                if !slot.snapshot().finished {
                    launch::complete(slot);
                }
            }
        }
    }

    async fn refresh_tokens(&mut self) {
        let Some(prepared) = &mut self.prepared else {
            return;
        };
        let now = Timestamp::now();
        for t in prepared.tokens.iter_mut().filter(|t| t.due(now)) {
            if let Err(e) = t.renew(&self.shared.host.client, &self.pod).await {
                tracing::warn!(cluster = %self.pod.cluster, error = %e, "cannot refresh a token; the old one stays");
            }
        }
    }

    async fn probe(&self, pod: &Pod, pod_ip: &str) {
        let now = now();
        for slot in self
            .slots
            .iter()
            .filter(|s| s.binary.is_some() && s.role != Role::Init)
        {
            let run = slot.snapshot();
            let (RunState::Running { started_at }, Some(c)) =
                (&run.state, launch::container(pod, slot))
            else {
                continue;
            };
            let delay = probes::initial_delay(c) as i64;
            let due = now.as_second() - started_at.as_second() >= delay;
            let ready = due && probes::ready(c, pod_ip).await;
            // The same instance, still running: the answer is about it.
            slot.update(|r| {
                if r.restarts == run.restarts && r.running() {
                    r.ready = ready;
                }
            });
        }
    }

    fn observed(&self) -> Vec<Observed> {
        self.slots
            .iter()
            .map(|s| Observed {
                name: s.name.clone(),
                image: s.image.clone(),
                role: s.role,
                run: s.snapshot(),
            })
            .collect()
    }

    /// Writes the status when what the kubelet owns of it changed.
    async fn write_status(&mut self, pod: &Pod, terminal: bool) {
        let observed = self.observed();
        let published = self.published_ip();
        let view = View {
            pod,
            containers: &observed,
            pod_ip: published.as_deref(),
            host_ip: &self.host_ip,
            start_time: self.start_time.unwrap_or_else(now),
            sandbox_ready: !terminal && (self.prepared.is_some() || !self.executed()),
            terminal,
            now: now(),
        };
        let desired = status::compute(&view);
        let want = status::owned(&desired);
        let have = status::owned(&pod.status.clone().unwrap_or_default());
        let normalised = self
            .written
            .as_ref()
            .is_some_and(|(w, r)| *w == want && *r == have);
        if want == have || normalised {
            return self.after_status(&desired);
        }
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.pod.name, "namespace": self.pod.namespace},
            "status": desired,
        });
        let api: Api<Pod> = Api::namespaced(self.shared.host.client.clone(), &self.pod.namespace);
        match api
            .patch_status(
                &self.pod.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(p) => {
                tracing::debug!(cluster = %self.pod.cluster, pod = %self.pod.key(), phase = ?desired.phase, "status written");
                let back = status::owned(&p.status.clone().unwrap_or_default());
                self.written = Some((want, back));
                self.latest = Some(Arc::new(p));
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => {
                let e = self.pod.api_error("writing the status", e);
                tracing::warn!(error = %e, "cannot write the pod's status");
            }
        }
        self.after_status(&desired);
    }

    fn after_status(&mut self, written: &PodStatus) {
        let phase = written.phase.as_deref();
        if matches!(phase, Some("Succeeded" | "Failed")) && !self.live() {
            self.finish();
        }
    }

    /// The pod reached Succeeded or Failed: its address goes back to the pool (its logs stay
    /// until it is deleted).
    fn finish(&mut self) {
        if self.stage == Stage::Active {
            self.shared.host.net.release(&self.pod.uid);
            self.stage = Stage::Terminal;
        }
    }

    fn cleanup(&mut self) {
        self.shared.host.net.release(&self.pod.uid);
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(cluster = %self.pod.cluster, pod = %self.pod.key(), error = %e, "cannot remove the pod's directory");
        }
        self.stage = Stage::Deleted;
    }

    /// Stops every container (SIGTERM, grace, SIGKILL), writes the final status and deletes the
    /// pod for good.
    async fn delete(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(MAX_GRACE)
            .min(MAX_GRACE);
        let ran = self
            .slots
            .iter()
            .any(|s| s.binary.is_some() && s.launched());
        for s in &self.slots {
            s.stop(Stop::Term(grace));
        }
        for s in &self.slots {
            s.join().await;
        }
        if ran && self.stage == Stage::Active {
            self.write_status(pod, true).await;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.host.client.clone(), &self.pod.namespace);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.pod.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&self.pod.name, &dp).await {
            Ok(_) => {}
            // Gone already, or the name now belongs to another pod.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
            Err(e) => {
                let e = self.pod.api_error("deleting", e);
                tracing::warn!(error = %e, "cannot delete the pod; retrying");
                return;
            }
        }
        self.cleanup();
    }

    /// The pod was deleted for good while its processes ran (a forced deletion): kill them.
    async fn vanished(mut self) {
        for s in &self.slots {
            s.stop(Stop::Kill);
        }
        for s in &self.slots {
            s.join().await;
        }
        self.cleanup();
    }
}
