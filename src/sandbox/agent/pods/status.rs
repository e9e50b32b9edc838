//! A pod's status as the kubelet writes it, from what its containers do: containerStatuses and
//! initContainerStatuses (`convertToAPIContainerStatuses`), the phase (`getPhase`), and the
//! kubelet's own conditions in its order — PodReadyToStartContainers, Initialized, Ready,
//! ContainersReady (`pkg/kubelet/status/generate.go`); PodScheduled stays the scheduler's and
//! qosClass the API server's. Pure: the worker compares the result with the pod's status (what
//! `owned` projects of it) and writes only when it changed.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::containers::{ContainerRun, RunState};
use super::restart::Role;
use crate::sandbox::agent::repository;

/// The conditions the kubelet owns, in the order it writes them.
pub const OWNED: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// One container as observed.
#[derive(Clone, Debug)]
pub struct Observed {
    pub name: String,
    pub image: String,
    pub role: Role,
    pub run: ContainerRun,
}

/// Everything the status is computed from.
pub struct View<'a> {
    pub pod: &'a Pod,
    /// Init containers (in spec order), then the pod's containers.
    pub containers: &'a [Observed],
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: Timestamp,
    /// The pod's "sandbox" (address, volumes) is set up.
    pub sandbox_ready: bool,
    /// The pod is being deleted and none of its containers runs any more: its phase is final.
    pub terminal: bool,
    pub now: Timestamp,
}

pub fn image_id(image: &str) -> String {
    let digest = hex::encode(Sha256::digest(image.as_bytes()));
    format!("{}@sha256:{digest}", repository(image))
}

pub fn container_id(uid: &str, name: &str, instance: i32) -> String {
    let digest = hex::encode(Sha256::digest(
        format!("{uid}/{name}/{instance}").as_bytes(),
    ));
    format!("containerd://{digest}")
}

fn time(t: Timestamp) -> Option<Time> {
    Some(Time(t))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn state(s: &RunState, uid: &str, name: &str) -> ContainerState {
    match s {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: non_empty(reason),
                message: non_empty(message),
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(*started_at),
            }),
            ..Default::default()
        },
        RunState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
            instance,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(container_id(uid, name, *instance)),
                exit_code: *exit_code,
                signal: *signal,
                reason: non_empty(reason),
                message: non_empty(message),
                started_at: time(*started_at),
                finished_at: time(*finished_at),
            }),
            ..Default::default()
        },
    }
}

/// The containerID of the latest instance that exists (none while the first one is created).
fn latest_id(run: &ContainerRun, uid: &str, name: &str) -> Option<String> {
    match (&run.state, &run.last) {
        (RunState::Running { .. }, _) => Some(container_id(uid, name, run.restarts)),
        (RunState::Terminated { instance, .. }, _)
        | (RunState::Waiting { .. }, Some(RunState::Terminated { instance, .. })) => {
            Some(container_id(uid, name, *instance))
        }
        _ => None,
    }
}

pub fn container_status(uid: &str, o: &Observed) -> ContainerStatus {
    ContainerStatus {
        name: o.name.clone(),
        image: o.image.clone(),
        image_id: image_id(&o.image),
        container_id: latest_id(&o.run, uid, &o.name),
        state: Some(state(&o.run.state, uid, &o.name)),
        last_state: o.run.last.as_ref().map(|l| state(l, uid, &o.name)),
        // An init container is ready once it completed.
        ready: match o.role {
            Role::Init => matches!(o.run.state, RunState::Terminated { exit_code: 0, .. }),
            _ => o.run.ready,
        },
        started: Some(o.run.started),
        restart_count: o.run.restarts,
        ..Default::default()
    }
}

fn running(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.running.is_some())
}

fn terminated(cs: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    cs.state.as_ref().and_then(|s| s.terminated.as_ref())
}

fn waiting(cs: &ContainerStatus) -> bool {
    cs.state.as_ref().is_some_and(|s| s.waiting.is_some())
}

fn last_terminated(cs: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
}

/// Counts for `getPhase`.
#[derive(Default)]
struct Tally {
    pending_init: u32,
    failed_init: u32,
    pending_sidecars: u32,
    running: u32,
    waiting: u32,
    stopped: u32,
    succeeded: u32,
}

fn tally(containers: &[(Role, ContainerStatus)]) -> Tally {
    let mut t = Tally::default();
    for (role, cs) in containers {
        match role {
            Role::Init => match (terminated(cs), last_terminated(cs)) {
                _ if running(cs) => t.pending_init += 1,
                (Some(term), _) => t.failed_init += u32::from(term.exit_code != 0),
                (None, Some(last)) if waiting(cs) => {
                    t.failed_init += u32::from(last.exit_code != 0)
                }
                _ => t.pending_init += 1,
            },
            Role::Sidecar => {
                if running(cs) {
                    t.pending_sidecars += u32::from(cs.started != Some(true));
                    t.running += 1;
                } else if waiting(cs) && last_terminated(cs).is_none() {
                    t.pending_sidecars += 1;
                    t.waiting += 1;
                }
            }
            Role::Main => {
                if running(cs) {
                    t.running += 1;
                } else if let Some(term) = terminated(cs) {
                    t.stopped += 1;
                    t.succeeded += u32::from(term.exit_code == 0);
                } else if last_terminated(cs).is_some() {
                    t.stopped += 1;
                } else {
                    t.waiting += 1;
                }
            }
        }
    }
    t
}

/// The kubelet's `getPhase` (every container has a status here: none is "unknown").
pub fn phase(
    restart_policy: Option<&str>,
    containers: &[(Role, ContainerStatus)],
    terminal: bool,
) -> &'static str {
    let t = tally(containers);
    let policy = restart_policy.unwrap_or("Always");
    if t.failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if t.pending_init > 0 || t.pending_sidecars > 0 || t.waiting > 0 {
        return "Pending";
    }
    if t.running > 0 {
        return "Running";
    }
    if t.stopped == 0 {
        return "Pending";
    }
    match (terminal, policy) {
        _ if (terminal || policy != "Always") && t.stopped == t.succeeded => "Succeeded",
        (true, _) | (false, "Never") => "Failed",
        _ => "Running",
    }
}

/// Go's `%s` of a string slice: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

struct Cond {
    status: bool,
    reason: &'static str,
    message: String,
}

impl Cond {
    fn ok() -> Cond {
        Cond {
            status: true,
            reason: "",
            message: String::new(),
        }
    }

    fn not(reason: &'static str, message: String) -> Cond {
        Cond {
            status: false,
            reason,
            message,
        }
    }
}

fn initialized(containers: &[(Role, ContainerStatus)], phase: &str) -> Cond {
    if phase == "Succeeded" {
        return Cond {
            status: true,
            reason: "PodCompleted",
            message: String::new(),
        };
    }
    let started = containers
        .iter()
        .any(|(r, cs)| *r == Role::Main && (running(cs) || terminated(cs).is_some()));
    if started {
        return Cond::ok();
    }
    let incomplete: Vec<&str> = containers
        .iter()
        .filter(|(r, cs)| match r {
            Role::Sidecar => cs.started != Some(true),
            Role::Init => terminated(cs).is_none_or(|t| t.exit_code != 0),
            Role::Main => false,
        })
        .map(|(_, cs)| cs.name.as_str())
        .collect();
    if incomplete.is_empty() {
        Cond::ok()
    } else {
        let message = format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        );
        Cond::not("ContainersNotInitialized", message)
    }
}

fn containers_ready(containers: &[(Role, ContainerStatus)], phase: &str) -> Cond {
    match phase {
        "Succeeded" => return Cond::not("PodCompleted", String::new()),
        "Failed" => return Cond::not("PodFailed", String::new()),
        _ => {}
    }
    let unready: Vec<&str> = containers
        .iter()
        .filter(|(r, cs)| *r != Role::Init && !cs.ready)
        .map(|(_, cs)| cs.name.as_str())
        .collect();
    if unready.is_empty() {
        Cond::ok()
    } else {
        let message = format!("containers with unready status: {}", go_list(&unready));
        Cond::not("ContainersNotReady", message)
    }
}

/// Ready: ContainersReady, and every readiness gate's condition True.
fn ready(pod: &Pod, containers_ready: &Cond) -> Cond {
    if !containers_ready.status {
        return Cond::not(containers_ready.reason, containers_ready.message.clone());
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let gates = pod
        .spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten());
    let unmet: Vec<String> = gates
        .filter_map(|g| {
            let t = &g.condition_type;
            match conditions.and_then(|cs| cs.iter().find(|c| &c.type_ == t)) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{t}\" does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if unmet.is_empty() {
        Cond::ok()
    } else {
        Cond::not("ReadinessGatesNotReady", unmet.join(", "))
    }
}

/// A condition, keeping its lastTransitionTime while its status stays.
fn condition(pod: &Pod, type_: &str, c: Cond, now: Timestamp) -> PodCondition {
    let status = if c.status { "True" } else { "False" };
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|x| x.type_ == type_ && x.status == status))
        .and_then(|x| x.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: non_empty(c.reason),
        message: non_empty(&c.message),
        last_transition_time: Some(since),
        observed_generation: pod.metadata.generation,
        last_probe_time: None,
    }
}

/// The status the kubelet would write now.
pub fn compute(v: &View) -> PodStatus {
    let uid = v.pod.metadata.uid.as_deref().unwrap_or_default();
    let all: Vec<(Role, ContainerStatus)> = v
        .containers
        .iter()
        .map(|o| (o.role, container_status(uid, o)))
        .collect();
    let spec = v.pod.spec.as_ref();
    let phase = phase(
        spec.and_then(|s| s.restart_policy.as_deref()),
        &all,
        v.terminal,
    );
    let cr = containers_ready(&all, phase);
    let conditions = vec![
        condition(
            v.pod,
            OWNED[0],
            Cond {
                status: v.sandbox_ready,
                ..Cond::ok()
            },
            v.now,
        ),
        condition(v.pod, OWNED[1], initialized(&all, phase), v.now),
        condition(v.pod, OWNED[2], ready(v.pod, &cr), v.now),
        condition(v.pod, OWNED[3], cr, v.now),
    ];
    let has_init = spec.is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()));
    let (init, main): (Vec<_>, Vec<_>) = all.into_iter().partition(|(r, _)| *r != Role::Main);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        container_statuses: Some(main.into_iter().map(|(_, c)| c).collect()),
        init_container_statuses: has_init.then(|| init.into_iter().map(|(_, c)| c).collect()),
        host_ip: Some(v.host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: v.host_ip.to_string(),
        }]),
        pod_ip: v.pod_ip.map(String::from),
        pod_ips: v.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: time(v.start_time),
        observed_generation: v.pod.metadata.generation,
        ..Default::default()
    }
}

fn own_container(cs: &ContainerStatus) -> ContainerStatus {
    let empty =
        |s: &Option<ContainerState>| s.as_ref().is_none_or(|s| *s == ContainerState::default());
    ContainerStatus {
        name: cs.name.clone(),
        image: cs.image.clone(),
        image_id: cs.image_id.clone(),
        container_id: cs.container_id.clone(),
        state: (!empty(&cs.state)).then(|| cs.state.clone()).flatten(),
        last_state: (!empty(&cs.last_state))
            .then(|| cs.last_state.clone())
            .flatten(),
        ready: cs.ready,
        started: cs.started,
        restart_count: cs.restart_count,
        ..Default::default()
    }
}

/// The part of a status the kubelet writes, in a comparable form (its conditions only, in its
/// order; empty states as absent).
pub fn owned(s: &PodStatus) -> PodStatus {
    let mut conditions: Vec<PodCondition> = s
        .conditions
        .iter()
        .flatten()
        .filter(|c| OWNED.contains(&c.type_.as_str()))
        .map(|c| PodCondition {
            last_probe_time: None,
            ..c.clone()
        })
        .collect();
    conditions.sort_by_key(|c| OWNED.iter().position(|t| *t == c.type_));
    PodStatus {
        phase: s.phase.clone(),
        conditions: Some(conditions),
        container_statuses: s
            .container_statuses
            .as_ref()
            .map(|cs| cs.iter().map(own_container).collect()),
        init_container_statuses: s
            .init_container_statuses
            .as_ref()
            .map(|cs| cs.iter().map(own_container).collect()),
        host_ip: s.host_ip.clone(),
        host_ips: s.host_ips.clone(),
        pod_ip: s.pod_ip.clone(),
        pod_ips: s.pod_ips.clone(),
        start_time: s.start_time.clone(),
        observed_generation: s.observed_generation,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
