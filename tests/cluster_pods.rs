//! The node agent's pod runtime and kubelet API against a real control plane: each test boots
//! its own throwaway cluster (upstream kube-apiserver, controller manager and scheduler), runs
//! pods on the agent's nodes — this project's binary as real processes, other images simulated —
//! and reads the results through the real API server (`kubectl logs` included).
//!
//! Needs the control-plane binaries (`SOVEREIGN_CONTROL_PLANE_BIN`, or the built cache).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sovereign::sandbox::cluster::{Cluster, ClusterOptions};
use sovereign::sandbox::controlplane::binaries::{self, Binaries};
use sovereign::sandbox::profiles;

const IMAGE: &str = "ghcr.io/sovereign-dev/sovereign-operator:0.1.0";
const BIN: &str = "/usr/local/bin/sovereign";
const DEADLINE: Duration = Duration::from_secs(120);

/// At most two clusters at a time: each is four programs on a shared two-core machine.
static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

struct Permit;

impl Permit {
    fn take() -> Permit {
        let mut n = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= 2 {
            n = FREED.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        FREED.notify_one();
    }
}

struct Env {
    cluster: Cluster,
    client: Client,
    kubeconfig: tempfile::NamedTempFile,
    kubectl: PathBuf,
    _permit: Permit,
}

fn sovereign() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sovereign"))
}

fn bins() -> Binaries {
    binaries::locate(None, &mut |m| eprintln!("{m}")).expect("the control-plane binaries")
}

async fn start(opts: ClusterOptions, permit: Permit) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "sovereign=info".into()))
        .with_test_writer()
        .try_init();
    let bins = bins();
    let cluster = Cluster::start(opts, &bins)
        .await
        .expect("the cluster starts");
    let client = cluster.client().await.expect("client");
    let kubeconfig = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(kubeconfig.path(), cluster.kubeconfig_yaml("pods")).expect("kubeconfig");
    Env {
        cluster,
        client,
        kubeconfig,
        kubectl: bins.path("kubectl"),
        _permit: permit,
    }
}

/// A throwaway cluster of the EKS profile (three nodes).
async fn boot(name: &str) -> Env {
    let permit = tokio::task::block_in_place(Permit::take);
    let profile = profiles::by_id("eks-us-east-1", 1).expect("profile");
    start(
        ClusterOptions::temporary(name, profile, &sovereign()),
        permit,
    )
    .await
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn v<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).expect("json")
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

async fn get<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    api.get_opt(name).await.expect("get").map(|o| v(&o))
}

fn object<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("object")
}

fn pod(name: &str, spec: Value) -> Pod {
    object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
}

/// A pod of this project's image running `sovereign <args>`.
fn ours(name: &str, policy: &str, args: &[&str]) -> Pod {
    let mut command = vec![BIN];
    command.extend_from_slice(args);
    pod(
        name,
        json!({"restartPolicy": policy, "containers": [{"name": "main", "image": IMAGE, "command": command}]}),
    )
}

async fn create(api: &Api<Pod>, p: &Pod) {
    api.create(&PostParams::default(), p)
        .await
        .expect("create the pod");
}

fn phase_is(api: &Api<Pod>, name: &str, phase: &'static str) -> impl Future<Output = Value> {
    let (api, name) = (api.clone(), name.to_string());
    async move {
        until(&format!("pod {name} {phase}"), || async {
            get(&api, &name)
                .await
                .filter(|p| s(p, "/status/phase") == phase)
        })
        .await
    }
}

fn container_status(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

impl Env {
    async fn kubectl_out(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig.path())
            .args(args)
            .output()
            .await
            .expect("kubectl runs")
    }

    async fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_out(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The pod's directory on the host.
    async fn pod_dir(&self, name: &str) -> PathBuf {
        let p = get(&self.pods(), name).await.expect("the pod");
        self.cluster.host().pod_dir(s(&p, "/metadata/uid"))
    }

    async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await.expect("events");
        list.items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                let field = e
                    .regarding
                    .as_ref()
                    .and_then(|r| r.field_path.clone())
                    .unwrap_or_default();
                (
                    e.reason.clone().unwrap_or_default(),
                    e.note.clone().unwrap_or_default(),
                    field,
                )
            })
            .collect()
    }
}

/// OnFailure restarts with the kubelet's back-off: once at once, then CrashLoopBackOff.
async fn crash_loops_back_off(env: &Env) {
    let pods = env.pods();
    create(
        &pods,
        &ours("again", "OnFailure", &["plan", "--no-such-flag"]),
    )
    .await;
    let p = until("a crash loop", || async {
        get(&pods, "again")
            .await
            .filter(|p| s(container_status(p), "/state/waiting/reason") == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(s(&p, "/status/phase"), "Running");
    let cs = container_status(&p);
    assert!(cs["restartCount"].as_i64().is_some_and(|n| n >= 1), "{p}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 2);
    let uid = s(&p, "/metadata/uid");
    assert_eq!(
        s(cs, "/state/waiting/message"),
        format!("back-off 10s restarting failed container=main pod=again_default({uid})")
    );
    let backoff = format!("Back-off restarting failed container main in pod again_default({uid})");
    until("the BackOff event", || async {
        env.events("again")
            .await
            .iter()
            .any(|(r, n, _)| r == "BackOff" && *n == backoff)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_reach_the_pod_status() {
    let env = boot("exits").await;
    let pods = env.pods();
    // The product binary failing for real: a receiver without its certificates (exit 1), and a
    // command line it refuses (clap's usage error, exit 2).
    let no_certs = [
        "mover",
        "receive",
        "--listen",
        "127.0.0.1:0",
        "--root",
        "/tmp/x",
        "--certs",
        "/nonexistent",
    ];
    create(&pods, &ours("no-certs", "Never", &no_certs)).await;
    create(&pods, &ours("usage", "Never", &["plan", "--no-such-flag"])).await;
    for (name, code) in [("no-certs", 1), ("usage", 2)] {
        let p = phase_is(&pods, name, "Failed").await;
        let t = &container_status(&p)["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(code), Some("Error")),
            "{name}: {p}"
        );
        assert_eq!(container_status(&p)["restartCount"], 0);
        assert!(
            s(container_status(&p), "/containerID").starts_with("containerd://"),
            "{p}"
        );
        let ready = p["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned();
        assert_eq!(
            ready.map(|c| c["reason"].clone()),
            Some(json!("PodFailed")),
            "{p}"
        );
    }
    let logs = env.kubectl(&["logs", "usage"]).await;
    assert!(
        logs.contains("unexpected argument '--no-such-flag'"),
        "{logs}"
    );
    let events = env.events("usage").await;
    for (reason, note) in [
        (
            "Pulled",
            format!("Container image \"{IMAGE}\" already present on machine"),
        ),
        ("Created", "Created container: main".to_string()),
        ("Started", "Started container main".to_string()),
    ] {
        assert!(
            events
                .iter()
                .any(|(r, n, f)| r == reason && *n == note && f == "spec.containers{main}"),
            "{reason} in {events:?}"
        );
    }
    crash_loops_back_off(&env).await;
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_reach_kubectl_through_the_api_server() {
    let env = boot("logs").await;
    let pods = env.pods();
    create(&pods, &ours("help", "Never", &["--help"])).await;
    create(&pods, &ours("version", "Always", &["--version"])).await;
    phase_is(&pods, "help", "Succeeded").await;
    let all = env.kubectl(&["logs", "help"]).await;
    assert!(all.contains("Usage: sovereign"), "{all}");
    let lines: Vec<&str> = all.lines().collect();
    let tail = env.kubectl(&["logs", "help", "--tail=3"]).await;
    assert_eq!(tail.lines().collect::<Vec<_>>(), lines[lines.len() - 3..]);
    let stamped = env.kubectl(&["logs", "help", "--timestamps"]).await;
    for (line, plain) in stamped.lines().zip(&lines) {
        let (time, rest) = line.split_once(' ').expect("a timestamp");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line}");
        assert_eq!(rest, *plain);
    }
    let limited = env.kubectl(&["logs", "help", "--limit-bytes=10"]).await;
    assert_eq!(limited.as_bytes(), &all.as_bytes()[..10]);
    let followed = env.kubectl(&["logs", "help", "-f"]).await;
    assert_eq!(
        followed, all,
        "following an ended container returns what it wrote"
    );
    // Restarted: the previous instance's log is still there.
    until("a restart", || async {
        get(&pods, "version").await.filter(|p| {
            container_status(p)["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
    })
    .await;
    let version = format!("sovereign {}\n", env!("CARGO_PKG_VERSION"));
    // (An instance that has just started may not have written its line yet.)
    until("both instances' logs", || async {
        let previous = env.kubectl(&["logs", "version", "--previous"]).await;
        let current = env.kubectl(&["logs", "version"]).await;
        (previous == version && current == version).then_some(())
    })
    .await;
    let never = env.kubectl_out(&["logs", "help", "--previous"]).await;
    let err = String::from_utf8_lossy(&never.stderr);
    assert!(
        !never.status.success()
            && err.contains("previous terminated container \"main\" in pod \"help\" not found"),
        "{err}"
    );
    // A simulated container wrote nothing.
    create(
        &pods,
        &pod(
            "nginx",
            json!({"containers": [{"name": "web", "image": "nginx:1.27"}]}),
        ),
    )
    .await;
    phase_is(&pods, "nginx", "Running").await;
    assert_eq!(env.kubectl(&["logs", "nginx"]).await, "");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_streams_until_the_container_stops() {
    let env = boot("follow").await;
    let pods = env.pods();
    create(&pods, &receiver("follow", json!({}))).await;
    until("the receiver ready", || async {
        get(&pods, "follow").await.filter(ready)
    })
    .await;
    let since = jiff::Timestamp::now();
    let mut follow = tokio::process::Command::new(&env.kubectl)
        .arg("--kubeconfig")
        .arg(env.kubeconfig.path())
        .args(["logs", "-f", "--timestamps", "follow", "-c", "receiver"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen: Vec<String> = Vec::new();
    // The readiness probe's connections are logged every second: a line written after -f
    // started arrives while the container runs.
    let streamed = |l: &str| {
        l.split_once(' ')
            .and_then(|(t, _)| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t > since)
    };
    tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(l)) = lines.next_line().await {
            let fresh = streamed(&l);
            seen.push(l);
            if fresh {
                return;
            }
        }
    })
    .await
    .expect("a line written after -f started");
    assert!(
        seen.iter().any(|l| l.contains("receiver listening")),
        "{seen:?}"
    );
    assert!(
        follow.try_wait().expect("kubectl").is_none(),
        "-f follows while the container runs"
    );
    pods.delete("follow", &DeleteParams::default())
        .await
        .expect("delete");
    // Once the container stopped, -f ends.
    tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(_)) = lines.next_line().await {}
    })
    .await
    .expect("-f ends");
    let status = tokio::time::timeout(DEADLINE, follow.wait())
        .await
        .expect("kubectl exits")
        .expect("kubectl");
    assert!(status.success(), "{status}");
    env.cluster.shutdown().await;
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The mover's receiver: its certificates written by an init container into an emptyDir, then
/// listening on the pod's address, ready once its port accepts.
fn receiver(name: &str, extra: Value) -> Pod {
    let mut spec = json!({
        "volumes": [{"name": "certs", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
        "initContainers": [{"name": "certs", "image": IMAGE, "command": [BIN, "mover", "certs", "--out", "/certs"],
                            "volumeMounts": [{"name": "certs", "mountPath": "/certs"}]}],
        "containers": [{"name": "receiver", "image": IMAGE,
            "command": [BIN, "mover", "receive", "--listen", "$(POD_IP):9000", "--root", "/data", "--certs", "/certs"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"name": "mover", "containerPort": 9000}],
            "readinessProbe": {"tcpSocket": {"port": "mover"}, "periodSeconds": 1},
            "volumeMounts": [{"name": "certs", "mountPath": "/certs"}, {"name": "data", "mountPath": "/data"}]}]
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    pod(name, spec)
}

/// Processes whose command line names the pod (its directory is in every argument list).
fn processes_of(uid: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(uid))
                .unwrap_or(false)
        })
        .collect()
}

/// Deletes the pod and watches what the kubelet writes until it is gone; returns the last exit
/// code its container's status showed.
async fn delete_and_watch(pods: &Api<Pod>, name: &str) -> Option<i64> {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(pods.clone(), cfg).default_backoff().boxed();
    pods.delete(name, &DeleteParams::default())
        .await
        .expect("delete");
    let mut last_exit = None;
    let gone = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                    let p = v(&p);
                    if let Some(code) =
                        container_status(&p)["state"]["terminated"]["exitCode"].as_i64()
                    {
                        last_exit = Some(code);
                    }
                }
                Ok(watcher::Event::Delete(_)) => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(gone, Ok(true), "the pod {name} is deleted for good");
    last_exit
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_deletion_stops_the_processes() {
    let env = boot("delete").await;
    let pods = env.pods();
    create(
        &pods,
        &receiver("mover", json!({"terminationGracePeriodSeconds": 60})),
    )
    .await;
    let p = until("the receiver ready", || async {
        get(&pods, "mover").await.filter(ready)
    })
    .await;
    let uid = s(&p, "/metadata/uid").to_string();
    let init = &p["status"]["initContainerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (init["exitCode"].as_i64(), init["reason"].as_str()),
        (Some(0), Some("Completed")),
        "{p}"
    );
    let dir = env.cluster.host().pod_dir(&uid);
    assert!(
        dir.join("volumes/certs/receiver.crt").is_file(),
        "the init container wrote into the emptyDir"
    );
    let running = processes_of(&uid);
    assert!(
        running.len() >= 2,
        "the supervisor and the receiver run: {running:?}"
    );
    let t = Instant::now();
    let last_exit = delete_and_watch(&pods, "mover").await;
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "SIGTERM ended it well within its 60 s grace: {:?}",
        t.elapsed()
    );
    assert!(
        last_exit.is_some(),
        "the final status recorded the container's end"
    );
    let killing = env.events("mover").await;
    assert!(
        killing
            .iter()
            .any(|(r, n, _)| r == "Killing" && n == "Stopping container receiver"),
        "{killing:?}"
    );
    until("every process reaped", || async {
        processes_of(&uid).is_empty().then_some(())
    })
    .await;
    for pid in running {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is gone"
        );
    }
    assert!(!dir.exists(), "the pod's directory is removed");
    forced_deletion_kills_the_processes(&env).await;
    env.cluster.shutdown().await;
}

/// A pod deleted for good at once (grace 0) while its processes run: the agent kills them.
async fn forced_deletion_kills_the_processes(env: &Env) {
    let pods = env.pods();
    create(&pods, &receiver("forced", json!({}))).await;
    let p = until("the receiver ready", || async {
        get(&pods, "forced").await.filter(ready)
    })
    .await;
    let uid = s(&p, "/metadata/uid").to_string();
    assert!(!processes_of(&uid).is_empty());
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete("forced", &now).await.expect("delete");
    until("the forced pod's processes killed", || async {
        processes_of(&uid).is_empty().then_some(())
    })
    .await;
    assert!(get(&pods, "forced").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_and_host_paths_back_the_volumes() {
    let env = boot("claims").await;
    let data = tempfile::tempdir().expect("tmp");
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(env.client.clone());
    let pv = json!({"metadata": {"name": "manual"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "hostPath": {"path": data.path().join("pv").display().to_string()}}});
    pvs.create(&PostParams::default(), &object(pv))
        .await
        .expect("pv");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(env.client.clone(), "default");
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "storageClassName": "", "volumeName": "manual", "resources": {"requests": {"storage": "1Gi"}}}});
    pvcs.create(&PostParams::default(), &object(pvc))
        .await
        .expect("pvc");
    std::fs::create_dir_all(data.path().join("pv")).expect("the volume's directory");
    let host = data.path().join("host");
    let p = pod(
        "writer",
        json!({"restartPolicy": "Never",
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "host", "hostPath": {"path": host.display().to_string(), "type": "DirectoryOrCreate"}}],
            "initContainers": [{"name": "host", "image": IMAGE, "command": [BIN, "mover", "certs", "--out", "/mnt/host/certs"],
                                "volumeMounts": [{"name": "host", "mountPath": "/mnt/host"}]}],
            "containers": [{"name": "claim", "image": IMAGE, "command": [BIN, "mover", "certs", "--out", "/var/data/certs"],
                            "volumeMounts": [{"name": "data", "mountPath": "/var/data"}]}]}),
    );
    create(&env.pods(), &p).await;
    phase_is(&env.pods(), "writer", "Succeeded").await;
    for dir in [data.path().join("pv/certs"), host.join("certs")] {
        assert!(
            dir.join("ca.crt").is_file(),
            "{} holds the certificates",
            dir.display()
        );
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_maps_and_secrets_reach_the_environment() {
    let env = boot("env").await;
    let pods = env.pods();
    let maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "default");
    maps.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "settings"}, "data": {"format": "from-configmap"}})),
    )
    .await
    .expect("configmap");
    secrets
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": "creds"}, "stringData": {"recheck": "from-secret"}}),
            ),
        )
        .await
        .expect("secret");
    // `sovereign run` reads these variables; the values are invalid, so it says so and exits 2.
    let with_env = |name: &str, env: Value| {
        let mut p = v(&ours(name, "Never", &["run"]));
        p["spec"]["containers"][0]["env"] = env;
        object::<Pod>(p)
    };
    let from_map = json!([{"name": "SOVEREIGN_LOG_FORMAT", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "format"}}}]);
    let from_secret = json!([{"name": "SOVEREIGN_RESIDENCY_RECHECK", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "recheck"}}}]);
    let late = json!([{"name": "SOVEREIGN_LOG_FORMAT", "valueFrom": {"secretKeyRef": {"name": "later", "key": "format"}}}]);
    create(&pods, &with_env("cm", from_map)).await;
    create(&pods, &with_env("secret", from_secret)).await;
    create(&pods, &with_env("late", late)).await;
    for (name, value) in [("cm", "from-configmap"), ("secret", "from-secret")] {
        let p = phase_is(&pods, name, "Failed").await;
        assert_eq!(
            container_status(&p)["state"]["terminated"]["exitCode"],
            2,
            "{p}"
        );
        let logs = env.kubectl(&["logs", name]).await;
        assert!(
            logs.contains(&format!("invalid value '{value}'")),
            "{name}: {logs}"
        );
    }
    // A missing Secret holds the container in CreateContainerConfigError until it exists.
    let p = until("a config error", || async {
        get(&pods, "late").await.filter(|p| {
            s(container_status(p), "/state/waiting/reason") == "CreateContainerConfigError"
        })
    })
    .await;
    assert_eq!(
        s(container_status(&p), "/state/waiting/message"),
        "secret \"later\" not found"
    );
    secrets
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "later"}, "stringData": {"format": "arrived"}})),
        )
        .await
        .expect("secret");
    phase_is(&pods, "late", "Failed").await;
    let logs = env.kubectl(&["logs", "late"]).await;
    assert!(logs.contains("invalid value 'arrived'"), "{logs}");
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn projected_tokens_authenticate_as_the_service_account() {
    let env = boot("token").await;
    let pods = env.pods();
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "default");
    sas.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "robot"}})),
    )
    .await
    .expect("service account");
    let mut p = v(&ours("whoami", "Never", &["residency", "scan"]));
    p["spec"]["serviceAccountName"] = json!("robot");
    create(&pods, &object(p)).await;
    let p = until("the scan to end", || async {
        get(&pods, "whoami")
            .await
            .filter(|p| matches!(s(p, "/status/phase"), "Failed" | "Succeeded"))
    })
    .await;
    let dir = env.pod_dir("whoami").await;
    let kubeconfig = dir.join("kubeconfig");
    assert!(kubeconfig.is_file(), "{p}");
    let volume = p["spec"]["volumes"][0]["name"]
        .as_str()
        .expect("kube-api-access volume");
    let token = std::fs::read_to_string(dir.join("volumes").join(volume).join("token"))
        .expect("the token file");
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let ca =
        std::fs::read_to_string(dir.join("volumes").join(volume).join("ca.crt")).expect("ca.crt");
    assert!(ca.contains("BEGIN CERTIFICATE"));
    let ns = std::fs::read_to_string(dir.join("volumes").join(volume).join("namespace"))
        .expect("namespace");
    assert_eq!(ns, "default");
    let out = tokio::process::Command::new(&env.kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .await
        .expect("kubectl");
    let who = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        who,
        "system:serviceaccount:default:robot",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The process itself found the kubeconfig (KUBECONFIG) and called the API as the robot.
    let logs = env.kubectl(&["logs", "whoami"]).await;
    assert!(
        logs.contains("system:serviceaccount:default:robot"),
        "{logs}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_of_simulated_images_become_available() {
    let env = boot("deploy").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    let d = object(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}
    }));
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("deployment");
    until("the deployment available", || async {
        get(&deployments, "web").await.filter(|d| {
            let available = d["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True")
            });
            available && d["status"]["readyReplicas"] == 3
        })
    })
    .await;
    let list = env
        .pods()
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods");
    let mut ips: Vec<String> = list
        .items
        .iter()
        .map(|p| {
            v(p)["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct addresses: {ips:?}");
    for p in &list.items {
        let p = v(p);
        let node = s(&p, "/spec/nodeName");
        let node_ip =
            sovereign::sandbox::agent::nodes::node_ip(env.cluster.host(), node).expect("our node");
        assert_eq!(s(&p, "/status/hostIP"), node_ip.to_string());
        assert!(
            !s(container_status(&p), "/state/running/startedAt").is_empty(),
            "{p}"
        );
        assert!(ready(&p));
    }
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_of_simulated_images_complete() {
    let env = boot("job").await;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), "default");
    let j = object(json!({
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}]}}}
    }));
    jobs.create(&PostParams::default(), &j).await.expect("job");
    until("the job complete", || async {
        get(&jobs, "once").await.filter(|j| {
            j["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
        })
    })
    .await;
    let list = env
        .pods()
        .list(&ListParams::default().labels("job-name=once"))
        .await
        .expect("pods");
    let p = v(&list.items[0]);
    assert_eq!(s(&p, "/status/phase"), "Succeeded");
    let t = &container_status(&p)["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    env.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_lost_with_the_agent_start_again_on_resume() {
    let permit = tokio::task::block_in_place(Permit::take);
    let dir = tempfile::tempdir().expect("tmp");
    let opts = || {
        let profile = profiles::by_id("qc-sovereign", 1).expect("profile");
        ClusterOptions::new("resume", profile, &dir.path().join("c"), &sovereign())
    };
    let env = start(opts(), permit).await;
    let pods = env.pods();
    create(&pods, &receiver("mover", json!({}))).await;
    let before = until("the receiver ready", || async {
        get(&pods, "mover").await.filter(ready)
    })
    .await;
    let ip = s(&before, "/status/podIP").to_string();
    let Env {
        cluster, _permit, ..
    } = env;
    cluster.shutdown().await;
    let env = start(opts(), _permit).await;
    let pods = env.pods();
    let p = until("the receiver restarted", || async {
        get(&pods, "mover")
            .await
            .filter(|p| container_status(p)["restartCount"] == 1 && ready(p))
    })
    .await;
    let last = &container_status(&p)["lastState"]["terminated"];
    assert_eq!(
        (last["exitCode"].as_i64(), last["reason"].as_str()),
        (Some(255), Some("Unknown")),
        "{p}"
    );
    assert_eq!(s(&p, "/status/podIP"), ip, "the pod keeps its address");
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(
        (init["restartCount"].as_i64(), init["ready"].as_bool()),
        (Some(0), Some(true)),
        "a completed init container is not run again"
    );
    env.cluster.shutdown().await;
}

/// One HTTPS GET to a node's kubelet API: the status code and the body.
async fn kubelet_get(
    env: &Env,
    client_cert: Option<(String, String)>,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use sovereign::sandbox::controlplane::pki::Ca;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = env.cluster.host();
    let node = &host.profile.nodes[0].name;
    let ip = sovereign::sandbox::agent::nodes::node_ip(host, node).expect("node address");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(host.pki.ca_pem(Ca::Cluster).as_bytes()) {
        roots.add(c.expect("ca")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect((ip, sovereign::sandbox::agent::nodes::KUBELET_PORT))
        .await?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::IpAddress(std::net::IpAddr::V4(ip).into());
    let mut tls = connector.connect(name, tcp).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubelet_api_authorizes_its_clients() {
    use sovereign::sandbox::controlplane::pki::{Ca, Usage};
    let env = boot("authz").await;
    let pki = &env.cluster.host().pki;
    let stranger = pki
        .issue(Ca::Cluster, "stranger", &[], &[], Usage::Client)
        .expect("cert");
    let (code, body) = kubelet_get(&env, Some(stranger), "/containerLogs/default/p/c")
        .await
        .expect("request");
    assert_eq!(
        (code, body.as_str()),
        (
            403,
            "Forbidden (user=stranger, verb=get, resource=nodes, subresource=log)"
        )
    );
    let read = |stem: &str| {
        std::fs::read_to_string(pki.dir().join(stem))
            .expect("the API server's kubelet client certificate")
    };
    let apiserver = || {
        Some((
            read("apiserver-kubelet-client.crt"),
            read("apiserver-kubelet-client.key"),
        ))
    };
    assert_eq!(
        kubelet_get(&env, apiserver(), "/healthz")
            .await
            .expect("healthz"),
        (200, "ok".into())
    );
    let (code, body) = kubelet_get(&env, apiserver(), "/containerLogs/default/p/c")
        .await
        .expect("logs");
    assert_eq!((code, body.as_str()), (404, "pod \"p\" does not exist"));
    let (code, body) = kubelet_get(&env, apiserver(), "/exec/default/p/c?command=sh")
        .await
        .expect("exec");
    assert!(
        code == 501 && body.contains("exec is not supported by the sandbox's node agent"),
        "{code} {body}"
    );
    let anonymous = kubelet_get(&env, None, "/healthz").await;
    assert!(
        anonymous.is_err() || anonymous.as_ref().is_ok_and(|(c, _)| *c == 0),
        "no certificate, no answer: {anonymous:?}"
    );
    env.cluster.shutdown().await;
}
