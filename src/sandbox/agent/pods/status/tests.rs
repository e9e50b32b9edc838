use super::*;
use serde_json::json;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("time")
}

fn pod(spec: serde_json::Value, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": spec, "status": status,
    }))
    .expect("pod")
}

fn main(name: &str, run: ContainerRun) -> Observed {
    Observed {
        name: name.into(),
        image: "ghcr.io/x/sovereign:1".into(),
        role: Role::Main,
        run,
    }
}

fn running(ready: bool) -> ContainerRun {
    ContainerRun {
        ready,
        started: true,
        ..ContainerRun::new(RunState::Running { started_at: t(1) })
    }
}

fn ended(code: i32, instance: i32) -> RunState {
    RunState::Terminated {
        exit_code: code,
        signal: None,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: String::new(),
        started_at: t(1),
        finished_at: t(2),
        instance,
    }
}

fn status_of(p: &Pod, containers: &[Observed], terminal: bool) -> PodStatus {
    compute(&View {
        pod: p,
        containers,
        pod_ip: Some("127.16.1.1"),
        host_ip: "127.16.200.2",
        start_time: t(0),
        sandbox_ready: true,
        terminal,
        now: t(10),
    })
}

fn cond<'a>(s: &'a PodStatus, type_: &str) -> &'a PodCondition {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .expect("condition")
}

fn brief(c: &PodCondition) -> (&str, &str, &str) {
    (
        c.status.as_str(),
        c.reason.as_deref().unwrap_or_default(),
        c.message.as_deref().unwrap_or_default(),
    )
}

#[test]
fn a_ready_container_makes_a_running_ready_pod() {
    let p = pod(json!({"containers": [{"name": "c"}]}), json!({}));
    let s = status_of(&p, &[main("c", running(true))], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    for c in OWNED {
        assert_eq!(brief(cond(&s, c)), ("True", "", ""), "{c}");
    }
    let cs = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(cs.container_id, Some(container_id("u-1", "c", 0)));
    assert!(cs.image_id.starts_with("ghcr.io/x/sovereign@sha256:"));
    assert_eq!(
        (cs.ready, cs.started, cs.restart_count),
        (true, Some(true), 0)
    );
    assert_eq!(
        s.pod_ips,
        Some(vec![PodIP {
            ip: "127.16.1.1".into()
        }])
    );
    assert!(s.init_container_statuses.is_none());
}

#[test]
fn a_container_being_created_is_pending_without_an_id() {
    let p = pod(
        json!({"containers": [{"name": "c"}, {"name": "d"}]}),
        json!({}),
    );
    let waiting = ContainerRun::new(RunState::waiting("ContainerCreating"));
    let s = status_of(&p, &[main("c", waiting.clone()), main("d", waiting)], false);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let cs = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(cs.container_id, None);
    assert_eq!(
        brief(cond(&s, "ContainersReady")),
        (
            "False",
            "ContainersNotReady",
            "containers with unready status: [c d]"
        )
    );
    assert_eq!(brief(cond(&s, "Ready")), brief(cond(&s, "ContainersReady")));
}

#[test]
fn exits_follow_the_restart_policy() {
    let never = pod(
        json!({"restartPolicy": "Never", "containers": [{"name": "c"}]}),
        json!({}),
    );
    let done = ContainerRun {
        finished: true,
        ..ContainerRun::new(ended(3, 0))
    };
    let s = status_of(&never, &[main("c", done)], false);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(
        brief(cond(&s, "ContainersReady")),
        ("False", "PodFailed", "")
    );
    let term = s.container_statuses.as_ref().expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));
    assert_eq!(term.container_id, Some(container_id("u-1", "c", 0)));

    let on_failure = pod(
        json!({"restartPolicy": "OnFailure", "containers": [{"name": "c"}]}),
        json!({}),
    );
    let looping = ContainerRun {
        last: Some(ended(2, 1)),
        restarts: 1,
        ..ContainerRun::new(RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container=c pod=p_ns(u-1)".into(),
        })
    };
    let s = status_of(&on_failure, &[main("c", looping)], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let cs = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(cs.restart_count, 1);
    assert_eq!(cs.container_id, Some(container_id("u-1", "c", 1)));
    let last = cs
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .expect("last");
    assert_eq!(last.exit_code, 2);
    let w = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .expect("waiting");
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
}

#[test]
fn init_containers_hold_the_pod_pending_until_they_complete() {
    let p = pod(
        json!({"initContainers": [{"name": "init"}], "containers": [{"name": "c"}]}),
        json!({}),
    );
    let init = |run| Observed {
        role: Role::Init,
        ..main("init", run)
    };
    let s = status_of(
        &p,
        &[
            init(running(false)),
            main("c", ContainerRun::new(RunState::waiting("PodInitializing"))),
        ],
        false,
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(
        brief(cond(&s, "Initialized")),
        (
            "False",
            "ContainersNotInitialized",
            "containers with incomplete status: [init]"
        )
    );
    assert_eq!(s.init_container_statuses.as_ref().map(Vec::len), Some(1));
    let done = ContainerRun {
        finished: true,
        ..ContainerRun::new(ended(0, 0))
    };
    let s = status_of(&p, &[init(done), main("c", running(true))], false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(brief(cond(&s, "Initialized")), ("True", "", ""));
}

#[test]
fn completed_and_deleted_pods_reach_their_final_phase() {
    let job = pod(
        json!({"restartPolicy": "Never", "containers": [{"name": "c"}]}),
        json!({}),
    );
    let done = ContainerRun {
        finished: true,
        ..ContainerRun::new(ended(0, 0))
    };
    let s = status_of(&job, &[main("c", done)], false);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(brief(cond(&s, "Initialized")), ("True", "PodCompleted", ""));
    assert_eq!(brief(cond(&s, "Ready")), ("False", "PodCompleted", ""));
    let always = pod(json!({"containers": [{"name": "c"}]}), json!({}));
    let killed = ContainerRun {
        finished: true,
        ..ContainerRun::new(ended(143, 0))
    };
    assert_eq!(
        status_of(&always, &[main("c", killed.clone())], false)
            .phase
            .as_deref(),
        Some("Running")
    );
    assert_eq!(
        status_of(&always, &[main("c", killed)], true)
            .phase
            .as_deref(),
        Some("Failed")
    );
}

#[test]
fn transition_times_stay_while_a_condition_holds() {
    let p = pod(
        json!({"containers": [{"name": "c"}]}),
        json!({"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}),
    );
    let s = status_of(&p, &[main("c", running(true))], false);
    let kept = cond(&s, "Ready")
        .last_transition_time
        .as_ref()
        .map(|t| t.0.as_second());
    assert_eq!(kept, Some(1_577_836_800));
    let moved = cond(&s, "ContainersReady")
        .last_transition_time
        .as_ref()
        .map(|t| t.0);
    assert_eq!(moved, Some(t(10)));
}

#[test]
fn readiness_gates_hold_ready_back() {
    let p = pod(
        json!({"readinessGates": [{"conditionType": "example.com/lb"}], "containers": [{"name": "c"}]}),
        json!({}),
    );
    let s = status_of(&p, &[main("c", running(true))], false);
    assert_eq!(brief(cond(&s, "ContainersReady")).0, "True");
    assert_eq!(
        brief(cond(&s, "Ready")),
        (
            "False",
            "ReadinessGatesNotReady",
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
        )
    );
}

#[test]
fn a_status_read_back_from_the_api_is_what_was_written() {
    let p = pod(
        json!({"restartPolicy": "OnFailure", "containers": [{"name": "c"}]}),
        json!({"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}),
    );
    let run = ContainerRun {
        last: Some(ended(1, 0)),
        restarts: 1,
        ..running(false)
    };
    let s = status_of(&p, &[main("c", run)], false);
    // What the API server returns: JSON, with its own conditions and `lastProbeTime: null`.
    let mut v = serde_json::to_value(&s).expect("json");
    v["conditions"].as_array_mut().expect("conditions").insert(
        0,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
    );
    v["qosClass"] = json!("BestEffort");
    v["containerStatuses"][0]["volumeMounts"] = json!([]);
    let back: PodStatus = serde_json::from_value(v).expect("status");
    assert_eq!(owned(&back), owned(&s));
    assert_eq!(owned(&s).conditions.as_ref().map(Vec::len), Some(4));
}
