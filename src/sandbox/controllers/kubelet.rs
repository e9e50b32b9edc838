//! The kubelet of every node: gives each scheduled pod its loopback address, runs it, and writes
//! its status (phase, conditions, containerStatuses) as the real kubelet does.
//!
//! Containers of ordinary images are simulated like KWOK: running and ready at once; the
//! containers of a Job's pods (restartPolicy other than Always) then succeed. Containers of the
//! executable images run for real as child processes (`exec`): their exit codes, restarts with
//! back-off (CrashLoopBackOff) and termination drive the status. Deleting a pod gives it a
//! deletionTimestamp first; the kubelet sends SIGTERM, SIGKILL after min(grace period, 5s),
//! then deletes the pod for good.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Host;
use super::exec::{self, ContainerRun, Launch, NotStarted, PodRun, RunState, Stop};
use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "kubelet";
/// The sandbox never waits longer than this for a process to stop after SIGTERM.
const MAX_GRACE_SECONDS: u64 = 5;
/// A simulated container of a Job's pod runs this long before it succeeds.
const SIMULATED_JOB_SECONDS: f64 = 1.0;

pub fn pass(c: &Arc<Cluster>, host: &Arc<Host>) -> bool {
    let mut changed = nodes(c, host);
    let pods = o::list(c, "", "pods");
    let live: HashSet<String> = pods.iter().map(|p| meta::uid(p).to_string()).collect();
    // Pods deleted for good while they still had processes (force deletion): stop them.
    let gone: Vec<String> = host.processes.with(|runs| {
        runs.keys()
            .filter(|uid| !live.contains(*uid))
            .cloned()
            .collect()
    });
    for uid in gone {
        stop_pod(host, &uid, Stop::Kill);
        if host
            .processes
            .with(|runs| runs.get(&uid).is_some_and(PodRun::finished))
        {
            cleanup(c, host, &uid, None);
        }
    }
    for pod in &pods {
        if o::str_at(pod, "/spec/nodeName").is_empty() {
            continue;
        }
        changed |= sync(c, host, pod);
    }
    changed
}

/// Give every node a loopback InternalIP (after its own addresses) so pods have a hostIP the
/// host can reach and NodePorts can be served on.
fn nodes(c: &Cluster, host: &Host) -> bool {
    let mut changed = false;
    for n in o::list(c, "", "nodes") {
        let addrs = n
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if addrs.iter().any(|a| {
            o::str_at(a, "/type") == "InternalIP" && host.net.contains(o::str_at(a, "/address"))
        }) {
            continue;
        }
        let ip = host.net.node_ip(meta::name(&n)).to_string();
        let mut addrs = addrs;
        let at = addrs
            .iter()
            .rposition(|a| o::str_at(a, "/type") == "InternalIP")
            .map(|i| i + 1)
            .unwrap_or(0);
        addrs.insert(at, json!({"type": "InternalIP", "address": ip}));
        changed |= o::update_status(c, MANAGER, "", "nodes", &n, |x| {
            x["status"]["addresses"] = json!(addrs);
        })
        .is_ok();
    }
    changed
}

/// The node's loopback address.
fn host_ip(c: &Cluster, host: &Host, node: &str) -> String {
    o::get(c, "", "nodes", "", node)
        .and_then(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|a| {
                            o::str_at(a, "/type") == "InternalIP"
                                && host.net.contains(o::str_at(a, "/address"))
                        })
                        .map(|a| o::str_at(a, "/address").to_string())
                })
        })
        .unwrap_or_else(|| host.net.node_ip(node).to_string())
}

fn executable(host: &Host, pod: &Value) -> bool {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| host.exec.binary_for(o::str_at(c, "/image")).is_some())
        })
}

fn terminal(pod: &Value) -> bool {
    matches!(o::phase(pod), "Succeeded" | "Failed")
}

fn stop_pod(host: &Host, uid: &str, stop: Stop) {
    host.processes.with(|runs| {
        if let Some(run) = runs.get_mut(uid) {
            if !run.terminating || stop == Stop::Kill {
                let _ = run.stop.send(stop);
            }
            run.terminating = true;
        }
    });
}

/// Forget a pod: its processes (already stopped), address, logs and directory.
fn cleanup(c: &Cluster, host: &Host, uid: &str, pod: Option<&Value>) {
    let run = host.processes.with(|runs| runs.remove(uid));
    let (ns, name) = match (pod, &run) {
        (Some(p), _) => (meta::namespace(p).to_string(), meta::name(p).to_string()),
        (None, Some(r)) => (r.namespace.clone(), r.name.clone()),
        (None, None) => (String::new(), String::new()),
    };
    host.net.release_pod(uid);
    c.log_files
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(n, p, _), _| !(*n == ns && *p == name));
    let dir = host.pod_dir(uid);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pod = name, error = %e, "cannot remove the pod's directory");
    }
}

fn sync(c: &Arc<Cluster>, host: &Arc<Host>, pod: &Arc<Value>) -> bool {
    let uid = meta::uid(pod).to_string();
    let tracked = host.processes.with(|runs| runs.contains_key(&uid));
    if meta::is_deleting(pod) {
        if tracked {
            let grace = o::i64_at(pod, "/metadata/deletionGracePeriodSeconds")
                .unwrap_or(30)
                .clamp(0, MAX_GRACE_SECONDS as i64) as u64;
            stop_pod(host, &uid, Stop::Term(grace));
            if !host
                .processes
                .with(|runs| runs.get(&uid).is_some_and(PodRun::finished))
            {
                return false;
            }
        }
        cleanup(c, host, &uid, Some(pod));
        return o::delete(c, "", "pods", pod, Some(0)).is_ok();
    }
    let exec = executable(host, pod);
    if terminal(pod) && (!exec || !tracked) {
        return false;
    }
    let existing_ip = o::str_at(pod, "/status/podIP");
    if !existing_ip.is_empty() {
        host.net.adopt_pod(&uid, existing_ip);
    }
    let Some(pod_ip) = host.net.pod_ip(&uid) else {
        tracing::warn!(
            pod = meta::name(pod),
            "the cluster's pod addresses are exhausted"
        );
        return false;
    };
    let node_ip = host_ip(c, host, o::str_at(pod, "/spec/nodeName"));
    let mut waiting: Option<NotStarted> = None;
    if exec && !tracked {
        // The address must be in the status before the process starts: `status.podIP` env.
        if existing_ip.is_empty() {
            let ip = pod_ip.to_string();
            let nip = node_ip.clone();
            let _ = o::update_status(c, MANAGER, "", "pods", pod, |x| {
                x["status"]["podIP"] = json!(ip);
                x["status"]["podIPs"] = json!([{"ip": ip}]);
                x["status"]["hostIP"] = json!(nip);
                x["status"]["hostIPs"] = json!([{"ip": nip}]);
            });
            return true;
        }
        match start(c, host, pod) {
            Ok(()) => {}
            Err(w) => waiting = Some(w),
        }
    }
    if exec {
        probe(host, &uid, &pod_ip.to_string(), pod);
    }
    write_status(
        c,
        host,
        pod,
        &pod_ip.to_string(),
        &node_ip,
        waiting.as_ref(),
    )
}

/// Start the pod's executable containers (all of them, or none while one cannot start).
fn start(c: &Arc<Cluster>, host: &Arc<Host>, pod: &Value) -> Result<(), NotStarted> {
    let uid = meta::uid(pod).to_string();
    let pod_dir = host.pod_dir(&uid);
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut launches: Vec<Launch> = Vec::new();
    for ctr in &containers {
        if let Some(binary) = host.exec.binary_for(o::str_at(ctr, "/image")) {
            launches.push(exec::launch(c, pod, ctr, &binary, &pod_dir, host.api_addr)?);
        }
    }
    let logs = pod_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| NotStarted {
        reason: "ContainerCreating",
        message: format!("cannot create {}: {e}", logs.display()),
    })?;
    let runs: Vec<ContainerRun> = launches
        .iter()
        .map(|l| ContainerRun {
            name: container_name(l),
            state: RunState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            ready: false,
            started: false,
        })
        .collect();
    let runs = Arc::new(Mutex::new(runs));
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let ns = meta::namespace(pod).to_string();
    let name = meta::name(pod).to_string();
    let policy = o::str_at(pod, "/spec/restartPolicy").to_string();
    let mut tasks = Vec::new();
    for (i, l) in launches.into_iter().enumerate() {
        c.log_files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (ns.clone(), name.clone(), container_name(&l)),
                l.log.clone(),
            );
        tasks.push(tokio::spawn(supervise(Supervised {
            cluster: Arc::downgrade(c),
            host: host.clone(),
            uid: uid.clone(),
            namespace: ns.clone(),
            name: name.clone(),
            index: i,
            launch: l,
            policy: policy.clone(),
            stop: stop_rx.clone(),
            runs: runs.clone(),
        })));
    }
    host.processes.with(|all| {
        all.insert(
            uid,
            PodRun {
                namespace: ns,
                name,
                stop,
                containers: runs,
                tasks,
                terminating: false,
            },
        )
    });
    Ok(())
}

fn container_name(l: &Launch) -> String {
    l.log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Readiness of running processes: a tcpSocket or httpGet probe's port must accept connections.
fn probe(host: &Host, uid: &str, pod_ip: &str, pod: &Value) {
    let Some(runs) = host
        .processes
        .with(|r| r.get(uid).map(|r| r.containers.clone()))
    else {
        return;
    };
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    for run in runs.iter_mut() {
        if !matches!(run.state, RunState::Running { .. }) {
            run.ready = false;
            continue;
        }
        let Some(ctr) = containers
            .iter()
            .find(|c| o::str_at(c, "/name") == run.name)
        else {
            continue;
        };
        let port = ctr
            .pointer("/readinessProbe/tcpSocket/port")
            .or_else(|| ctr.pointer("/readinessProbe/httpGet/port"));
        run.ready = match port {
            None => true,
            Some(p) => {
                let port = match p {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => {
                        super::endpoints::resolve_target_port(&json!({"targetPort": s}), pod)
                    }
                    _ => None,
                };
                port.and_then(|p| format!("{pod_ip}:{p}").parse::<std::net::SocketAddr>().ok())
                    .is_some_and(|a| {
                        std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
                    })
            }
        };
    }
}

fn image_id(image: &str) -> String {
    let digest = hex::encode(Sha256::digest(image.as_bytes()));
    format!("{}@sha256:{digest}", exec::repository(image))
}

fn container_id(uid: &str, name: &str, restarts: i64) -> String {
    let digest = hex::encode(Sha256::digest(
        format!("{uid}/{name}/{restarts}").as_bytes(),
    ));
    format!("containerd://{digest}")
}

fn state_json(s: &RunState, container_id: &str) -> Value {
    match s {
        RunState::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            json!({"waiting": w})
        }
        RunState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
        RunState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => {
            let mut t = json!({"exitCode": exit_code, "reason": reason, "startedAt": started_at,
                               "finishedAt": finished_at, "containerID": container_id});
            if let Some(s) = signal {
                t["signal"] = json!(s);
            }
            if !message.is_empty() {
                t["message"] = json!(message);
            }
            json!({"terminated": t})
        }
    }
}

/// Compute the pod's status from what runs and write it when it changed.
fn write_status(
    c: &Cluster,
    host: &Host,
    pod: &Value,
    pod_ip: &str,
    node_ip: &str,
    waiting: Option<&NotStarted>,
) -> bool {
    let uid = meta::uid(pod);
    let runs = host
        .processes
        .with(|r| r.get(uid).map(PodRun::snapshot))
        .unwrap_or_default();
    let start_time = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(meta::now);
    let policy = o::str_at(pod, "/spec/restartPolicy");
    let is_job = o::controller_kind(pod) == Some("Job") && policy != "Always";
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let executed: Vec<bool> = containers
        .iter()
        .map(|ctr| host.exec.binary_for(o::str_at(ctr, "/image")).is_some())
        .collect();
    let any_exec = executed.iter().any(|x| *x);
    // Simulated Job containers finish after a short run; so do the simulated containers of an
    // executed pod whose processes all finished for good.
    let exec_done = any_exec
        && !runs.is_empty()
        && runs
            .iter()
            .all(|r| matches!(r.state, RunState::Terminated { .. }))
        && runs.iter().all(|r| {
            policy == "Never"
                || (policy == "OnFailure"
                    && matches!(r.state, RunState::Terminated { exit_code: 0, .. }))
        });
    let sim_done = if any_exec {
        exec_done
    } else {
        is_job && meta::age_seconds(&start_time).is_some_and(|a| a >= SIMULATED_JOB_SECONDS)
    };
    let now = meta::now();
    let mut statuses = Vec::new();
    let mut all_ready = true;
    let mut all_ok = true;
    let mut any_started = false;
    for (ctr, exe) in containers.iter().zip(&executed) {
        let name = o::str_at(ctr, "/name");
        let image = o::str_at(ctr, "/image");
        let run = runs.iter().find(|r| r.name == name).cloned();
        let run = match (exe, run) {
            (true, Some(r)) => r,
            (true, None) => ContainerRun {
                name: name.to_string(),
                state: RunState::Waiting {
                    reason: waiting
                        .map(|w| w.reason.to_string())
                        .unwrap_or_else(|| "ContainerCreating".into()),
                    message: waiting.map(|w| w.message.clone()).unwrap_or_default(),
                },
                last: None,
                restarts: 0,
                ready: false,
                started: false,
            },
            (false, _) if sim_done => ContainerRun {
                name: name.to_string(),
                state: RunState::Terminated {
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".into(),
                    message: String::new(),
                    started_at: start_time.clone(),
                    finished_at: now.clone(),
                },
                last: None,
                restarts: 0,
                ready: false,
                started: false,
            },
            (false, _) => ContainerRun {
                name: name.to_string(),
                state: RunState::Running {
                    started_at: start_time.clone(),
                },
                last: None,
                restarts: 0,
                ready: true,
                started: true,
            },
        };
        all_ready &= run.ready;
        any_started |= run.started || run.restarts > 0;
        if let RunState::Terminated { exit_code, .. } = &run.state {
            all_ok &= *exit_code == 0;
        }
        let cid = container_id(uid, name, run.restarts);
        let mut s = json!({
            "name": name, "image": image, "imageID": image_id(image),
            "ready": run.ready, "started": run.started, "restartCount": run.restarts,
            "state": state_json(&run.state, &cid),
            "lastState": run.last.as_ref().map(|l| state_json(l, &container_id(uid, name, run.restarts - 1))).unwrap_or(json!({})),
        });
        if !matches!(run.state, RunState::Waiting { .. }) || run.restarts > 0 {
            s["containerID"] = json!(cid);
        }
        statuses.push(s);
    }
    let phase = if sim_done {
        if all_ok { "Succeeded" } else { "Failed" }
    } else if any_started {
        "Running"
    } else {
        "Pending"
    };
    let mut holder = json!({"status": pod.get("status").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}))});
    let finished = matches!(phase, "Succeeded" | "Failed");
    let ready = all_ready && phase == "Running";
    let (r_status, r_reason) = if finished {
        ("False", "PodCompleted")
    } else if ready {
        ("True", "")
    } else {
        ("False", "ContainersNotReady")
    };
    let not_ready: Vec<&str> = statuses
        .iter()
        .filter(|s| s["ready"] != json!(true))
        .filter_map(|s| s["name"].as_str())
        .collect();
    let msg = if r_reason == "ContainersNotReady" {
        format!("containers with unready status: [{}]", not_ready.join(" "))
    } else {
        String::new()
    };
    o::set_condition(
        &mut holder,
        "PodReadyToStartContainers",
        if finished { "False" } else { "True" },
        "",
        "",
    );
    o::set_condition(
        &mut holder,
        "Initialized",
        "True",
        if finished { "PodCompleted" } else { "" },
        "",
    );
    o::set_condition(&mut holder, "Ready", r_status, r_reason, &msg);
    o::set_condition(&mut holder, "ContainersReady", r_status, r_reason, &msg);
    o::set_condition(&mut holder, "PodScheduled", "True", "", "");
    if let Some(cs) = holder
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in cs.iter_mut() {
            if let Some(m) = c.as_object_mut() {
                m.retain(|k, v| !(matches!(k.as_str(), "reason" | "message") && v == ""));
                m.entry("lastProbeTime").or_insert(Value::Null);
            }
        }
        let order = |t: &str| match t {
            "PodReadyToStartContainers" => 0,
            "Initialized" => 1,
            "Ready" => 2,
            "ContainersReady" => 3,
            "PodScheduled" => 4,
            _ => 5,
        };
        cs.sort_by_key(|c| order(c.get("type").and_then(Value::as_str).unwrap_or_default()));
    }
    let st = &mut holder["status"];
    st["phase"] = json!(phase);
    st["hostIP"] = json!(node_ip);
    st["hostIPs"] = json!([{"ip": node_ip}]);
    st["podIP"] = json!(pod_ip);
    st["podIPs"] = json!([{"ip": pod_ip}]);
    st["startTime"] = json!(start_time);
    st["containerStatuses"] = json!(statuses);
    if st.get("qosClass").is_none() {
        st["qosClass"] = json!("BestEffort");
    }
    if let Some(inits) = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
    {
        let s: Vec<Value> = inits
            .iter()
            .map(|ctr| {
                let name = o::str_at(ctr, "/name");
                let image = o::str_at(ctr, "/image");
                let cid = container_id(uid, name, 0);
                json!({"name": name, "image": image, "imageID": image_id(image), "ready": true,
                       "started": false, "restartCount": 0, "containerID": cid,
                       "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": start_time,
                                                "finishedAt": start_time, "containerID": cid}}})
            })
            .collect();
        st["initContainerStatuses"] = json!(s);
    }
    if finished && let Some(m) = st.as_object_mut() {
        m.remove("podIPs");
    }
    let status = holder["status"].take();
    if pod.get("status") == Some(&status) {
        return false;
    }
    match o::update_status(c, MANAGER, "", "pods", pod, |x| {
        x["status"] = status;
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("kubelet", pod, &e);
            false
        }
    }
}

struct Supervised {
    cluster: Weak<Cluster>,
    host: Arc<Host>,
    uid: String,
    namespace: String,
    name: String,
    index: usize,
    launch: Launch,
    policy: String,
    stop: watch::Receiver<Stop>,
    runs: Arc<Mutex<Vec<ContainerRun>>>,
}

impl Supervised {
    fn update(&self, f: impl FnOnce(&mut ContainerRun)) {
        {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = runs.get_mut(self.index) {
                f(r);
            }
        }
        // Publish at once rather than at the kubelet's next pass.
        if let Some(c) = self.cluster.upgrade()
            && let Some(pod) = o::get(&c, "", "pods", &self.namespace, &self.name)
            && meta::uid(&pod) == self.uid
        {
            let pod_ip = o::str_at(&pod, "/status/podIP").to_string();
            let node_ip = o::str_at(&pod, "/status/hostIP").to_string();
            write_status(&c, &self.host, &pod, &pod_ip, &node_ip, None);
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() != Stop::Run
    }
}

fn spawn(l: &Launch) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&l.log)?;
    let err = log.try_clone()?;
    let mut cmd = tokio::process::Command::new(&l.program);
    cmd.args(&l.args)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&l.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group: a Ctrl-C on the sandbox's terminal is the sandbox's to handle.
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Run one container: start, wait, restart per restartPolicy with back-off, stop when told.
async fn supervise(mut s: Supervised) {
    loop {
        if s.stopping() {
            return;
        }
        if let Some(dir) = s.launch.cwd.parent().filter(|_| !s.launch.cwd.exists()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let started_at = meta::now();
        let mut child = match spawn(&s.launch) {
            Ok(c) => c,
            Err(e) => {
                let message = format!("failed to start {}: {e}", s.launch.program.display());
                tracing::warn!(pod = s.name, message, "container cannot start");
                s.update(|r| {
                    r.state = RunState::Terminated {
                        exit_code: 128,
                        signal: None,
                        reason: "StartError".into(),
                        message,
                        started_at: started_at.clone(),
                        finished_at: meta::now(),
                    };
                    r.ready = false;
                });
                if !restart(&mut s, 128).await {
                    return;
                }
                continue;
            }
        };
        s.update(|r| {
            r.state = RunState::Running {
                started_at: started_at.clone(),
            };
            r.started = true;
            r.ready = false;
        });
        let status = tokio::select! {
            st = child.wait() => st,
            _ = wait_stop(&mut s.stop) => {
                let stop = *s.stop.borrow();
                match stop {
                    Stop::Term(grace) => {
                        if let Some(pid) = child.id() {
                            exec::terminate(pid);
                        }
                        match tokio::time::timeout(Duration::from_secs(grace), child.wait()).await {
                            Ok(st) => st,
                            Err(_) => {
                                let _ = child.start_kill();
                                child.wait().await
                            }
                        }
                    }
                    _ => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                }
            }
        };
        let (code, signal) = match status {
            Ok(st) => {
                use std::os::unix::process::ExitStatusExt;
                match (st.code(), st.signal()) {
                    (Some(c), _) => (i64::from(c), None),
                    (None, Some(sig)) => (128 + i64::from(sig), Some(i64::from(sig))),
                    (None, None) => (255, None),
                }
            }
            Err(_) => (255, None),
        };
        let finished_at = meta::now();
        s.update(|r| {
            r.state = RunState::Terminated {
                exit_code: code,
                signal,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: String::new(),
                started_at: started_at.clone(),
                finished_at,
            };
            r.ready = false;
        });
        if s.stopping() || !restart(&mut s, code).await {
            return;
        }
    }
}

async fn wait_stop(stop: &mut watch::Receiver<Stop>) {
    loop {
        if *stop.borrow_and_update() != Stop::Run {
            return;
        }
        if stop.changed().await.is_err() {
            // The pod's record is gone: nothing will tell this container to stop; kill it.
            return;
        }
    }
}

/// After an exit: whether to start again (after the back-off), per restartPolicy.
async fn restart(s: &mut Supervised, code: i64) -> bool {
    let again = match s.policy.as_str() {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    };
    if !again {
        return false;
    }
    let restarts = s
        .runs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(s.index)
        .map(|r| r.restarts)
        .unwrap_or(0);
    let delay = exec::back_off(restarts);
    let message = format!(
        "back-off {}s restarting failed container={} pod={}_{}({})",
        delay.as_secs(),
        container_name(&s.launch),
        s.name,
        s.namespace,
        s.uid
    );
    s.update(|r| {
        let last = std::mem::replace(
            &mut r.state,
            RunState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message,
            },
        );
        r.last = Some(last);
        r.restarts += 1;
        r.ready = false;
    });
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = wait_stop(&mut s.stop) => false,
    }
}
