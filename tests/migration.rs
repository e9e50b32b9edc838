//! The migration end to end on the sandbox: a realistic namespace and its volumes' data move from
//! an EKS-like cluster in us-east-1 to a Québec cluster, with the mover running for real.

mod support;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;
use sovereign::api::VolumeTransfer;
use sovereign::sandbox::demo;
use support::{condition, eventually, phase, tree};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_realistic_namespace_moves_with_its_data() {
    let sb = support::start(json!({})).await;
    let (stop, op) = sb.operator("op-move");
    let last = std::sync::Mutex::new(String::new());
    let w = eventually("the migration completes", || async {
        let w = sb.workload().await?;
        let p = phase(&w);
        support::trace(&last, &w);
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
    let src_deploy: Api<Deployment> = Api::namespaced(sb.src.clone(), "sante");
    let src_sts: Api<StatefulSet> = Api::namespaced(sb.src.clone(), "sante");
    let src_cron: Api<CronJob> = Api::namespaced(sb.src.clone(), "sante");
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
    let dst_deploy: Api<Deployment> = Api::namespaced(sb.dst.clone(), "sante");
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
    let dst_sts: Api<StatefulSet> = Api::namespaced(sb.dst.clone(), "sante");
    let db = dst_sts.get("dossier-db").await.expect("target sts");
    assert_eq!(db.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    let dst_cron: Api<CronJob> = Api::namespaced(sb.dst.clone(), "sante");
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
            let a: Api<ConfigMap> = Api::namespaced(sb.src.clone(), "sante");
            let b: Api<ConfigMap> = Api::namespaced(sb.dst.clone(), "sante");
            a.get("dossier-config").await.expect("cm").data
                == b.get("dossier-config").await.expect("cm").data
        }),
        ("Secret", {
            let a: Api<Secret> = Api::namespaced(sb.src.clone(), "sante");
            let b: Api<Secret> = Api::namespaced(sb.dst.clone(), "sante");
            a.get("dossier-db").await.expect("secret").data
                == b.get("dossier-db").await.expect("secret").data
        }),
    ] {
        assert!(same, "{kind} differs between source and target");
    }
    // The IRSA role annotation is gone, with a finding; the AWS load-balancer annotation too.
    let sa: Api<ServiceAccount> = Api::namespaced(sb.dst.clone(), "sante");
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
    let svc: Api<Service> = Api::namespaced(sb.dst.clone(), "sante");
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
    assert!(objects >= 16, "{objects} objects planned");

    // Every volume's tree equals the source's, walked on both sides (not the mover's word for it).
    let vts: Api<VolumeTransfer> = Api::namespaced(sb.dst.clone(), demo::WORKLOAD_NAMESPACE);
    let transfers = vts.list(&ListParams::default()).await.expect("vts").items;
    assert_eq!(transfers.len(), 2);
    for vt in &transfers {
        let st = vt.status.clone().expect("vt status");
        assert!(st.final_pass && st.pass >= 2, "{st:?}");
        assert_eq!(st.source_root_hash, st.target_root_hash);
        assert_eq!(st.pass_wire_bytes.len() as i32, st.pass);
        let claim = &vt.spec.source.pvc;
        let a = sb
            .source
            .volume_path("sante", claim)
            .expect("source volume");
        let b = sb
            .target
            .volume_path("sante", claim)
            .expect("target volume");
        let (ta, tb) = (tree(&a), tree(&b));
        assert!(ta.len() > 40, "{claim}: {} entries", ta.len());
        assert_eq!(ta, tb, "{claim}: trees differ");
    }
    assert_eq!(s.volumes.len(), 2);
    assert!(s.volumes.iter().all(|v| v.root_hash.is_some()));
    // The movers' pods, services and certificates are gone from both clusters.
    eventually("mover objects removed", || async {
        let mut left = 0;
        for (c, ns) in [(&sb.src, "sante"), (&sb.dst, "sante")] {
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
        }
        (left == 0).then_some(())
    })
    .await;
    let _ = stop.send(());
    let _ = op.await;
    sb.shutdown().await;
}
