//! The migration end to end on the real clusters: a realistic namespace and its volumes' data
//! move from an EKS-like cluster in us-east-1 to a Québec cluster, with the mover running for
//! real as the node agent's processes. Each test has its own namespaces and operator shard.

use super::support::{self, condition, eventually, phase, tree};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use sovereign::api::VolumeTransfer;
use sovereign::sandbox::demo;
use sovereign::sandbox::network::faults::FaultProxy;

/// The hold the operator puts on a DaemonSet's node selector, if any.
fn held(d: &DaemonSet) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .node_selector
        .as_ref()?
        .get("sovereign.dev/held")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_realistic_namespace_moves_with_its_data() {
    let sb = support::start("mig-arnmwid", json!({})).await;
    // A custom resource of the application, whose CRD both clusters serve.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "retentionrules.sante.gouv.qc.ca"},
        "spec": {"group": "sante.gouv.qc.ca", "scope": "Namespaced",
                 "names": {"plural": "retentionrules", "singular": "retentionrule", "kind": "RetentionRule"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {
                                   "years": {"type": "integer", "minimum": 1}, "appliesTo": {"type": "string"}}}}}}}]}
    });
    for c in [&sb.src, &sb.dst] {
        sovereign::sandbox::objects::apply(c, &crd, "e2e-test")
            .await
            .expect("CRD");
    }
    let rule = json!({
        "apiVersion": "sante.gouv.qc.ca/v1", "kind": "RetentionRule",
        "metadata": {"name": "dossiers-medicaux", "namespace": sb.names.app, "labels": {"app.kubernetes.io/part-of": "dossier"}},
        "spec": {"years": 10, "appliesTo": "dossier-documents"}
    });
    // Served once the CRD is established.
    eventually("the custom resource applied", || async {
        sovereign::sandbox::objects::apply(&sb.src, &rule, "e2e-test")
            .await
            .ok()
    })
    .await;
    // A mover pod's log, read with kubectl through the real API server and the node agent's
    // kubelet API (`-f` until the receiver ends; another receiver if one is gone too soon).
    let receiver_log = tokio::spawn(receiver_log(sb.names.target_app.clone()));
    let (stop, op) = sb.operator("op-move");
    let last = std::sync::Mutex::new(String::new());
    let w = eventually("the migration completes", || async {
        let w = sb.workload().await?;
        let p = phase(&w);
        support::trace(&last, &w);
        if std::env::var("TRACE_TRANSFERS").is_ok() {
            let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
            for vt in vts.list(&ListParams::default()).await.ok()?.items {
                let st = vt.status.clone().unwrap_or_default();
                eprintln!(
                    "[vt {}] {:?} pass {} {}",
                    vt.name_any(),
                    st.phase,
                    st.pass,
                    st.message.unwrap_or_default()
                );
            }
        }
        assert!(
            !["RolledBack", "Failed"].contains(&p.as_str()),
            "migration ended {p}: {:?}",
            w.status.as_ref().and_then(|s| s.message.clone())
        );
        (p == "Completed").then_some(w)
    })
    .await;
    let s = w.status.clone().expect("status");
    assert_eq!(condition(&w, "Ready").map(|c| c.0).as_deref(), Some("True"));
    assert_eq!(
        condition(&w, "DataSynced").map(|c| c.0).as_deref(),
        Some("True")
    );
    let progress = s.progress.clone().expect("progress");
    assert_eq!(progress.percent, 100);
    assert_eq!(progress.objects_done, progress.objects_total);
    assert!(s.cutover_at.is_some() && s.completed_at.is_some());

    // The source is stopped, as recorded before quiescing.
    let src_deploy: Api<Deployment> = Api::namespaced(sb.src.clone(), &sb.names.app);
    let src_sts: Api<StatefulSet> = Api::namespaced(sb.src.clone(), &sb.names.app);
    let src_cron: Api<CronJob> = Api::namespaced(sb.src.clone(), &sb.names.app);
    assert_eq!(
        src_deploy
            .get("dossier-api")
            .await
            .expect("src")
            .spec
            .and_then(|s| s.replicas),
        Some(0)
    );
    assert_eq!(
        src_sts
            .get("dossier-db")
            .await
            .expect("src")
            .spec
            .and_then(|s| s.replicas),
        Some(0)
    );
    assert_eq!(
        src_cron
            .get("dossier-purge")
            .await
            .expect("src")
            .spec
            .and_then(|s| s.suspend),
        Some(true)
    );
    // The node agent is held in the source (no node matches the selector), and runs in the target.
    let src_ds: Api<DaemonSet> = Api::namespaced(sb.src.clone(), &sb.names.app);
    let agent = src_ds.get("dossier-log-agent").await.expect("src ds");
    assert_eq!(
        held(&agent),
        Some("true".to_string()),
        "the source DaemonSet is held"
    );
    assert_eq!(
        agent.status.as_ref().map(|s| s.current_number_scheduled),
        Some(0),
        "no agent pod left in the source"
    );
    assert!(
        s.quiesced.iter().any(|q| q.kind == "DaemonSet"
            && q.name == "dossier-log-agent"
            && q.suspended == Some(false)),
        "{:?}",
        s.quiesced
    );
    let dst_ds: Api<DaemonSet> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    let agent = dst_ds.get("dossier-log-agent").await.expect("target ds");
    assert_eq!(held(&agent), None, "the target DaemonSet was released");
    let st = agent.status.clone().expect("ds status");
    assert!(
        st.desired_number_scheduled > 0 && st.number_ready == st.desired_number_scheduled,
        "{st:?}"
    );
    let recorded: Vec<(String, Option<i32>)> = s
        .quiesced
        .iter()
        .map(|q| (q.name.clone(), q.replicas))
        .collect();
    assert!(
        recorded.contains(&("dossier-api".into(), Some(3))),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&("dossier-db".into(), Some(1))),
        "{recorded:?}"
    );

    // The target serves with the source's replica counts, after the listed transforms.
    let dst_deploy: Api<Deployment> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    let d = dst_deploy
        .get("dossier-api")
        .await
        .expect("target deployment");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(d.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    let tpl = d
        .spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    assert_eq!(
        tpl.containers[0].image.as_deref(),
        Some("registry.sante.gouv.qc.ca/dossier/api:2.4.1")
    );
    assert!(
        tpl.node_selector.unwrap_or_default().is_empty(),
        "the us-east-1 pin is gone"
    );
    let src_d = src_deploy.get("dossier-api").await.expect("src");
    let src_tpl = src_d
        .spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    assert_eq!(tpl.containers[0].env, src_tpl.containers[0].env);
    assert_eq!(tpl.containers[0].env_from, src_tpl.containers[0].env_from);
    let dst_sts: Api<StatefulSet> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    let db = dst_sts.get("dossier-db").await.expect("target sts");
    assert_eq!(db.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    let dst_cron: Api<CronJob> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    assert_eq!(
        dst_cron
            .get("dossier-purge")
            .await
            .expect("cron")
            .spec
            .and_then(|s| s.suspend),
        Some(false)
    );
    for (kind, same) in [
        ("ConfigMap", {
            let a: Api<ConfigMap> = Api::namespaced(sb.src.clone(), &sb.names.app);
            let b: Api<ConfigMap> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
            a.get("dossier-config").await.expect("cm").data
                == b.get("dossier-config").await.expect("cm").data
        }),
        ("Secret", {
            let a: Api<Secret> = Api::namespaced(sb.src.clone(), &sb.names.app);
            let b: Api<Secret> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
            a.get("dossier-db").await.expect("secret").data
                == b.get("dossier-db").await.expect("secret").data
        }),
    ] {
        assert!(same, "{kind} differs between source and target");
    }
    // The IRSA role annotation is gone, with a finding; the AWS load-balancer annotation too.
    let sa: Api<ServiceAccount> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    let sa = sa.get("dossier-api").await.expect("sa");
    assert!(!sa.annotations().contains_key("eks.amazonaws.com/role-arn"));
    let plan = s.plan.clone().expect("plan");
    assert!(
        plan.findings
            .iter()
            .any(|f| f.evidence.contains("role-arn") || f.field.contains("role-arn")),
        "{:?}",
        plan.findings
    );
    let svc: Api<Service> = Api::namespaced(sb.dst.clone(), &sb.names.target_app);
    let svc = svc.get("dossier-api").await.expect("svc");
    assert!(
        !svc.annotations()
            .keys()
            .any(|k| k.contains("aws-load-balancer"))
    );
    for kind in [
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
    ] {
        assert!(plan.transforms.len() > 2, "{kind}: {:?}", plan.transforms);
    }
    let objects = plan.objects as usize;
    assert!(objects >= 17, "{objects} objects planned");
    let rr = kube::core::ApiResource {
        group: "sante.gouv.qc.ca".into(),
        version: "v1".into(),
        api_version: "sante.gouv.qc.ca/v1".into(),
        kind: "RetentionRule".into(),
        plural: "retentionrules".into(),
    };
    let copy = Api::<kube::core::DynamicObject>::namespaced_with(
        sb.dst.clone(),
        &sb.names.target_app,
        &rr,
    )
    .get("dossiers-medicaux")
    .await
    .expect("the custom resource in the target");
    assert_eq!(
        copy.data["spec"],
        json!({"years": 10, "appliesTo": "dossier-documents"})
    );

    // Every volume's tree equals the source's, walked on both sides (not the mover's word for it).
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    let transfers = vts.list(&ListParams::default()).await.expect("vts").items;
    // Three volumes, two of them the database StatefulSet's (data and WAL).
    assert_eq!(transfers.len(), 3);
    for vt in &transfers {
        let st = vt.status.clone().expect("vt status");
        assert!(st.final_pass && st.pass >= 2, "{st:?}");
        assert_eq!(st.source_root_hash, st.target_root_hash);
        assert_eq!(st.pass_wire_bytes.len() as i32, st.pass);
        let claim = &vt.spec.source.pvc;
        let a = sb.source_volume(claim).await;
        let b = sb.target_volume(claim).await;
        let (ta, tb) = (tree(&a), tree(&b));
        assert!(ta.len() > 40, "{claim}: {} entries", ta.len());
        assert_eq!(ta, tb, "{claim}: trees differ");
    }
    assert_eq!(s.volumes.len(), 3);
    assert!(s.volumes.iter().all(|v| v.root_hash.is_some()));
    let log = receiver_log.await.expect("the log reader");
    assert!(
        log.contains("sender authenticated") && log.contains("pass verified"),
        "{log}"
    );
    // The movers' pods, services, certificates and cache claims are gone from both clusters.
    eventually("mover objects removed", || async {
        let mut left = 0;
        for (c, ns) in [
            (&sb.src, sb.names.app.as_str()),
            (&sb.dst, sb.names.target_app.as_str()),
        ] {
            let sel = ListParams::default().labels("app.kubernetes.io/name=sovereign-mover");
            left += Api::<Pod>::namespaced(c.clone(), ns)
                .list(&sel)
                .await
                .ok()?
                .items
                .len();
            left += Api::<Service>::namespaced(c.clone(), ns)
                .list(&sel)
                .await
                .ok()?
                .items
                .len();
            left += Api::<Secret>::namespaced(c.clone(), ns)
                .list(&sel)
                .await
                .ok()?
                .items
                .len();
            // The senders' stat-cache claims too.
            left +=
                Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(c.clone(), ns)
                    .list(&sel)
                    .await
                    .ok()?
                    .items
                    .len();
        }
        (left == 0).then_some(())
    })
    .await;
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// `kubectl logs -f` of the first receiver pod in `ns` that it can follow to its end.
async fn receiver_log(ns: String) -> String {
    let (_, dst) = support::clients().await;
    let pods: Api<Pod> = Api::namespaced(dst, &ns);
    let sel = ListParams::default().labels("app.kubernetes.io/component=receiver");
    let kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
    std::fs::write(
        kubeconfig.path(),
        sovereign::sandbox::controlplane::kubeconfig::render(
            &[support::shared().target_entry("target")],
            "target",
        ),
    )
    .expect("write kubeconfig");
    eventually("a receiver's log through kubectl", || async {
        let running = pods
            .list(&sel)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
        let out = tokio::process::Command::new(support::shared().kubectl())
            .arg("--kubeconfig")
            .arg(kubeconfig.path())
            .args(["logs", "-f", "-n", &ns, &running.name_any()])
            .output()
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("receiver listening")).then_some(text)
    })
    .await
}

async fn replicas(c: &kube::Client, ns: &str, kind: &str, name: &str) -> Option<i32> {
    match kind {
        "Deployment" => {
            Api::<Deployment>::namespaced(c.clone(), ns)
                .get(name)
                .await
                .ok()?
                .spec?
                .replicas
        }
        _ => {
            Api::<StatefulSet>::namespaced(c.clone(), ns)
                .get(name)
                .await
                .ok()?
                .spec?
                .replicas
        }
    }
}

async fn suspended(c: &kube::Client, ns: &str, name: &str) -> Option<bool> {
    Api::<CronJob>::namespaced(c.clone(), ns)
        .get(name)
        .await
        .ok()?
        .spec?
        .suspend
}

async fn settle(sb: &support::Env, want: &[&str]) -> sovereign::api::SovereignWorkload {
    let last = std::sync::Mutex::new(String::new());
    eventually(&format!("the workload in {want:?}"), || async {
        let w = sb.workload().await?;
        support::trace(&last, &w);
        if std::env::var("TRACE_TRANSFERS").is_ok() {
            let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
            for vt in vts.list(&ListParams::default()).await.ok()?.items {
                let st = vt.status.clone().unwrap_or_default();
                eprintln!(
                    "[vt {}] {:?} pass {} {}",
                    vt.name_any(),
                    st.phase,
                    st.pass,
                    st.message.unwrap_or_default()
                );
            }
            for (c, side) in [(&sb.src, "source"), (&sb.dst, "target")] {
                let pods = Api::<Pod>::namespaced(c.clone(), &sb.names.app);
                let sel = ListParams::default().labels("app.kubernetes.io/name=sovereign-mover");
                for p in pods.list(&sel).await.ok()?.items {
                    let st = p.status.clone().unwrap_or_default();
                    let log = pods
                        .logs(&p.name_any(), &Default::default())
                        .await
                        .unwrap_or_default();
                    eprintln!(
                        "[pod {side} {}] {:?} {:?} log: {}",
                        p.name_any(),
                        st.phase,
                        st.conditions
                            .unwrap_or_default()
                            .iter()
                            .map(|c| format!(
                                "{}={} {}",
                                c.type_,
                                c.status,
                                c.message.clone().unwrap_or_default()
                            ))
                            .collect::<Vec<_>>(),
                        log.lines().last().unwrap_or("")
                    );
                }
            }
        }
        want.contains(&phase(&w).as_str()).then_some(w)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_leaves_the_source_untouched_and_plan_touches_nothing() {
    // Plan: the plan, the pre-flight and the estimate in status; nothing in the target.
    let sb = support::start("mig-cltsuaptn", json!({"mode": "Plan"})).await;
    let (stop, op) = sb.operator("op-plan");
    let w = settle(&sb, &["Completed", "Failed", "RolledBack"]).await;
    assert_eq!(
        condition(&w, "Ready").map(|c| c.1).as_deref(),
        Some("PlanReady")
    );
    let s = w.status.clone().expect("status");
    assert!(
        s.plan
            .as_ref()
            .is_some_and(|p| p.objects >= 16 && p.volumes == 3)
    );
    assert!(s.cost.as_ref().and_then(|c| c.estimated.as_ref()).is_some());
    let in_target = Api::<Deployment>::namespaced(sb.dst.clone(), &sb.names.target_app)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert!(
        in_target.items.is_empty(),
        "Plan mode created objects in the target"
    );
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    assert!(
        vts.list(&ListParams::default())
            .await
            .expect("vts")
            .items
            .is_empty()
    );
    support::stop_operator(stop, op).await;
    sb.cleanup().await;

    // Copy: the target runs a copy with the data; the source keeps serving, never touched.
    let sb = support::start("mig-copy", json!({"mode": "Copy"})).await;
    let (stop, op) = sb.operator("op-copy");
    let w = settle(&sb, &["Completed", "Failed", "RolledBack"]).await;
    assert_eq!(
        phase(&w),
        "Completed",
        "{:?}",
        w.status.as_ref().and_then(|s| s.message.clone())
    );
    let s = w.status.clone().expect("status");
    assert!(
        s.quiesced.is_empty(),
        "Copy records nothing to restore: {:?}",
        s.quiesced
    );
    assert_eq!(
        replicas(&sb.src, &sb.names.app, "Deployment", "dossier-api").await,
        Some(3)
    );
    assert_eq!(
        replicas(&sb.src, &sb.names.app, "StatefulSet", "dossier-db").await,
        Some(1)
    );
    // The API server's default, and no write of the operator's in its managedFields.
    assert_eq!(
        suspended(&sb.src, &sb.names.app, "dossier-purge").await,
        Some(false)
    );
    let cron = Api::<CronJob>::namespaced(sb.src.clone(), &sb.names.app)
        .get("dossier-purge")
        .await
        .expect("the source CronJob");
    assert!(
        cron.managed_fields()
            .iter()
            .all(|m| m.manager.as_deref() != Some("sovereign-operator")),
        "the source CronJob was never patched: {:?}",
        cron.managed_fields()
    );
    let src_d = Api::<Deployment>::namespaced(sb.src.clone(), &sb.names.app)
        .get("dossier-api")
        .await
        .expect("src");
    assert_eq!(
        src_d.status.and_then(|s| s.ready_replicas),
        Some(3),
        "the source still serves"
    );
    assert_eq!(
        replicas(&sb.dst, &sb.names.target_app, "Deployment", "dossier-api").await,
        Some(3)
    );
    sb.assert_volumes_equal().await;
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_that_never_gets_healthy_rolls_back_and_the_source_serves_again() {
    // The target's nodes carry no such label: the API's pods stay Pending there.
    let names = demo::Names::for_test("mig-attnghrbat");
    let sb = support::start("mig-attnghrbat", json!({
        "cutover": {"strategy": "Automatic", "healthTimeout": "30s"},
        "target": {"cluster": names.target_cluster, "namespace": names.target_app, "storageClassMap": {"gp3": "ceph-rbd"},
                   "imageRewrites": [{"from": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "to": "registry.sante.gouv.qc.ca"}],
                   "patches": [{"kind": "Deployment", "name": "dossier-api", "operations": [
                       {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {"disktype": "nvme-gen5"}}]}]}
    }))
    .await;
    let (stop, op) = sb.operator("op-rollback");
    let w = settle(&sb, &["RolledBack", "Completed", "Failed"]).await;
    assert_eq!(phase(&w), "RolledBack");
    let ready = condition(&w, "Ready").expect("Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "TargetUnhealthy")
    );
    assert!(
        ready
            .2
            .contains("didn't match Pod's node affinity/selector"),
        "{}",
        ready.2
    );
    assert_eq!(
        condition(&w, "Stalled").map(|c| c.0).as_deref(),
        Some("True")
    );
    // The source was quiesced for the final pass, and is back exactly as it was.
    let s = w.status.clone().expect("status");
    assert!(s.cutover_at.is_some());
    eventually("the source restored", || async {
        (replicas(&sb.src, &sb.names.app, "Deployment", "dossier-api").await == Some(3)
            && replicas(&sb.src, &sb.names.app, "StatefulSet", "dossier-db").await == Some(1)
            && suspended(&sb.src, &sb.names.app, "dossier-purge").await == Some(false))
        .then_some(())
    })
    .await;
    let src_d = eventually("the source serving", || async {
        let d = Api::<Deployment>::namespaced(sb.src.clone(), &sb.names.app)
            .get("dossier-api")
            .await
            .ok()?;
        (d.status.as_ref()?.ready_replicas == Some(3)).then_some(d)
    })
    .await;
    assert_eq!(src_d.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        replicas(&sb.dst, &sb.names.target_app, "Deployment", "dossier-api").await,
        Some(0)
    );
    assert_eq!(
        replicas(&sb.dst, &sb.names.target_app, "StatefulSet", "dossier-db").await,
        Some(0)
    );
    assert_eq!(
        suspended(&sb.dst, &sb.names.target_app, "dossier-purge").await,
        Some(true)
    );
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// The operator is killed (its task aborted, no graceful shutdown) right after every phase change
/// it writes, and also mid-step every few hundred milliseconds — including while it applies the
/// objects, slowed by latency on the target. Each time a fresh operator takes over from what both
/// clusters and the status show. The run still completes once: one cutover, the source's replica
/// counts recorded once (a second cutover would record zeros), no duplicated pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_at_every_phase_boundary_and_mid_step_it_still_completes_once() {
    let sb = support::start("mig-kaepbamsis", json!({"cutover": {"strategy": "Manual"}})).await;
    // Manual approval first: nothing is cut over before the right hash, a stale one is refused.
    let (stop, op) = sb.operator("op-0");
    let w = settle(&sb, &["AwaitingApproval"]).await;
    let hash = w
        .status
        .as_ref()
        .and_then(|s| s.plan.as_ref())
        .map(|p| p.hash.clone())
        .expect("plan hash");
    let approve = |h: String| {
        let api = sb.workloads();
        let name = sb.names.workload.clone();
        async move {
            api.patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"cutover": {"approvedPlanHash": h, "approvedBy": "dpo@sante.gouv.qc.ca"}}})),
            )
            .await
            .expect("approve");
        }
    };
    approve("ab".repeat(32)).await;
    let stale = eventually("a stale hash refused", || async {
        let w = sb.workload().await?;
        (condition(&w, "Approved")?.1 == "StalePlanHash").then_some(w)
    })
    .await;
    assert_eq!(phase(&stale), "AwaitingApproval");
    assert_eq!(
        replicas(&sb.src, &sb.names.app, "Deployment", "dossier-api").await,
        Some(3)
    );
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    assert!(
        vts.list(&ListParams::default())
            .await
            .expect("vts")
            .items
            .is_empty(),
        "nothing moves before approval"
    );
    op.abort();
    let _ = op.await;
    drop(stop);

    // Slow requests to the target (through a fault proxy of this test's own) so that a kill
    // lands while objects are being applied.
    let proxy = FaultProxy::start(&support::shared().target).expect("fault proxy");
    let slow = support::client(proxy.entry("target-slow")).await;
    proxy
        .faults()
        .set_latency(std::time::Duration::from_millis(15));
    approve(hash).await;
    let mut generation = 0;
    let mut seen: Vec<String> = Vec::new();
    let mut first_cutover = None;
    let started = tokio::time::Instant::now();
    // An operator killed before it wrote anything had too little time (a real API server and
    // shared cores are slower than a fixed interval assumes): the next one gets twice as long.
    let mut stalled = 0u32;
    let done = loop {
        generation += 1;
        let (_stop, op) = sb.operator_with(slow.clone(), &format!("op-{generation}"));
        let before = sb.workload().await;
        let rv_start = before.as_ref().and_then(|w| w.resource_version());
        let at_start = before.as_ref().map(phase).unwrap_or_default();
        // A phase written just before the previous operator was killed is seen here first.
        if !at_start.is_empty() && seen.last() != Some(&at_start) {
            seen.push(at_start.clone());
        }
        let kill_at = tokio::time::Instant::now()
            + std::time::Duration::from_millis((300 + 170 * (generation % 5)) << stalled.min(4));
        let mut finished = None;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let Some(w) = sb.workload().await else {
                continue;
            };
            let p = phase(&w);
            if seen.last() != Some(&p) {
                seen.push(p.clone());
            }
            if let Some(t) = w.status.as_ref().and_then(|s| s.cutover_at.clone()) {
                let first = first_cutover.get_or_insert(t.clone());
                assert_eq!(*first, t, "a second cutover");
            }
            if p == "Completed" {
                finished = Some(w);
                break;
            }
            assert!(
                !["RolledBack", "Failed"].contains(&p.as_str()),
                "ended {p}: {:?}",
                w.status.and_then(|s| s.message)
            );
            if p != at_start || tokio::time::Instant::now() > kill_at {
                break;
            }
        }
        op.abort();
        let _ = op.await;
        let rv_end = sb.workload().await.and_then(|w| w.resource_version());
        stalled = if rv_end == rv_start { stalled + 1 } else { 0 };
        if let Some(w) = finished {
            break w;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(240),
            "no progress: {seen:?}"
        );
    };
    proxy.faults().set_latency(std::time::Duration::ZERO);
    eprintln!("[crash] {generation} operator(s) killed; phases seen: {seen:?}");
    assert!(
        generation >= 5,
        "only {generation} operators: the test did not kill enough"
    );
    for p in ["Replicating", "CuttingOver", "Verifying", "Completed"] {
        assert!(seen.iter().any(|s| s == p), "{p} not seen in {seen:?}");
    }
    let s = done.status.clone().expect("status");
    let recorded: Vec<(String, Option<i32>, Option<bool>)> = s
        .quiesced
        .iter()
        .map(|q| (q.name.clone(), q.replicas, q.suspended))
        .collect();
    assert!(
        recorded.contains(&("dossier-api".into(), Some(3), None)),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&("dossier-db".into(), Some(1), None)),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&("dossier-purge".into(), None, Some(false))),
        "{recorded:?}"
    );
    assert_eq!(
        s.plan
            .as_ref()
            .and_then(|p| p.approved_by.clone())
            .as_deref(),
        Some("dpo@sante.gouv.qc.ca")
    );
    // No duplicates: the target runs exactly the source's replica counts, one transfer per volume.
    let pods = Api::<Pod>::namespaced(sb.dst.clone(), &sb.names.target_app)
        .list(&ListParams::default().labels("app=dossier-api"))
        .await
        .expect("pods");
    assert_eq!(
        pods.items.len(),
        3,
        "{:?}",
        pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    let transfers = vts.list(&ListParams::default()).await.expect("vts").items;
    // Three volumes, two of them the database StatefulSet's (data and WAL).
    assert_eq!(transfers.len(), 3);
    for vt in &transfers {
        let st = vt.status.clone().expect("status");
        assert_eq!(st.source_root_hash, st.target_root_hash);
        assert_eq!(
            st.pass_wire_bytes.len() as i32,
            st.pass,
            "one wire-bytes entry per pass: {st:?}"
        );
        let claim = &vt.spec.source.pvc;
        let a = sb.source_volume(claim).await;
        let b = sb.target_volume(claim).await;
        assert_eq!(tree(&a), tree(&b), "{claim}");
    }
    assert_eq!(
        replicas(&sb.src, &sb.names.app, "Deployment", "dossier-api").await,
        Some(0)
    );
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_pauses_before_data_moves_and_the_actual_cost_is_the_wire_bytes_priced() {
    // Prices chosen so that only egress costs anything: the actual is then wire bytes × price.
    let sb = support::start(
        "mig-abpbdmatac",
        json!({"cost": {"currency": "CAD", "budget": {"amount": 1, "currency": "CAD"}}}),
    )
    .await;
    let clusters: Api<sovereign::api::SovereignCluster> = Api::all(sb.dst.clone());
    let free = json!({"storagePerGiBMonth": {}, "vcpuHour": 0, "memoryGiBHour": 0, "loadBalancerHour": 0, "controlPlaneHour": 0});
    let mut aws = free.clone();
    aws["currency"] = json!("USD");
    aws["egressPerGiB"] = json!(1000.0);
    aws["freeEgressGiB"] = json!(0);
    aws["storagePerGiBMonth"] = json!({"gp3": 0});
    let mut qc = free;
    qc["currency"] = json!("CAD");
    qc["egressPerGiB"] = json!(0);
    qc["storagePerGiBMonth"] = json!({"ceph-rbd": 0});
    for (name, pricing) in [
        (sb.names.source_cluster.as_str(), aws),
        (sb.names.target_cluster.as_str(), qc),
    ] {
        clusters
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"pricing": pricing}})),
            )
            .await
            .expect("pricing");
    }
    // A merge patch keeps the demo's egress tiers, which would win over egressPerGiB: drop them.
    clusters
        .patch(
            &sb.names.source_cluster,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"pricing": {"egressTiers": null}}})),
        )
        .await
        .expect("no tiers");
    let (stop, op) = sb.operator("op-cost");
    let w = settle(&sb, &["Paused", "Completed", "RolledBack", "Failed"]).await;
    assert_eq!(phase(&w), "Paused");
    let within = condition(&w, "WithinBudget").expect("WithinBudget");
    assert_eq!(
        (within.0.as_str(), within.1.as_str()),
        ("False", "OverBudget")
    );
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    assert!(
        vts.list(&ListParams::default())
            .await
            .expect("vts")
            .items
            .is_empty(),
        "no data moved over budget"
    );
    assert!(
        Api::<Deployment>::namespaced(sb.dst.clone(), &sb.names.target_app)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // Raising the budget resumes.
    sb.workloads()
        .patch(
            &sb.names.workload,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"cost": {"budget": {"amount": 100000000, "currency": "CAD"}}}}),
            ),
        )
        .await
        .expect("raise");
    let w = settle(&sb, &["Completed", "RolledBack", "Failed"]).await;
    assert_eq!(phase(&w), "Completed");
    let s = w.status.clone().expect("status");
    let actual = s
        .cost
        .as_ref()
        .and_then(|c| c.actual.clone())
        .expect("actual cost");
    let transfers = vts.list(&ListParams::default()).await.expect("vts").items;
    let wire: i64 = transfers
        .iter()
        .map(|t| t.status.clone().unwrap_or_default().wire_bytes)
        .sum();
    assert_eq!(actual.wire_bytes, wire, "every pass counted once");
    assert!(wire > 6 << 20, "{wire}");
    let gib = wire as f64 / (1u64 << 30) as f64;
    // The built-in USD→CAD rate (sovereign's fx table) is 1.38.
    let expected = gib * 1000.0 * 1.38;
    assert!(
        (actual.one_time - expected).abs() <= 0.011,
        "actual {} vs {expected:.4} = {wire} B × 1000 USD/GiB × 1.38",
        actual.one_time
    );
    assert!(
        s.cost
            .as_ref()
            .and_then(|c| c.display.clone())
            .is_some_and(|d| d.contains("CAD"))
    );
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// After completion the residency check runs again on what actually runs: a pod rescheduled onto a
/// node pool of a US cloud flips `ResidencyCompliant` to False with the evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_after_completion_flips_the_residency_condition() {
    let sb = support::start("mig-dacftrc", json!({})).await;
    let (stop, op) = sb.operator("op-drift");
    let w = settle(&sb, &["Completed", "RolledBack", "Failed"]).await;
    assert_eq!(phase(&w), "Completed");
    let compliant = condition(&w, "ResidencyCompliant").expect("condition");
    assert_eq!(
        (compliant.0.as_str(), compliant.1.as_str()),
        ("True", "Compliant"),
        "{}",
        compliant.2
    );
    assert_eq!(
        w.status
            .as_ref()
            .and_then(|s| s.residency.as_ref())
            .and_then(|r| r.location.clone())
            .as_deref(),
        Some("CA-QC")
    );
    // Someone points the running API back at its US registry (the other tests share this
    // cluster's nodes, so the drift is this workload's own).
    Api::<Deployment>::namespaced(sb.dst.clone(), &sb.names.target_app)
        .patch(
            "dossier-api",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "api", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dossier/api:2.4.2"}]}}}})),
        )
        .await
        .expect("a US image");
    let drifted = eventually("the drift detected", || async {
        let w = sb.workload().await?;
        (condition(&w, "ResidencyCompliant")?.1 == "Drifted").then_some(w)
    })
    .await;
    let c = condition(&drifted, "ResidencyCompliant").expect("condition");
    assert_eq!(c.0, "False");
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(sb.dst.clone(), &sb.names.workloads);
    eventually("a ResidencyDrifted Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("ResidencyDrifted")
                    && e.type_.as_deref() == Some("Warning")
            })
            .then_some(())
    })
    .await;
    let r = drifted
        .status
        .as_ref()
        .and_then(|s| s.residency.clone())
        .expect("residency");
    assert_eq!(r.verdict, sovereign::api::Verdict::NonCompliant);
    assert!(
        r.findings
            .iter()
            .any(|f| f.evidence.contains("dkr.ecr.us-east-1.amazonaws.com")),
        "{:?}",
        r.findings
    );
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// `consistency: Snapshot` in Copy mode: every pass's sender reads a claim restored from a
/// VolumeSnapshot taken for that pass (never the live claim), each snapshot is created once even
/// though the operator is killed after each of its first steps, the copy completes with the data,
/// and the snapshots, their claims and the movers are gone from the source afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_consistency_copies_each_pass_from_a_snapshot_and_leaves_nothing_behind() {
    use futures::StreamExt;
    use kube::api::DynamicObject;
    use kube::runtime::watcher;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    let sb = support::start(
        "mig-sccepfasal",
        json!({"mode": "Copy", "data": {"consistency": "Snapshot"}}),
    )
    .await;
    let snapshots: Api<DynamicObject> = Api::namespaced_with(
        sb.src.clone(),
        &sb.names.app,
        &sovereign::migrate::snapshot::volume_snapshots(),
    );
    // What the source saw, recorded by watches opened before the operator starts: each
    // VolumeSnapshot's claim and uids, and each sender's claim.
    type Seen = Arc<Mutex<BTreeMap<String, (String, BTreeSet<String>)>>>;
    let seen_snapshots: Seen = Arc::default();
    let seen_senders: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut snap_events = watcher(snapshots.clone(), watcher::Config::default()).boxed();
    let mut pod_events = watcher(
        Api::<Pod>::namespaced(sb.src.clone(), &sb.names.app),
        watcher::Config::default().labels("app.kubernetes.io/component=sender"),
    )
    .boxed();
    // Both watches are established (their initial lists done) before anything is created.
    while !matches!(
        snap_events.next().await,
        Some(Ok(watcher::Event::InitDone)) | None
    ) {}
    while !matches!(
        pod_events.next().await,
        Some(Ok(watcher::Event::InitDone)) | None
    ) {}
    let snaps = seen_snapshots.clone();
    let w1 = tokio::spawn(async move {
        while let Some(ev) = snap_events.next().await {
            if let Ok(watcher::Event::Apply(o)) = ev {
                let claim = o.data["spec"]["source"]["persistentVolumeClaimName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut seen = snaps.lock().expect("lock");
                let e = seen.entry(o.name_any()).or_default();
                e.0 = claim;
                e.1.insert(o.uid().unwrap_or_default());
            }
        }
    });
    let senders = seen_senders.clone();
    let w2 = tokio::spawn(async move {
        while let Some(ev) = pod_events.next().await {
            if let Ok(watcher::Event::Apply(p)) = ev {
                let claim = p
                    .spec
                    .and_then(|s| s.volumes)
                    .unwrap_or_default()
                    .into_iter()
                    .find(|v| v.name == "data")
                    .and_then(|v| v.persistent_volume_claim)
                    .map(|c| c.claim_name)
                    .unwrap_or_default();
                senders
                    .lock()
                    .expect("lock")
                    .insert(p.metadata.name.unwrap_or_default(), claim);
            }
        }
    });

    // Killed after each of its first steps (a transfer's status changed): it resumes from what it
    // finds by name.
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    let state = || async {
        let list = vts.list(&ListParams::default()).await.ok()?.items;
        Some(
            list.iter()
                .map(|vt| {
                    let st = vt.status.clone().unwrap_or_default();
                    format!(
                        "{:?}/{}/{}",
                        st.phase,
                        st.pass,
                        st.message.unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let mut kills = 0;
    while kills < 12 {
        let (_stop, op) = sb.operator(&format!("op-snapshot-{kills}"));
        let before = state().await;
        eventually("a step of a transfer", || async {
            let now = state().await;
            (now != before
                || sb
                    .workload()
                    .await
                    .is_some_and(|w| phase(&w) == "Completed"))
            .then_some(())
        })
        .await;
        op.abort();
        let _ = op.await;
        kills += 1;
        eprintln!(
            "[kill {kills}] after {:?}",
            state().await.unwrap_or_default()
        );
    }
    let (stop, op) = sb.operator("op-snapshot");
    let w = settle(&sb, &["Completed", "Failed", "RolledBack"]).await;
    assert_eq!(
        phase(&w),
        "Completed",
        "{:?}",
        w.status.as_ref().and_then(|s| s.message.clone())
    );
    sb.assert_volumes_equal().await;
    // Each pass read its own snapshot of its own claim, taken once: a pre-copy and a final pass
    // per volume.
    let transfers = vts.list(&ListParams::default()).await.expect("vts").items;
    // Three volumes, two of them the database StatefulSet's (data and WAL).
    assert_eq!(transfers.len(), 3);
    let snaps = seen_snapshots.lock().expect("lock").clone();
    let senders = seen_senders.lock().expect("lock").clone();
    for vt in &transfers {
        let st = vt.status.clone().unwrap_or_default();
        assert_eq!(st.pass, 2, "{}: {:?}", vt.name_any(), st.message);
        for pass in 1..=st.pass {
            let snap = format!("{}-snap-{pass}", vt.name_any());
            let (of, uids) = snaps.get(&snap).cloned().unwrap_or_default();
            assert_eq!(
                of,
                vt.spec.source.pvc,
                "pass {pass} of {} snapshots its claim: {snaps:?}",
                vt.name_any()
            );
            assert_eq!(uids.len(), 1, "{snap} created once: {uids:?}");
            let prefix = format!("{}-send-{pass}-", vt.name_any());
            let readers: Vec<&String> = senders
                .iter()
                .filter(|(pod, _)| pod.starts_with(&prefix))
                .map(|(_, claim)| claim)
                .collect();
            assert!(
                !readers.is_empty(),
                "no sender for pass {pass}: {senders:?}"
            );
            assert!(
                readers.iter().all(|c| **c == snap),
                "the senders of pass {pass} read {readers:?}, not the claim restored from {snap}"
            );
        }
    }
    // Nothing of the movers stays in the source: no snapshot, no restored claim, no pod.
    eventually("the source cleaned of mover objects", || async {
        let sel = ListParams::default().labels("app.kubernetes.io/name=sovereign-mover");
        let left_snaps = snapshots.list(&ListParams::default()).await.ok()?.items;
        let left_claims: Vec<String> =
            Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
                sb.src.clone(),
                &sb.names.app,
            )
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|c| c.name_any())
            .filter(|n| n.contains("-snap-"))
            .collect();
        let left_pods = Api::<Pod>::namespaced(sb.src.clone(), &sb.names.app)
            .list(&sel)
            .await
            .ok()?
            .items;
        (left_snaps.is_empty() && left_claims.is_empty() && left_pods.is_empty()).then_some(())
    })
    .await;
    // The live claims were never touched: the source still serves, unscaled.
    assert_eq!(
        replicas(&sb.src, &sb.names.app, "StatefulSet", "dossier-db").await,
        Some(1)
    );
    w1.abort();
    w2.abort();
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// `consistency: Snapshot` with no VolumeSnapshotClass for the source's CSI driver: refused at the
/// plan, before any VolumeTransfer or target object exists, with the driver named.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_consistency_without_a_snapshot_class_is_refused_before_anything_moves() {
    // The application's claims on EFS, whose CSI driver has no snapshots (the shared source's
    // EBS class stays for the other tests).
    let sb = support::start_with(
        "mig-scwascirba",
        json!({"mode": "Copy", "data": {"consistency": "Snapshot"}}),
        |objs| {
            for o in objs.iter_mut() {
                if o["spec"]["storageClassName"] == "gp3" {
                    o["spec"]["storageClassName"] = json!("efs-sc");
                }
            }
        },
    )
    .await;
    let (stop, op) = sb.operator("op-no-class");
    let last = std::sync::Mutex::new(String::new());
    let w = eventually("the workload refused", || async {
        let w = sb.workload().await?;
        support::trace(&last, &w);
        let ready = condition(&w, "Ready")?;
        assert_ne!(
            phase(&w),
            "Completed",
            "a Snapshot copy without a class completed"
        );
        (ready.1 == "PlanHasErrors").then_some(w)
    })
    .await;
    let (status, _, message) = condition(&w, "Ready").expect("Ready");
    assert_eq!(status, "False");
    assert!(message.contains("efs.csi.aws.com"), "{message}");
    assert!(message.contains("VolumeSnapshotClass"), "{message}");
    assert_eq!(
        condition(&w, "Stalled").map(|c| c.0).as_deref(),
        Some("True")
    );
    let findings = w
        .status
        .as_ref()
        .and_then(|s| s.plan.as_ref())
        .map(|p| p.findings.clone())
        .unwrap_or_default();
    assert!(
        findings
            .iter()
            .any(|f| f.object == "PersistentVolumeClaim/data-dossier-db-0"
                && f.evidence.contains("efs.csi.aws.com")),
        "{findings:?}"
    );
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    assert!(
        vts.list(&ListParams::default())
            .await
            .expect("vts")
            .items
            .is_empty()
    );
    assert!(
        Api::<Deployment>::namespaced(sb.dst.clone(), &sb.names.target_app)
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was applied in the target"
    );
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

/// The sender's stat cache: every sender of a transfer keeps it in a claim of the transfer's own in
/// the source (`<transfer>-cache`), so that a later pass — the final one is the downtime — takes
/// unchanged files from it instead of reading and hashing them again (each sender's `verified`
/// line counts them, read from the sender's log as it runs); the claim goes with the movers. A
/// claim of that name which the transfer did not create is left alone, and that volume's passes
/// run without a cache, which the transfer says once (its message and a Warning Event) and keeps
/// saying in its `SenderCache` condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_senders_stat_cache_spares_later_passes_reading_unchanged_files() {
    use futures::{AsyncBufReadExt, StreamExt};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kube::api::{LogParams, PostParams};
    use kube::runtime::watcher;
    use sovereign::controller::migration::volumes::transfer_name;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};

    let sb = support::start(
        "mig-tsscslpruf",
        json!({"mode": "Copy", "data": {"preCopyPasses": 2}}),
    )
    .await;
    let cached = transfer_name(&sb.names.workload, "dossier-documents");
    let uncached = transfer_name(&sb.names.workload, "data-dossier-db-0");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(sb.src.clone(), &sb.names.app);
    let foreign_name = format!("{uncached}-cache");
    let foreign = claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": foreign_name, "labels": {"app": "reports"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }))
            .expect("claim"),
        )
        .await
        .expect("a claim named like a cache, of someone else's");

    // Every sender's arguments, and its whole log: followed from the moment its container runs
    // until it stops, so that it is kept even though the operator deletes the pod soon after.
    type Seen<T> = Arc<Mutex<BTreeMap<String, T>>>;
    let logs: Seen<String> = Arc::default();
    let args: Seen<Vec<String>> = Arc::default();
    let pods: Api<Pod> = Api::namespaced(sb.src.clone(), &sb.names.app);
    let mut pod_events = watcher(
        pods.clone(),
        watcher::Config::default().labels("app.kubernetes.io/component=sender"),
    )
    .boxed();
    // And every message of the transfers.
    let messages: Seen<Vec<String>> = Arc::default();
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    let mut vt_events = watcher(vts.clone(), watcher::Config::default()).boxed();
    while !matches!(
        pod_events.next().await,
        Some(Ok(watcher::Event::InitDone)) | None
    ) {}
    while !matches!(
        vt_events.next().await,
        Some(Ok(watcher::Event::InitDone)) | None
    ) {}
    let (l, a, sender_pods) = (logs.clone(), args.clone(), pods.clone());
    let w1 = tokio::spawn(async move {
        let mut following = BTreeSet::new();
        while let Some(ev) = pod_events.next().await {
            let Ok(watcher::Event::Apply(p)) = ev else {
                continue;
            };
            let name = p.name_any();
            let spec = p.spec.clone().unwrap_or_default();
            a.lock().expect("lock").insert(
                name.clone(),
                spec.containers[0].args.clone().unwrap_or_default(),
            );
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            if !["Running", "Succeeded", "Failed"].contains(&phase.as_str())
                || !following.insert(name.clone())
            {
                continue;
            }
            let (pods, l) = (sender_pods.clone(), l.clone());
            tokio::spawn(async move {
                let lp = LogParams {
                    follow: true,
                    container: Some("sender".into()),
                    ..LogParams::default()
                };
                let Ok(stream) = pods.log_stream(&name, &lp).await else {
                    return;
                };
                let mut lines = std::pin::pin!(stream.lines());
                while let Some(Ok(line)) = lines.next().await {
                    let mut l = l.lock().expect("lock");
                    let log = l.entry(name.clone()).or_default();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
    });
    let m = messages.clone();
    let w2 = tokio::spawn(async move {
        while let Some(ev) = vt_events.next().await {
            if let Ok(watcher::Event::Apply(vt)) = ev
                && let Some(msg) = vt.status.and_then(|s| s.message)
            {
                let mut m = m.lock().expect("lock");
                let seen = m.entry(vt.metadata.name.unwrap_or_default()).or_default();
                if seen.last() != Some(&msg) {
                    seen.push(msg);
                }
            }
        }
    });

    let (stop, op) = sb.operator("op-cache");
    let w = settle(&sb, &["Completed", "Failed", "RolledBack"]).await;
    assert_eq!(
        phase(&w),
        "Completed",
        "{:?}",
        w.status.as_ref().and_then(|s| s.message.clone())
    );
    sb.assert_volumes_equal().await;

    // Each pass's verified sender: the files it took from the cache, and whether it had one.
    let verified = |transfer: &str, pass: i32| -> (u64, bool) {
        let prefix = format!("{transfer}-send-{pass}-");
        let logs = logs.lock().expect("lock");
        let args = args.lock().expect("lock");
        let (pod, line) = logs
            .iter()
            .filter(|(pod, _)| pod.starts_with(&prefix))
            .find_map(|(pod, log)| {
                log.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["event"] == "verified")
                    .map(|v| (pod.clone(), v))
            })
            .unwrap_or_else(|| panic!("no verified sender of pass {pass} of {transfer}: {logs:?}"));
        let with_cache = args
            .get(&pod)
            .is_some_and(|a| a.windows(2).any(|w| w == ["--cache", "/cache/sender.idx"]));
        let cached = line["cachedFiles"]
            .as_u64()
            .unwrap_or_else(|| panic!("{pod}: no cachedFiles in {line}"));
        (cached, with_cache)
    };
    for vt in [&cached, &uncached] {
        let st = vts.get(vt).await.expect("vt").status.unwrap_or_default();
        assert_eq!((st.pass, st.final_pass), (3, true), "{vt}: {st:?}");
    }
    // The first pass fills the cache; the second pre-copy and the final pass read from it at least
    // the 40 records written before the migration and never touched since.
    assert_eq!(verified(&cached, 1), (0, true));
    for pass in [2, 3] {
        let (files, with_cache) = verified(&cached, pass);
        assert!(with_cache, "pass {pass} of {cached} without --cache");
        assert!(
            files >= 40,
            "pass {pass} of {cached} took {files} files from its cache"
        );
    }
    // The other volume ran without one: its senders read everything, every time.
    for pass in 1..=3 {
        assert_eq!(verified(&uncached, pass), (0, false), "pass {pass}");
    }
    let condition_of = |vt: &VolumeTransfer| {
        vt.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "SenderCache"))
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            .unwrap_or_default()
    };
    let c = condition_of(&vts.get(&cached).await.expect("vt"));
    assert_eq!(
        (c.0.as_str(), c.1.as_str()),
        ("True", "ClaimReady"),
        "{c:?}"
    );
    let c = condition_of(&vts.get(&uncached).await.expect("vt"));
    assert_eq!(
        (c.0.as_str(), c.1.as_str()),
        ("False", "Unavailable"),
        "{c:?}"
    );
    assert!(
        c.2.contains(&foreign_name) && c.2.contains("did not create"),
        "{c:?}"
    );
    let said = messages
        .lock()
        .expect("lock")
        .get(&uncached)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        said.iter()
            .filter(|m| m.contains("without the sender's stat cache"))
            .count(),
        1,
        "said once: {said:#?}"
    );
    let events =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(sb.dst.clone(), &sb.names.workloads);
    let warned: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SenderCacheUnavailable"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert_eq!(
        warned[0].regarding.as_ref().and_then(|r| r.name.clone()),
        Some(uncached.clone())
    );
    assert!(warned[0].series.is_none(), "published once: {warned:#?}");

    // The transfer's cache claim went with the movers; the other claim is untouched.
    eventually("the cache claim removed", || async {
        let sel = ListParams::default().labels("app.kubernetes.io/name=sovereign-mover");
        let left = claims.list(&sel).await.ok()?.items;
        let pods = pods.list(&sel).await.ok()?.items;
        (left.is_empty() && pods.is_empty()).then_some(())
    })
    .await;
    let still = claims.get(&foreign_name).await.expect("the other claim");
    assert_eq!(still.uid(), foreign.uid());
    assert_eq!(still.labels(), foreign.labels());
    assert_eq!(still.metadata.deletion_timestamp, None);

    w1.abort();
    w2.abort();
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_that_refuses_the_movers_pods_is_said_and_the_copy_resumes_once_it_admits_them()
{
    // The source namespace enforces Pod Security "restricted"; the movers need root (to read
    // every file and give owners back), which only "baseline" admits.
    let sb = support::start("mig-psa", json!({"mode": "Copy"})).await;
    let level = |l: &str| {
        kube::api::Patch::Merge(
            json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": l}}}),
        )
    };
    let pp = kube::api::PatchParams::default();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(sb.src.clone())
        .patch(&sb.names.app, &pp, &level("restricted"))
        .await
        .expect("label the source namespace");
    let (stop, op) = sb.operator("op-psa");
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), &sb.names.workloads);
    let message = eventually("a VolumeTransfer saying why its pod is refused", || async {
        vts.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|t| t.status.and_then(|s| s.message))
            .find(|m| m.contains("violates PodSecurity"))
    })
    .await;
    assert!(
        message.contains("refused the mover's")
            && message.contains("\"restricted:latest\"")
            && message.contains("runAsUser=0")
            && message.contains("baseline"),
        "{message}"
    );
    let w = sb.workload().await.expect("workload");
    assert_eq!(phase(&w), "Replicating", "nothing failed meanwhile");
    // The namespaces admit them now: the copy goes on by itself and completes.
    for c in [&sb.src, &sb.dst] {
        let nss = Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone());
        if nss
            .get_opt(&sb.names.app)
            .await
            .expect("namespace")
            .is_some()
        {
            nss.patch(&sb.names.app, &pp, &level("baseline"))
                .await
                .expect("relabel");
        }
    }
    let w = settle(&sb, &["Completed", "Failed", "RolledBack"]).await;
    assert_eq!(
        phase(&w),
        "Completed",
        "{:?}",
        w.status.as_ref().and_then(|s| s.message.clone())
    );
    sb.assert_volumes_equal().await;
    support::stop_operator(stop, op).await;
    sb.cleanup().await;
}
