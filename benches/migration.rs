//! Benchmark of a migration (not a test): a namespace of 2,000 objects (ConfigMaps, Secrets,
//! Services, Deployments, StatefulSets without volumes, CronJobs, RBAC, NetworkPolicies, a PDB)
//! moves from the sandbox's EKS-like source to its Québec target with the operator running
//! in-process. Prints the time from the operator's start to `Completed` (and to each phase), the
//! HTTP requests each cluster served per verb, requests per object, and the process's memory.
//!
//! The process hosts both simulated clusters as well as the operator, so the peak RSS is theirs
//! together; the growth during the migration (the high-water mark is reset when the operator
//! starts) is the closer figure for the operator and the objects it holds.
//!
//! Run with `cargo bench --bench migration` (`OBJECTS_SCALE=0.1` for a quick run at 200 objects).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sovereign::controller::{RunArgs, run_with};
use sovereign::sandbox::{ListOptions, SimCluster, SimOptions, WriteOptions, demo, seed};
use sovereign::telemetry::logging::LogFormat;

const NS: &str = "ledger";
const WORKLOAD: &str = "ledger";
const PART_OF: &str = "app.kubernetes.io/part-of";
const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// How many of each kind: 2,000 in all at scale 1.
const MIX: [(&str, usize); 11] = [
    ("ConfigMap", 1200),
    ("Secret", 400),
    ("Service", 200),
    ("Deployment", 150),
    ("StatefulSet", 40),
    ("CronJob", 4),
    ("ServiceAccount", 2),
    ("Role", 1),
    ("RoleBinding", 1),
    ("NetworkPolicy", 1),
    ("PodDisruptionBudget", 1),
];

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn proc_status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so that the next reading is the peak since now.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn object(kind: &str, i: usize) -> Value {
    let labels = json!({PART_OF: "ledger", "app": format!("svc-{:03}", i % 200)});
    let meta = |name: String| json!({"name": name, "namespace": NS, "labels": labels});
    match kind {
        "ConfigMap" => {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(format!("config-{i:04}")),
            "data": {"application.properties": format!("ledger.shard={i}\nledger.peer=svc-{:03}\n", i % 200).repeat(8 + i % 24),
                     "LOG_LEVEL": "info"}})
        }
        "Secret" => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(format!("secret-{i:04}")),
            "type": "Opaque", "stringData": {"password": format!("sandbox-only-{i}"), "api-key": "x".repeat(64)}})
        }
        "Service" => {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(format!("svc-{i:03}")),
            "spec": {"selector": {"app": format!("svc-{i:03}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        }
        "Deployment" => {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(format!("api-{i:03}")),
            "spec": {"replicas": 1 + i % 3, "selector": {"matchLabels": {"app": format!("svc-{i:03}")}},
                     "template": {"metadata": {"labels": {"app": format!("svc-{i:03}"), PART_OF: "ledger"}}, "spec": {
                         "serviceAccountName": "ledger-api",
                         "containers": [{"name": "api", "image": format!("{ECR}/ledger/api:3.{}", i % 7),
                                         "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}},
                                         "envFrom": [{"configMapRef": {"name": format!("config-{i:04}")}}],
                                         "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": format!("secret-{i:04}"), "key": "password"}}}]}]}}}})
        }
        // References stay below the smallest count of what they name, so that they exist at any
        // OBJECTS_SCALE: the plan refuses a workload whose references are missing.
        "StatefulSet" => {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(format!("worker-{i:02}")),
            "spec": {"replicas": 1, "serviceName": format!("svc-{i:03}"), "selector": {"matchLabels": {"app": format!("worker-{i:02}")}},
                     "template": {"metadata": {"labels": {"app": format!("worker-{i:02}"), PART_OF: "ledger"}}, "spec": {
                         "containers": [{"name": "worker", "image": format!("{ECR}/ledger/worker:1.2"),
                                         "envFrom": [{"configMapRef": {"name": format!("config-{i:04}")}}]}]}}}})
        }
        "CronJob" => {
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(format!("report-{i}")),
            "spec": {"schedule": format!("{} 3 * * *", i * 10), "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                     "containers": [{"name": "report", "image": format!("{ECR}/ledger/report:1.0")}]}}}}}})
        }
        "ServiceAccount" => json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(["ledger-api", "ledger-report"][i % 2].to_string())}),
        "Role" => {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("ledger-reader".into()),
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get", "list"]}]})
        }
        "RoleBinding" => {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("ledger-reader".into()),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ledger-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "ledger-api", "namespace": NS}]})
        }
        "NetworkPolicy" => {
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("ledger-internal".into()),
            "spec": {"podSelector": {"matchLabels": {PART_OF: "ledger"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {PART_OF: "ledger"}}}]}]}})
        }
        "PodDisruptionBudget" => {
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta("ledger-api".into()),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {PART_OF: "ledger"}}}})
        }
        other => panic!("no template for {other}"),
    }
}

/// Adds `n` nodes like the cluster's first: the seeded clusters have three nodes of 110 pods each,
/// fewer than the namespace's 340 pods need.
fn add_nodes(c: &SimCluster, n: usize) {
    let res = c.api().resource_for("v1", "Node").expect("nodes");
    let nodes = c
        .api()
        .list(&res, None, &ListOptions::default())
        .expect("list nodes");
    let template = nodes.items.first().expect("a seeded node").as_ref().clone();
    let base = template["metadata"]["name"]
        .as_str()
        .unwrap_or("node")
        .to_string();
    for i in 0..n {
        let mut node = template.clone();
        let name = format!("{base}-bench-{i}");
        node["metadata"]["name"] = json!(name);
        node["metadata"]["labels"]["kubernetes.io/hostname"] = json!(name);
        if let Some(m) = node["metadata"].as_object_mut() {
            for k in ["uid", "resourceVersion", "creationTimestamp"] {
                m.remove(k);
            }
        }
        c.apply_object(node).expect("node");
    }
}

/// Polls the source in-process (no HTTP request counted) until every Deployment and StatefulSet
/// of the namespace has its replicas ready: the migration starts from a settled cluster.
async fn settled(source: &SimCluster, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut ready = 0;
        for (api_version, kind) in [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")] {
            let res = source.api().resource_for(api_version, kind).expect("kind");
            let list = source
                .api()
                .list(&res, Some(NS), &ListOptions::default())
                .expect("list");
            ready += list
                .items
                .iter()
                .filter(|o| {
                    let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
                    o["status"]["readyReplicas"].as_i64().unwrap_or(0) == want
                })
                .count();
        }
        if ready == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the source did not settle ({ready} of {expected} ready)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let scale: f64 = std::env::var("OBJECTS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let source = SimCluster::start_with("source", any, SimOptions::temporary())
        .await
        .expect("source");
    seed::eks_us_east_1(source.api()).expect("seed source");
    let target = SimCluster::start_with("target", any, SimOptions::temporary())
        .await
        .expect("target");
    seed::qc_sovereign(target.api()).expect("seed target");
    add_nodes(&source, 3);
    add_nodes(&target, 3);

    // The namespace, seeded through the in-process API (not counted as requests).
    let create = |c: &SimCluster, obj: Value| {
        c.api()
            .create_object(obj, &WriteOptions::default())
            .expect("create");
    };
    create(
        &source,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let mut objects = 0;
    let mut workloads = 0;
    for (kind, n) in MIX {
        let n = ((n as f64 * scale).round() as usize).max(1);
        for i in 0..n {
            create(&source, object(kind, i));
        }
        objects += n;
        if kind == "Deployment" || kind == "StatefulSet" {
            workloads += n;
        }
    }
    let seed_start = Instant::now();
    settled(&source, workloads).await;
    eprintln!(
        "seeded {objects} objects in namespace {NS}; {workloads} workloads ready after {:.1}s",
        seed_start.elapsed().as_secs_f64()
    );

    demo::register_clusters(&source, &target, "qc-sovereign").expect("register");
    create(
        &target,
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": WORKLOAD, "namespace": demo::WORKLOAD_NAMESPACE},
        "spec": {"source": {"cluster": "aws-us-east-1", "namespace": NS, "selector": {"matchLabels": {PART_OF: "ledger"}}},
                 "target": {"cluster": "quebec", "namespace": NS,
                            "imageRewrites": [{"from": ECR, "to": "registry.sante.gouv.qc.ca"}]},
                 "mode": "Move", "cutover": {"strategy": "Automatic"}, "residencyPolicy": "quebec-strict",
                 "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0999"},
                 "cost": {"currency": "CAD", "budget": {"amount": 5000, "currency": "CAD"}}}}),
    );

    let hwm_setup = proc_status_kib("VmHWM:");
    let rss_start = proc_status_kib("VmRSS:");
    let reset = reset_peak_rss();
    let (src0, dst0) = (source.requests(), target.requests());
    let client = target.client().await.expect("client");
    let args = RunArgs {
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        log_format: LogFormat::Text,
        leader_elect: false,
        lease_name: "sovereign-operator".into(),
        namespace: "sovereign-system".into(),
        identity: Some("bench".into()),
        secret_namespaces: vec![],
        cluster_policy: "quebec-strict".into(),
        catalog_configmap: None,
        concurrency: 4,
        mover_image: sovereign::controller::context::DEFAULT_MOVER_IMAGE.into(),
        fx_configmap: None,
        residency_recheck: std::time::Duration::from_secs(300),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let operator = tokio::spawn(async move {
        if let Err(e) = run_with(client, args, async {
            let _ = stopped.await;
        })
        .await
        {
            eprintln!("operator stopped: {e}");
        }
    });

    // Follow the workload in-process (so the polling is not counted), noting when each phase began.
    let res = target
        .api()
        .resource_for("sovereign.dev/v1alpha1", "SovereignWorkload")
        .expect("crd");
    let mut phases: Vec<(String, f64)> = Vec::new();
    let status = loop {
        let w = target
            .api()
            .get(&res, demo::WORKLOAD_NAMESPACE, WORKLOAD)
            .expect("workload");
        let s = &w["status"];
        let phase = s["phase"].as_str().unwrap_or("Pending").to_string();
        // Phase and the Ready condition's reason: the steps inside a phase (Quiescing, FinalPass,
        // TargetStarting...) are where the time goes.
        let reason = s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["reason"].as_str())
            .unwrap_or_default();
        let step = format!("{phase}/{reason}");
        if phases.last().map(|p| &p.0) != Some(&step) {
            eprintln!(
                "[{:>6.1}s] {phase:<12} {}",
                started.elapsed().as_secs_f64(),
                s["message"].as_str().unwrap_or_default()
            );
            phases.push((step, started.elapsed().as_secs_f64()));
        }
        let ready = s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if phase == "Completed" && ready {
            break s.clone();
        }
        let stalled = s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Stalled" && c["status"] == "True");
        if stalled || ["Failed", "RolledBack", "Paused"].contains(&phase.as_str()) {
            eprintln!("the migration ended {phase}: {}", s["message"]);
            std::process::exit(1);
        }
        if started.elapsed() > Duration::from_secs(1800) {
            eprintln!("the migration did not complete in 30 minutes");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let (src, dst) = (source.requests() - src0, target.requests() - dst0);
    let hwm = proc_status_kib("VmHWM:");
    let _ = stop.send(());
    let _ = operator.await;

    let planned = status["plan"]["objects"].as_i64().unwrap_or(0);
    let done = status["progress"]["objectsDone"].as_i64().unwrap_or(0);
    let per = |n: u64| n as f64 / objects as f64;
    println!("\nmigration of one namespace, sandbox to sandbox, operator in-process\n");
    println!(
        "| objects | planned / applied | seconds | objects/s | requests to source | requests to target | requests per object | VmHWM (process) | RSS growth |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {objects} | {planned} / {done} | {seconds:.1} | {:.0} | {} | {} | {:.2} | {} | {} |",
        objects as f64 / seconds,
        src.total,
        dst.total,
        per(src.total + dst.total),
        mib(hwm),
        match (reset, hwm, rss_start) {
            (true, Some(h), Some(r)) => mib(Some(h.saturating_sub(r))),
            _ => "?".into(),
        },
    );
    println!("\nrequests per verb (source / target):");
    for (verb, a, b) in [
        ("get", src.get, dst.get),
        ("list", src.list, dst.list),
        ("watch", src.watch, dst.watch),
        ("create", src.create, dst.create),
        ("update", src.update, dst.update),
        ("patch", src.patch, dst.patch),
        ("delete", src.delete, dst.delete),
        (
            "other (discovery, openapi, version)",
            src.other(),
            dst.other(),
        ),
    ] {
        println!("  {verb:<36} {a:>7} / {b:>7}");
    }
    println!("\nsteps (phase/reason, seconds since the operator started):");
    for (p, t) in &phases {
        println!("  {p:<36} {t:>7.1}");
    }
    println!(
        "\nmemory: VmRSS {} when the operator started (both clusters seeded; VmHWM {} until then); \
         VmHWM {} during the migration{}",
        mib(rss_start),
        mib(hwm_setup),
        mib(hwm),
        if reset {
            " (reset at the operator's start)"
        } else {
            " (could not reset: this is the process's lifetime peak)"
        }
    );
    source.shutdown().await;
    target.shutdown().await;
}
