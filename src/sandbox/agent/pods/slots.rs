//! A pod's containers when the agent first sees the pod. A new pod's are waiting to be created.
//! A pod the agent ran before it restarted (the sandbox resumed on the same directory) shows
//! instances whose processes no longer exist, as after a node reboot: each starts again as its
//! next instance (restartCount + 1, lastState its end, exit code 255 `Unknown` for one that was
//! running) when its restart rule allows, and otherwise stays terminated.

use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, ContainerStatus, Pod};

use super::containers::{ContainerRun, RunState, Slot};
use super::restart::{Role, Rule};

fn role_of(c: &Container, init: bool) -> Role {
    match (init, c.restart_policy.as_deref()) {
        (false, _) => Role::Main,
        (true, Some("Always")) => Role::Sidecar,
        (true, _) => Role::Init,
    }
}

fn ended(t: &ContainerStateTerminated, instance: i32, now: Timestamp) -> RunState {
    RunState::Terminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: t.reason.clone().unwrap_or_default(),
        message: t.message.clone().unwrap_or_default(),
        started_at: t.started_at.as_ref().map(|x| x.0).unwrap_or(now),
        finished_at: t.finished_at.as_ref().map(|x| x.0).unwrap_or(now),
        instance,
    }
}

/// The end of the latest instance a status shows (None: none started).
fn latest_end(cs: &ContainerStatus, now: Timestamp) -> Option<RunState> {
    let k = cs.restart_count;
    let state = cs.state.as_ref();
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        return Some(ended(t, k, now));
    }
    if let Some(r) = state.and_then(|s| s.running.as_ref()) {
        // Its process is gone with the agent that ran it.
        return Some(RunState::Terminated {
            exit_code: 255,
            signal: None,
            reason: "Unknown".into(),
            message: String::new(),
            started_at: r.started_at.as_ref().map(|x| x.0).unwrap_or(now),
            finished_at: now,
            instance: k,
        });
    }
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())?;
    Some(ended(last, k, now))
}

/// A container's state when the agent first sees its pod.
pub fn initial(
    existing: Option<&ContainerStatus>,
    rule: Rule,
    fresh: &str,
    now: Timestamp,
) -> ContainerRun {
    let new = ContainerRun::new(RunState::waiting(fresh));
    let Some(cs) = existing else { return new };
    let Some(end) = latest_end(cs, now) else {
        return new;
    };
    let code = match &end {
        RunState::Terminated { exit_code, .. } => *exit_code,
        _ => 0,
    };
    if rule.restarts(code) {
        ContainerRun {
            last: Some(end),
            restarts: cs.restart_count + 1,
            ..new
        }
    } else {
        let before = cs.restart_count - 1;
        ContainerRun {
            last: cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .filter(|_| cs.state.as_ref().is_some_and(|s| s.terminated.is_some()))
                .map(|t| ended(t, before, now)),
            restarts: cs.restart_count,
            finished: true,
            ..ContainerRun::new(end)
        }
    }
}

/// The pod's containers: init containers in spec order, then the containers.
pub fn slots(pod: &Pod, binary_for: &dyn Fn(&str) -> Option<PathBuf>, now: Timestamp) -> Vec<Slot> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    let status = pod.status.as_ref();
    let has_init = spec.init_containers.as_ref().is_some_and(|i| !i.is_empty());
    let init = spec.init_containers.iter().flatten().map(|c| (c, true));
    let main = spec.containers.iter().map(|c| (c, false));
    init.chain(main)
        .map(|(c, is_init)| {
            let role = role_of(c, is_init);
            let image = c.image.clone().unwrap_or_default();
            let binary = binary_for(&image);
            let statuses = if is_init {
                status.and_then(|s| s.init_container_statuses.as_ref())
            } else {
                status.and_then(|s| s.container_statuses.as_ref())
            };
            let existing = statuses.and_then(|l| l.iter().find(|s| s.name == c.name));
            let fresh = if is_init || has_init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            let rule = Rule::of(spec.restart_policy.as_deref(), role);
            // Only executed containers have processes to lose; simulated ones just run again.
            let run = match binary {
                Some(_) => initial(existing, rule, fresh, now),
                None => ContainerRun::new(RunState::waiting(fresh)),
            };
            Slot::new(&c.name, &image, role, binary, run)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T00:00:10Z".parse().expect("time")
    }

    fn status(v: serde_json::Value) -> ContainerStatus {
        serde_json::from_value(v).expect("status")
    }

    #[test]
    fn a_new_container_waits_to_be_created() {
        let run = initial(None, Rule::Always, "ContainerCreating", now());
        assert_eq!(
            run,
            ContainerRun::new(RunState::waiting("ContainerCreating"))
        );
        let never_started = status(
            json!({"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}),
        );
        assert_eq!(
            initial(
                Some(&never_started),
                Rule::Always,
                "ContainerCreating",
                now()
            )
            .restarts,
            0
        );
    }

    #[test]
    fn a_container_that_was_running_starts_as_its_next_instance() {
        let was = status(
            json!({"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}),
        );
        let run = initial(Some(&was), Rule::Always, "ContainerCreating", now());
        assert_eq!(run.restarts, 3);
        assert!(!run.finished);
        match run.last {
            Some(RunState::Terminated {
                exit_code: 255,
                ref reason,
                instance: 2,
                ..
            }) => assert_eq!(reason, "Unknown"),
            other => panic!("{other:?}"),
        }
        let never = initial(Some(&was), Rule::Never, "ContainerCreating", now());
        assert!(never.finished);
        assert!(matches!(
            never.state,
            RunState::Terminated {
                exit_code: 255,
                instance: 2,
                ..
            }
        ));
    }

    #[test]
    fn a_container_that_ended_for_good_stays_ended() {
        let done = status(
            json!({"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}),
        );
        let run = initial(Some(&done), Rule::OnFailure, "PodInitializing", now());
        assert!(run.succeeded());
        let looping = status(
            json!({"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}),
        );
        let run = initial(Some(&looping), Rule::OnFailure, "ContainerCreating", now());
        assert_eq!(run.restarts, 5);
        assert!(matches!(
            run.last,
            Some(RunState::Terminated {
                exit_code: 1,
                instance: 4,
                ..
            })
        ));
    }

    #[test]
    fn slots_follow_the_spec_with_roles_and_binaries() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a", "image": "sovereign"}, {"name": "side", "image": "nginx", "restartPolicy": "Always"}],
                     "containers": [{"name": "c", "image": "nginx"}]}
        }))
        .expect("pod");
        let bin = |image: &str| (image == "sovereign").then(|| PathBuf::from("/bin/sovereign"));
        let s = slots(&pod, &bin, now());
        let got: Vec<(&str, Role, bool)> = s
            .iter()
            .map(|s| (s.name.as_str(), s.role, s.binary.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Role::Init, true),
                ("side", Role::Sidecar, false),
                ("c", Role::Main, false)
            ]
        );
        assert_eq!(s[2].snapshot().state, RunState::waiting("PodInitializing"));
    }
}
