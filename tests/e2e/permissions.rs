//! The operator with the source-access chart's rights in the source (rendered by Helm, applied
//! by the admin, the token issued by the token controller): a rule taken away stops the
//! migration at the step that needs it, with a condition naming the refused permission and the
//! source left serving; granted back, the migration resumes from what it observes and completes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use sovereign::api::workload::Phase;
use sovereign::sandbox::controlplane::kubeconfig;
use sovereign::sandbox::demo::{self, Names};
use sovereign::sandbox::{install, objects};

use crate::support::{self, Env, eventually};

/// The source-access chart for `names`' source namespace, as Helm renders it, with the
/// ServiceAccount `account` in that namespace.
async fn rendered(names: &Names, account: &str, dir: &std::path::Path) -> Vec<Value> {
    let sh = support::shared();
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, sh.source.kubeconfig_yaml("source")).expect("kubeconfig");
    let helm = install::Helm::new(sh.bins.helm(), &kc, dir);
    let chart = install::source_chart(dir).expect("chart");
    let values = [
        ("namespaces", format!("{{{}}}", names.app)),
        ("serviceAccount.name", account.to_string()),
    ];
    let yaml = helm
        .template(account, &chart, &names.app, &values)
        .await
        .expect("helm template");
    serde_yaml::Deserializer::from_str(&yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| v.is_object())
        .collect()
}

/// The same objects with `resource` taken out of the Role's rule that grants `verb` on it.
fn without(docs: &[Value], group: &str, resource: &str, verb: &str) -> Vec<Value> {
    let mut out = docs.to_vec();
    let mut removed = false;
    for d in out.iter_mut().filter(|d| d["kind"] == "Role") {
        for rule in d["rules"].as_array_mut().into_iter().flatten() {
            if rule["apiGroups"] == json!([group])
                && rule["verbs"] == json!([verb])
                && let Some(res) = rule["resources"].as_array_mut()
            {
                let before = res.len();
                res.retain(|r| r != resource);
                removed |= res.len() < before;
            }
        }
    }
    assert!(
        removed,
        "no rule grants {verb} on {resource}.{group}: {docs:?}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_permission_is_a_condition_naming_it_and_granting_it_resumes() {
    let sh = support::shared();
    let (src, dst) = support::clients().await;
    let names = Names::for_test("perm");
    let account = "perm-operator";
    objects::apply_all(&src, &demo::application(&names.app), "e2e-test")
        .await
        .expect("seed the application");
    let dir = tempfile::tempdir().expect("tmp");
    let full = rendered(&names, account, dir.path()).await;
    objects::apply_all(
        &src,
        &without(&full, "apps", "deployments", "patch"),
        "e2e-test",
    )
    .await
    .expect("the source-access objects, less one rule");
    let token = install::token_of(&src, &names.app, &format!("{account}-token"))
        .await
        .expect("the token controller fills the token");
    let entry = sh.source_entry("source").with_token(token);
    let source_kubeconfig = kubeconfig::render(&[entry], "source");
    demo::register(&source_kubeconfig, &dst, &names, "qc-sovereign", &json!({}))
        .await
        .expect("register");
    let env = Env { names, src, dst };
    let (stop, task) = env.operator("perm-1");

    // Everything but quiescing the Deployment is allowed: the migration stops there, saying who
    // was refused what, where.
    let who = format!("system:serviceaccount:{}:{account}", env.names.app);
    let message = eventually("a Forbidden condition", || async {
        let w = env.workload().await?;
        let s = w.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (c.reason == "Forbidden").then(|| (s.phase, c.message.clone()))
    })
    .await;
    assert_eq!(message.0, Some(Phase::CuttingOver), "{message:?}");
    for part in [
        who.as_str(),
        "cannot patch resource \"deployments\" in API group \"apps\"",
        &format!("in the namespace \"{}\"", env.names.app),
        &format!("the cluster \"{}\" refused", env.names.source_cluster),
    ] {
        assert!(message.1.contains(part), "{part:?} not in {:?}", message.1);
    }
    let deployments: Api<Deployment> = Api::namespaced(env.src.clone(), &env.names.app);
    let api = deployments
        .get("dossier-api")
        .await
        .expect("the source Deployment");
    assert!(
        api.spec.and_then(|s| s.replicas).unwrap_or(1) > 0,
        "the source Deployment still serves"
    );
    let w = env.workload().await.expect("workload");
    assert_ne!(w.status.and_then(|s| s.phase), Some(Phase::Completed));

    // Granted back: the step is retried from what it observes and the migration completes.
    objects::apply_all(&env.src, &full, "e2e-test")
        .await
        .expect("the full rules");
    eventually("the migration completes", || async {
        let s = env.workload().await?.status?;
        (s.phase == Some(Phase::Completed)).then_some(())
    })
    .await;

    let _ = stop.send(());
    let _ = task.await;
    let dp = DeleteParams::background();
    let probe = format!("{account}-probe");
    let _ = Api::<ClusterRoleBinding>::all(env.src.clone())
        .delete(&probe, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(env.src.clone())
        .delete(&probe, &dp)
        .await;
    env.cleanup().await;
}
