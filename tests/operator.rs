//! The operator end to end on the sandbox's simulated API server: the real `kube` client, the real
//! controllers, Events, finalizers, the leader Lease and graceful shutdown.

#![cfg(feature = "sandbox")]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sovereign::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload};
use sovereign::controller::{RunArgs, run_with};
use sovereign::sandbox::SimCluster;
use sovereign::telemetry::logging::LogFormat;

const NS: &str = "sovereign-system";
const TOKEN: &str = "t0p-s3cr3t-t0ken-never-shown";

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn install(client: &Client) {
    sovereign::telemetry::logging::init(LogFormat::Text);
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in sovereign::api::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [NS, "migrations"] {
        let _ = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await;
    }
}

fn args(identity: &str) -> RunArgs {
    RunArgs {
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        log_format: LogFormat::Text,
        leader_elect: true,
        lease_name: "sovereign-operator".into(),
        namespace: NS.into(),
        identity: Some(identity.into()),
        secret_namespaces: vec![],
        cluster_policy: "quebec-strict".into(),
        catalog_configmap: None,
        concurrency: 2,
        mover_image: sovereign::controller::context::DEFAULT_MOVER_IMAGE.into(),
        fx_configmap: None,
        residency_recheck: std::time::Duration::from_secs(300),
        watch_label_selector: None,
    }
}

fn ready(c: &SovereignCluster) -> Option<(String, String, String)> {
    let cond = c
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        cond.status.clone(),
        cond.reason.clone(),
        cond.message.clone(),
    ))
}

async fn secret(client: &Client, name: &str, key: &str, value: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), NS);
    let _ = api.delete(name, &DeleteParams::default()).await;
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "stringData": {key: value}
    }))
    .expect("secret");
    api.create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_probed_and_bad_kubeconfigs_get_specific_reasons() {
    let target = SimCluster::start("target").await.expect("target cluster");
    let source = SimCluster::start("source").await.expect("source cluster");
    let client = target.client().await.expect("client");
    install(&client).await;
    // The source shows EKS nodes.
    let src = source.client().await.expect("source client");
    let nodes: Api<Node> = Api::all(src.clone());
    for (i, zone) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("ip-10-0-{i}-10.ec2.internal"), "labels": {
                "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": zone,
                "eks.amazonaws.com/nodegroup": "general"}},
            "spec": {"providerID": format!("aws:///{zone}/i-0{i}abcdef")}
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &n)
            .await
            .expect("create node");
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), args("op-1"), async {
        let _ = stop_rx.await;
    }));

    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    let c: SovereignCluster = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
        "metadata": {"name": "aws-us-east-1"},
        "spec": {"kubeconfigSecretRef": {"namespace": NS, "name": "aws", "key": "kubeconfig"},
                 "provider": "aws", "region": "us-east-1", "jurisdiction": "US",
                 "location": {"country": "US", "province": "VA", "city": "Ashburn"}}
    }))
    .expect("cluster");
    clusters
        .create(&PostParams::default(), &c)
        .await
        .expect("create SovereignCluster");

    let wait_reason = |reason: &'static str| {
        let clusters = clusters.clone();
        async move {
            eventually(reason, || async {
                let c = clusters.get("aws-us-east-1").await.ok()?;
                let r = ready(&c)?;
                (r.1 == reason).then_some((c, r))
            })
            .await
        }
    };
    let (_, (status, _, message)) = wait_reason("KubeconfigSecretNotFound").await;
    assert_eq!(status, "False");
    assert!(message.contains("sovereign-system/aws"), "{message}");

    secret(&client, "aws", "config", "whatever").await;
    let (_, (_, _, message)) = wait_reason("KubeconfigKeyMissing").await;
    assert!(message.contains("keys: config"), "{message}");

    secret(
        &client,
        "aws",
        "kubeconfig",
        &format!("users: [{{name: u, user: {{token: {TOKEN}}}\n"),
    )
    .await;
    wait_reason("KubeconfigMalformed").await;

    secret(&client, "aws", "kubeconfig", &source.kubeconfig_yaml("source").replace("users:", "users:\n- name: unused\n  user:\n    exec: {command: /bin/true, apiVersion: client.authentication.k8s.io/v1}\n")).await;
    wait_reason("KubeconfigUnsafe").await;

    // A good kubeconfig (with a token the status must never show): probed.
    let good = source
        .kubeconfig_yaml("source")
        .replace("user: {}", &format!("user: {{token: {TOKEN}}}"));
    secret(&client, "aws", "kubeconfig", &good).await;
    let (c, (status, _, message)) = wait_reason("Reachable").await;
    assert_eq!(status, "True", "{message}");
    let s = c.status.clone().expect("status");
    assert_eq!(s.reachable, Some(true));
    assert_eq!(s.provider.as_deref(), Some("aws"));
    assert_eq!(s.region.as_deref(), Some("us-east-1"));
    let nodes = s.nodes.expect("nodes");
    assert_eq!(nodes.count, 2);
    assert_eq!(nodes.zones, vec!["us-east-1a", "us-east-1b"]);
    assert_eq!(nodes.provider_id_schemes, vec!["aws"]);
    assert_eq!(s.observed_generation, c.metadata.generation);
    // Classified from what the nodes show: Virginia, under US law.
    assert_eq!(s.location.as_deref(), Some("US-VA"));
    assert_eq!(s.jurisdiction.as_deref(), Some("US"));
    assert_eq!(s.verdict, Some(sovereign::api::Verdict::NonCompliant));
    let rc = s
        .conditions
        .iter()
        .find(|c| c.type_ == "ResidencyCompliant")
        .expect("ResidencyCompliant");
    assert_eq!(
        (rc.status.as_str(), rc.reason.as_str()),
        ("False", "NonCompliant")
    );
    assert!(
        s.findings
            .iter()
            .any(|f| f.rule.contains("CA jurisdiction")),
        "{:?}",
        s.findings
    );
    assert!(
        c.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"sovereign.dev/cleanup".to_string())
    );

    // Events tell the story, and nothing shows the Secret's content.
    let events: Api<Event> = Api::all(client.clone());
    let all = eventually("events", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        (reasons.iter().any(|r| r == "Reachable")
            && reasons.iter().any(|r| r == "KubeconfigSecretNotFound"))
        .then_some(list)
    })
    .await;
    let dump = serde_json::to_string(&all.items).expect("events json")
        + &serde_json::to_string(&c.status).expect("status json");
    assert!(
        !dump.contains(TOKEN),
        "the kubeconfig's token leaked into Events or status"
    );

    // The same Events are served as core/v1 Events, where `kubectl describe` looks for them.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::all(client.clone());
    let mirrored = core
        .list(&ListParams::default())
        .await
        .expect("core events");
    assert!(
        mirrored
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Reachable")
                && e.involved_object.name.as_deref() == Some("aws-us-east-1")),
        "no core/v1 Event for the probe"
    );
    // An unreachable cluster flips Ready with reason, keeping the evidence.
    source.shutdown().await;
    clusters
        .patch(
            "aws-us-east-1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"probeInterval": "10s"}})),
        )
        .await
        .expect("patch probeInterval");
    let (c, _) = wait_reason("Unreachable").await;
    assert_eq!(
        c.status
            .as_ref()
            .and_then(|s| s.nodes.as_ref())
            .map(|n| n.count),
        Some(2)
    );

    let _ = stop_tx.send(());
    op.await
        .expect("join")
        .expect("operator stops cleanly on shutdown");
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_report_their_references_and_governance() {
    let target = SimCluster::start("target").await.expect("target");
    let client = target.client().await.expect("client");
    install(&client).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), args("op-1"), async {
        let _ = stop_rx.await;
    }));
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), "migrations");
    let w: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "dossier", "namespace": "migrations"},
        "spec": {"source": {"cluster": "src", "namespace": "sante"}, "target": {"cluster": "dst", "namespace": "sante-qc"}}
    }))
    .expect("workload");
    workloads
        .create(&PostParams::default(), &w)
        .await
        .expect("create workload");
    let reason_is = |want: &'static str| {
        let workloads = workloads.clone();
        async move {
            eventually(want, || async {
                let w = workloads.get("dossier").await.ok()?;
                let s = w.status.clone()?;
                let r = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .reason
                    .clone();
                (r == want).then_some(w)
            })
            .await
        }
    };
    let w1 = reason_is("SourceClusterNotFound").await;
    assert_eq!(
        w1.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str()),
        Some("Pending")
    );
    let stalled = w1
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.status.clone());
    assert_eq!(stalled.as_deref(), Some("True"));

    // Both clusters in-cluster (the sandbox's own API), then the policy, then the PIA.
    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    // The source namespace holds a small application.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "sante");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "sante"}})).expect("ns"),
    )
    .await
    .expect("namespace sante");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "dossier-config", "namespace": "sante"}, "data": {"LOG_LEVEL": "info"}})).expect("cm")).await.expect("configmap");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "sante");
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "dossier-api", "namespace": "sante"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "dossier-api"}}, "template": {"metadata": {"labels": {"app": "dossier-api"}}, "spec": {"containers": [{"name": "api", "image": "registry.sante.gouv.qc.ca/dossier/api:2.4.1", "envFrom": [{"configMapRef": {"name": "dossier-config"}}]}]}}}})).expect("deployment"),
        )
        .await
        .expect("deployment");
    // Both are the sandbox itself (inCluster), with no provider signal: their declarations decide.
    for (name, provider, country, province, jurisdiction) in [
        ("src", "aws", "US", "VA", "US"),
        ("dst", "micrologic", "CA", "QC", "CA"),
    ] {
        let c: SovereignCluster = serde_json::from_value(json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
            "metadata": {"name": name},
            "spec": {"inCluster": true, "provider": provider, "jurisdiction": jurisdiction,
                     "location": {"country": country, "province": province}}
        }))
        .expect("cluster");
        clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("create cluster");
    }
    reason_is("ResidencyPolicyNotFound").await;
    let policies: Api<ResidencyPolicy> = Api::all(client.clone());
    let p: ResidencyPolicy = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy",
        "metadata": {"name": "quebec-strict"},
        "spec": {"allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"], "requirePrivacyImpactAssessment": true}
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &p)
        .await
        .expect("create policy");
    reason_is("PrivacyImpactAssessmentRequired").await;
    workloads
        .patch(
            "dossier",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0412"}}})),
        )
        .await
        .expect("add PIA");
    let w = reason_is("AwaitingApproval").await;
    let s = w.status.clone().expect("status");
    assert_eq!(s.phase.map(|p| p.as_str()), Some("AwaitingApproval"));
    assert_eq!(s.observed_generation, w.metadata.generation);
    // The plan read the source namespace: the ConfigMap and the Deployment, not the default SA.
    let plan = s.plan.clone().expect("plan in status");
    assert_eq!(plan.objects, 2, "{plan:?}");
    assert_eq!(plan.hash.len(), 64);
    assert!(plan.approved_hash.is_none());
    // A hash of another plan is refused with a condition; the right one approves.
    let approve = |hash: String| {
        let workloads = workloads.clone();
        async move {
            workloads
                .patch("dossier", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"spec": {"cutover": {"approvedPlanHash": hash, "approvedBy": "alice@sante.gouv.qc.ca"}}})))
                .await
                .expect("approve");
        }
    };
    approve("0".repeat(64)).await;
    let stale = reason_is("StalePlanHash").await;
    let approved_cond = stale
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Approved"))
        .map(|c| (c.status.clone(), c.reason.clone()));
    assert_eq!(
        approved_cond,
        Some(("False".into(), "StalePlanHash".into()))
    );
    approve(plan.hash.clone()).await;
    // Approved: objects applied at zero replicas, no volume to pre-copy, so the cutover records the
    // source's replica counts (before touching it) and then quiesces it.
    let w = eventually("the source recorded for cutover", || async {
        let w = workloads.get("dossier").await.ok()?;
        let s = w.status.clone()?;
        (s.cutover_at.is_some() && !s.quiesced.is_empty()).then_some(w)
    })
    .await;
    let quiesced = w
        .status
        .as_ref()
        .map(|s| s.quiesced.clone())
        .unwrap_or_default();
    assert_eq!(quiesced.len(), 1, "{quiesced:?}");
    assert_eq!(
        (
            quiesced[0].kind.as_str(),
            quiesced[0].name.as_str(),
            quiesced[0].replicas
        ),
        ("Deployment", "dossier-api", Some(2))
    );
    // The objects are in the target namespace, the Deployment created stopped with its count kept.
    let replicated: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "sante-qc");
    let d = replicated
        .get("dossier-api")
        .await
        .expect("replicated deployment");
    let ann = d.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("sovereign.dev/replicas").map(String::as_str),
        Some("2")
    );
    assert!(ann.contains_key("sovereign.dev/source-uid"));
    eventually("the source scaled to zero", || async {
        let d = deployments.get("dossier-api").await.ok()?;
        (d.spec.as_ref().and_then(|s| s.replicas) == Some(0)).then_some(())
    })
    .await;
    let results = w
        .status
        .as_ref()
        .map(|s| s.objects.clone())
        .unwrap_or_default();
    assert_eq!(results.len(), 2, "{results:?}");
    let progress = w
        .status
        .as_ref()
        .and_then(|s| s.progress.clone())
        .expect("progress");
    assert_eq!((progress.objects_done, progress.objects_total), (2, 2));
    let s = w.status.clone().expect("status");
    let p = s.plan.clone().expect("plan");
    assert_eq!(p.approved_hash.as_deref(), Some(plan.hash.as_str()));
    assert_eq!(p.approved_by.as_deref(), Some("alice@sante.gouv.qc.ca"));
    assert!(p.approved_at.is_some());
    // Plan mode: the plan and the pre-flight, then done (Ready) without touching anything.
    let plan_only: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "plan-only", "namespace": "migrations"},
        "spec": {"source": {"cluster": "src", "namespace": "sante"}, "target": {"cluster": "dst"}, "mode": "Plan",
                 "governance": {"dataClassification": "Internal", "privacyImpactAssessmentRef": "EFVP-2"}}
    }))
    .expect("workload");
    workloads
        .create(&PostParams::default(), &plan_only)
        .await
        .expect("create plan-only");
    let done = eventually("plan-only Ready", || async {
        let w = workloads.get("plan-only").await.ok()?;
        let s = w.status.clone()?;
        (s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "PlanReady"))
        .then_some(s)
    })
    .await;
    assert_eq!(done.phase.map(|p| p.as_str()), Some("Completed"));
    // Another workload's plan: the target objects carry their workload's label, so the hash differs.
    let other = done.plan.expect("plan");
    assert_eq!(other.objects, 2);
    assert_ne!(other.hash, plan.hash);
    let target_objects: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "sante");
    assert_eq!(
        target_objects
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1,
        "Plan mode created nothing"
    );
    workloads
        .delete("plan-only", &DeleteParams::default())
        .await
        .expect("delete plan-only");
    let r = s.residency.expect("residency pre-flight in status");
    assert_eq!(
        (r.verdict, r.location.as_deref(), r.jurisdiction.as_deref()),
        (
            sovereign::api::Verdict::Compliant,
            Some("CA-QC"),
            Some("CA")
        )
    );

    // A migration to a US-operated target is blocked before anything moves, with the findings.
    let to_us: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "to-us", "namespace": "migrations"},
        "spec": {"source": {"cluster": "dst", "namespace": "sante"}, "target": {"cluster": "src"},
                 "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-1"}}
    }))
    .expect("workload");
    workloads
        .create(&PostParams::default(), &to_us)
        .await
        .expect("create");
    let condition = |w: &SovereignWorkload, t: &str| {
        w.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let blocked = eventually("to-us blocked", || async {
        let w = workloads.get("to-us").await.ok()?;
        (condition(&w, "Ready").map(|c| c.1).as_deref() == Some("ResidencyBlocked")).then_some(w)
    })
    .await;
    assert_eq!(
        condition(&blocked, "ResidencyCompliant"),
        Some(("False".into(), "Blocked".into()))
    );
    let findings = blocked
        .status
        .as_ref()
        .and_then(|s| s.residency.as_ref())
        .map(|r| r.findings.clone())
        .unwrap_or_default();
    assert!(
        findings.iter().any(|f| f.evidence == "US-VA")
            && findings.iter().any(|f| f.evidence == "US"),
        "{findings:?}"
    );
    // Under Warn, it proceeds, and the findings stay.
    policies
        .patch(
            "quebec-strict",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"enforcement": "Warn"}})),
        )
        .await
        .expect("warn");
    let warned = eventually("to-us proceeds under Warn", || async {
        let w = workloads.get("to-us").await.ok()?;
        (w.status.as_ref()?.phase.map(|p| p.as_str()) == Some("AwaitingApproval")).then_some(w)
    })
    .await;
    assert_eq!(
        condition(&warned, "ResidencyCompliant"),
        Some(("False".into(), "NonCompliantWarned".into()))
    );
    workloads
        .delete("to-us", &DeleteParams::default())
        .await
        .expect("delete to-us");

    // Deleting the workload runs the finalizer's cleanup and the object goes away.
    workloads
        .delete("dossier", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("workload gone", || async {
        workloads
            .get_opt("dossier")
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
    // Abandoned before cutover: the half-built target is removed, the source stays as it was.
    let left: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "sante-qc");
    assert!(
        left.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "half-built target removed"
    );
    let cms_qc: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "sante-qc");
    assert!(
        !cms_qc
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("dossier-config"))
    );
    assert_eq!(
        deployments
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1,
        "the source is still there"
    );
    // Deleted mid-cutover: the deletion is an abort, and the source gets its replicas back.
    let restored = deployments.get("dossier-api").await.expect("source");
    assert_eq!(restored.spec.as_ref().and_then(|s| s.replicas), Some(2));

    let _ = stop_tx.send(());
    op.await.expect("join").expect("operator stops cleanly");
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_leads_and_a_standby_takes_over() {
    let target = SimCluster::start("target").await.expect("target");
    let client = target.client().await.expect("client");
    install(&client).await;
    let (stop1, rx1) = tokio::sync::oneshot::channel::<()>();
    let (stop2, rx2) = tokio::sync::oneshot::channel::<()>();
    let op1 = tokio::spawn(run_with(client.clone(), args("replica-1"), async {
        let _ = rx1.await;
    }));
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get_opt("sovereign-operator")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
        }
    };
    eventually("replica-1 leads", || async {
        (holder().await.as_deref() == Some("replica-1")).then_some(())
    })
    .await;
    let op2 = tokio::spawn(run_with(client.clone(), args("replica-2"), async {
        let _ = rx2.await;
    }));
    // The standby does not take the Lease while the leader renews it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder().await.as_deref(), Some("replica-1"));
    // The leader stops gracefully and releases; the standby takes over.
    let _ = stop1.send(());
    op1.await.expect("join").expect("replica-1 stops cleanly");
    eventually("replica-2 leads", || async {
        (holder().await.as_deref() == Some("replica-2")).then_some(())
    })
    .await;
    let _ = stop2.send(());
    op2.await.expect("join").expect("replica-2 stops cleanly");
    target.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_below_the_estimate_pauses_before_data_moves() {
    let target = SimCluster::start("target").await.expect("target");
    let client = target.client().await.expect("client");
    install(&client).await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "registre"}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), "registre");
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "archives", "namespace": "registre"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "100Gi"}}}}))
        .expect("pvc"),
    )
    .await
    .expect("pvc");
    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    for (name, provider, country, province, jurisdiction, pricing) in [
        (
            "src",
            "aws",
            "US",
            "VA",
            "US",
            json!({"currency": "USD", "egressPerGiB": 0.10, "freeEgressGiB": 0}),
        ),
        (
            "dst",
            "micrologic",
            "CA",
            "QC",
            "CA",
            json!({"currency": "CAD", "egressPerGiB": 0}),
        ),
    ] {
        let c: SovereignCluster = serde_json::from_value(json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": name},
            "spec": {"inCluster": true, "provider": provider, "jurisdiction": jurisdiction,
                     "location": {"country": country, "province": province}, "pricing": pricing}
        }))
        .expect("cluster");
        clusters
            .create(&PostParams::default(), &c)
            .await
            .expect("cluster");
    }
    let policies: Api<ResidencyPolicy> = Api::all(client.clone());
    let p: ResidencyPolicy = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy", "metadata": {"name": "quebec-strict"},
        "spec": {"allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"]}
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &p)
        .await
        .expect("policy");
    // The operator's exchange-rate ConfigMap overrides the built-in USD→CAD rate.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "sovereign-system");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "sovereign-fx", "namespace": "sovereign-system"},
            "data": {"rates.yaml": "rates:\n- {from: USD, to: CAD, rate: 2.0, asOf: '2026-11-27', source: 'Bank of Canada daily rate (test)'}\n"}}))
        .expect("configmap"),
    )
    .await
    .expect("fx configmap");
    let mut fx_args = args("op-1");
    fx_args.fx_configmap = Some("sovereign-fx".into());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), fx_args, async {
        let _ = stop_rx.await;
    }));
    // 100 GiB leave the source at 0.10 CAD/GiB: the estimate is at least 10.00 CAD.
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), "migrations");
    let w: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "registre", "namespace": "migrations"},
        "spec": {"source": {"cluster": "src", "namespace": "registre"}, "target": {"cluster": "dst"},
                 "cost": {"currency": "CAD", "budget": {"amount": 5, "currency": "CAD"}}}
    }))
    .expect("workload");
    workloads
        .create(&PostParams::default(), &w)
        .await
        .expect("create");
    let cond = |w: &SovereignWorkload, t: &str| {
        w.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == t))
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let paused = eventually("paused over budget", || async {
        let w = workloads.get("registre").await.ok()?;
        (w.status.as_ref()?.phase.map(|p| p.as_str()) == Some("Paused")).then_some(w)
    })
    .await;
    let (status, reason, message) = cond(&paused, "WithinBudget").expect("WithinBudget");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "OverBudget"));
    assert!(
        message.contains("exceeds the budget of 5.00 CAD"),
        "{message}"
    );
    let cost = paused
        .status
        .as_ref()
        .and_then(|s| s.cost.clone())
        .expect("status.cost");
    let one_time = cost
        .estimated
        .as_ref()
        .map(|e| e.one_time)
        .unwrap_or_default();
    // 100 GiB × 0.10 USD/GiB × 2.0 (the ConfigMap's rate, not the built-in 1.38) = 20.00 CAD.
    assert!(one_time >= 20.0, "egress alone is 20.00 CAD: {cost:?}");
    let egress = cost
        .items
        .iter()
        .find(|i| i.name.contains("egress"))
        .expect("an egress line");
    assert!((egress.amount - 20.0).abs() < 0.005, "{egress:?}");
    assert!(
        egress.source.contains("2 USD→CAD") || egress.source.contains("2.0 USD→CAD"),
        "{egress:?}"
    );
    assert!(
        cost.display
            .as_deref()
            .is_some_and(|d| d.ends_with("CAD (est.)")),
        "{cost:?}"
    );
    // Nothing moved: no target objects were created (the plan only reads).
    assert_eq!(
        pvcs.list(&ListParams::default())
            .await
            .expect("pvcs")
            .items
            .len(),
        1
    );
    // Raising the budget resumes it.
    workloads
        .patch(
            "registre",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"cost": {"budget": {"amount": 100000}}}})),
        )
        .await
        .expect("raise budget");
    let resumed = eventually("resumed", || async {
        let w = workloads.get("registre").await.ok()?;
        (w.status.as_ref()?.phase.map(|p| p.as_str()) == Some("AwaitingApproval")).then_some(w)
    })
    .await;
    assert_eq!(
        cond(&resumed, "WithinBudget").map(|c| (c.0, c.1)),
        Some(("True".into(), "WithinBudget".into()))
    );
    let _ = stop_tx.send(());
    op.await.expect("join").expect("stops");
    target.shutdown().await;
}
