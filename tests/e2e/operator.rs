//! The operator end to end on the real clusters: the real `kube` client, the real controllers,
//! Events, finalizers, the leader Lease and graceful shutdown. Each test has its own namespaces,
//! SovereignClusters and policy (names prefixed with the test's), and its operator serves only
//! that test's shard.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sovereign::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload};
use sovereign::controller::{RunArgs, run_with};
use sovereign::sandbox::controlplane::kubeconfig;
use sovereign::sandbox::demo::SHARD_LABEL;

use super::support;

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
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

/// The CRDs, and the test's operator and workload namespaces `<p>-system`, `<p>-migrations`.
async fn install(client: &Client, p: &str) {
    sovereign::sandbox::demo::install_crds(client)
        .await
        .expect("CRDs");
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [format!("{p}-system"), format!("{p}-migrations")] {
        let _ = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns"),
            )
            .await;
    }
}

/// The test's operator: its namespace, its shard, its policy, its Lease.
fn args(p: &str, identity: &str) -> RunArgs {
    let mut a = RunArgs::embedded(identity);
    a.leader_elect = true;
    a.namespace = format!("{p}-system");
    a.cluster_policy = format!("{p}-quebec-strict");
    a.concurrency = 2;
    a.watch_label_selector = Some(format!("{SHARD_LABEL}={p}"));
    a
}

/// `metadata` of a cluster-scoped object of the test's shard.
fn meta(p: &str, name: &str) -> serde_json::Value {
    json!({"name": format!("{p}-{name}"), "labels": {SHARD_LABEL: p}})
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

async fn secret(client: &Client, p: &str, name: &str, key: &str, value: &str) {
    let ns = format!("{p}-system");
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let _ = api.delete(name, &DeleteParams::default()).await;
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "stringData": {key: value}
    }))
    .expect("secret");
    api.create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_probed_and_bad_kubeconfigs_get_specific_reasons() {
    let p = "op-probe";
    let sh = support::shared();
    let (_, client) = support::clients().await;
    install(&client, p).await;
    let name = format!("{p}-aws");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), args(p, "op-1"), async {
        let _ = stop_rx.await;
    }));

    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    let c: SovereignCluster = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
        "metadata": meta(p, "aws"),
        "spec": {"kubeconfigSecretRef": {"namespace": format!("{p}-system"), "name": "aws", "key": "kubeconfig"},
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
        let name = name.clone();
        async move {
            eventually(reason, || async {
                let c = clusters.get(&name).await.ok()?;
                let r = ready(&c)?;
                (r.1 == reason).then_some((c, r))
            })
            .await
        }
    };
    let (_, (status, _, message)) = wait_reason("KubeconfigSecretNotFound").await;
    assert_eq!(status, "False");
    assert!(message.contains(&format!("{p}-system/aws")), "{message}");

    secret(&client, p, "aws", "config", "whatever").await;
    let (_, (_, _, message)) = wait_reason("KubeconfigKeyMissing").await;
    assert!(message.contains("keys: config"), "{message}");

    secret(
        &client,
        p,
        "aws",
        "kubeconfig",
        "users: [{name: u, user: {token: x}}\n",
    )
    .await;
    wait_reason("KubeconfigMalformed").await;

    let source = sh.source_entry("source");
    let good = kubeconfig::render(std::slice::from_ref(&source), "source");
    secret(&client, p, "aws", "kubeconfig", &good.replace("users:", "users:\n- name: unused\n  user:\n    exec: {command: /bin/true, apiVersion: client.authentication.k8s.io/v1}\n")).await;
    wait_reason("KubeconfigUnsafe").await;

    // A good kubeconfig (with a client key the status must never show): probed, through the
    // real API server of the EKS-like source with the agent's nodes.
    secret(&client, p, "aws", "kubeconfig", &good).await;
    let (c, (status, _, message)) = wait_reason("Reachable").await;
    assert_eq!(status, "True", "{message}");
    let s = c.status.clone().expect("status");
    assert_eq!(s.reachable, Some(true));
    assert_eq!(s.provider.as_deref(), Some("aws"));
    assert_eq!(s.region.as_deref(), Some("us-east-1"));
    assert_eq!(s.kubernetes_version.as_deref(), Some("v1.37.2"), "{s:?}");
    let nodes = s.nodes.expect("nodes");
    assert_eq!(nodes.count, 9, "three per zone in the shared source");
    assert_eq!(nodes.zones, vec!["us-east-1a", "us-east-1b", "us-east-1c"]);
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
        let mine: Vec<&Event> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
            .collect();
        let reasons: Vec<String> = mine.iter().filter_map(|e| e.reason.clone()).collect();
        (reasons.iter().any(|r| r == "Reachable")
            && reasons.iter().any(|r| r == "KubeconfigSecretNotFound"))
        .then(|| serde_json::to_string(&mine).expect("events json"))
    })
    .await;
    let key = match &source.auth {
        kubeconfig::Auth::Certificate { key_pem, .. } => key_pem.clone(),
        other => panic!(
            "the admin has a certificate, not {}",
            match other {
                kubeconfig::Auth::TokenFile(_) => "a token file",
                _ => "a token",
            }
        ),
    };
    let secret_part: String = key.lines().nth(1).unwrap_or_default().to_string();
    let dump = all + &serde_json::to_string(&c.status).expect("status json");
    assert!(
        secret_part.len() > 20 && !dump.contains(&secret_part),
        "the kubeconfig's key leaked into Events or status"
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
                && e.involved_object.name.as_deref() == Some(name.as_str())),
        "no core/v1 Event for the probe"
    );
    // An unreachable cluster flips Ready with reason, keeping the evidence: nothing listens at
    // the address the kubeconfig now names.
    let gone = format!("https://127.{}.0.1:1", sh.source.loopback_octet());
    secret(
        &client,
        p,
        "aws",
        "kubeconfig",
        &kubeconfig::render(&[source.clone().via(&gone)], "source"),
    )
    .await;
    let (c, _) = wait_reason("Unreachable").await;
    assert_eq!(
        c.status
            .as_ref()
            .and_then(|s| s.nodes.as_ref())
            .map(|n| n.count),
        Some(9)
    );

    let _ = stop_tx.send(());
    op.await
        .expect("join")
        .expect("operator stops cleanly on shutdown");
    clusters
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_report_their_references_and_governance() {
    let p = "op-wl";
    let (_, client) = support::clients().await;
    install(&client, p).await;
    let (mig, app, qc, pol) = (
        format!("{p}-migrations"),
        format!("{p}-sante"),
        format!("{p}-sante-qc"),
        format!("{p}-quebec-strict"),
    );
    let (src, dst) = (format!("{p}-src"), format!("{p}-dst"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), args(p, "op-1"), async {
        let _ = stop_rx.await;
    }));
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), &mig);
    let w: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "dossier", "namespace": mig, "labels": {SHARD_LABEL: p}},
        // The target's API never becomes ready (no node has that disk type): the migration stays
        // mid-cutover, waiting for health, until it is deleted below.
        "spec": {"source": {"cluster": src, "namespace": app}, "target": {"cluster": dst, "namespace": qc,
                 "patches": [{"kind": "Deployment", "name": "dossier-api", "operations": [
                     {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {"disktype": "nvme-gen5"}}]}]},
                 "residencyPolicy": pol}
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
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &app);
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": app}})).expect("ns"),
    )
    .await
    .expect("namespace sante");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "dossier-config", "namespace": app}, "data": {"LOG_LEVEL": "info"}})).expect("cm")).await.expect("configmap");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &app);
    deployments
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "dossier-api", "namespace": app}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "dossier-api"}}, "template": {"metadata": {"labels": {"app": "dossier-api"}}, "spec": {"containers": [{"name": "api", "image": "registry.sante.gouv.qc.ca/dossier/api:2.4.1", "envFrom": [{"configMapRef": {"name": "dossier-config"}}]}]}}}})).expect("deployment"),
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
            "metadata": meta(p, name),
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
    let policy: ResidencyPolicy = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy",
        "metadata": {"name": pol},
        "spec": {"allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"], "requirePrivacyImpactAssessment": true}
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
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
        Api::namespaced(client.clone(), &qc);
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
    let approved = s.plan.clone().expect("plan");
    assert_eq!(approved.approved_hash.as_deref(), Some(plan.hash.as_str()));
    assert_eq!(
        approved.approved_by.as_deref(),
        Some("alice@sante.gouv.qc.ca")
    );
    assert!(approved.approved_at.is_some());
    // Plan mode: the plan and the pre-flight, then done (Ready) without touching anything.
    let plan_only: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "plan-only", "namespace": mig, "labels": {SHARD_LABEL: p}},
        "spec": {"source": {"cluster": src, "namespace": app}, "target": {"cluster": dst}, "mode": "Plan", "residencyPolicy": pol,
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
        Api::namespaced(client.clone(), &app);
    // The source's own ConfigMap, and the CA bundle kube-controller-manager publishes in every
    // namespace: nothing else.
    let names: Vec<String> = target_objects
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["dossier-config", "kube-root-ca.crt"],
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
        "metadata": {"name": "to-us", "namespace": mig, "labels": {SHARD_LABEL: p}},
        "spec": {"source": {"cluster": dst, "namespace": app}, "target": {"cluster": src}, "residencyPolicy": pol,
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
            &pol,
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
    // (The garbage collector and the node agent finish the deletions the cleanup started.)
    let left: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(client.clone(), &qc);
    eventually("the half-built target removed", || async {
        left.list(&ListParams::default())
            .await
            .ok()
            .filter(|l| l.items.is_empty())
            .map(|_| ())
    })
    .await;
    let cms_qc: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &qc);
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
    cleanup(&client, p, &[&app, &qc], &["src", "dst"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_replica_leads_and_a_standby_takes_over() {
    let p = "op-lease";
    let (_, client) = support::clients().await;
    install(&client, p).await;
    let (stop1, rx1) = tokio::sync::oneshot::channel::<()>();
    let (stop2, rx2) = tokio::sync::oneshot::channel::<()>();
    let op1 = tokio::spawn(run_with(client.clone(), args(p, "replica-1"), async {
        let _ = rx1.await;
    }));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &format!("{p}-system"));
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
    let op2 = tokio::spawn(run_with(client.clone(), args(p, "replica-2"), async {
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
    cleanup(&client, p, &[], &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_below_the_estimate_pauses_before_data_moves() {
    let p = "op-budget";
    let (_, client) = support::clients().await;
    install(&client, p).await;
    let (mig, app, pol) = (
        format!("{p}-migrations"),
        format!("{p}-registre"),
        format!("{p}-quebec-strict"),
    );
    let (src, dst) = (format!("{p}-src"), format!("{p}-dst"));
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": app}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &app);
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "archives", "namespace": app},
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
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": meta(p, name),
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
    let policy: ResidencyPolicy = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy", "metadata": {"name": pol},
        "spec": {"allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"]}
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    // The operator's exchange-rate ConfigMap overrides the built-in USD→CAD rate.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), &format!("{p}-system"));
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "sovereign-fx", "namespace": format!("{p}-system")},
            "data": {"rates.yaml": "rates:\n- {from: USD, to: CAD, rate: 2.0, asOf: '2026-11-27', source: 'Bank of Canada daily rate (test)'}\n"}}))
        .expect("configmap"),
    )
    .await
    .expect("fx configmap");
    let mut fx_args = args(p, "op-1");
    fx_args.fx_configmap = Some("sovereign-fx".into());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let op = tokio::spawn(run_with(client.clone(), fx_args, async {
        let _ = stop_rx.await;
    }));
    // 100 GiB leave the source at 0.10 CAD/GiB: the estimate is at least 10.00 CAD.
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), &mig);
    let w: SovereignWorkload = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "registre", "namespace": mig, "labels": {SHARD_LABEL: p}},
        "spec": {"source": {"cluster": src, "namespace": app}, "target": {"cluster": dst}, "residencyPolicy": pol,
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
    cleanup(&client, p, &[&app], &["src", "dst"]).await;
}

/// Removes what a test made: its namespaces and its SovereignClusters (`<p>-<name>`).
async fn cleanup(client: &Client, p: &str, namespaces: &[&str], clusters: &[&str]) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let dp = DeleteParams::background();
    for ns in namespaces
        .iter()
        .map(|n| n.to_string())
        .chain([format!("{p}-system"), format!("{p}-migrations")])
    {
        let _ = nss.delete(&ns, &dp).await;
    }
    let api: Api<SovereignCluster> = Api::all(client.clone());
    for c in clusters {
        let _ = api.delete(&format!("{p}-{c}"), &dp).await;
    }
}
