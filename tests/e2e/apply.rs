//! `migrate::apply` against the real target cluster: what it reports per object (Applied,
//! Unchanged, Failed), and that it reads the target namespace once per kind, not once per object
//! — counted from the API server's own audit log.

use serde_json::{Value, json};
use sovereign::api::workload::ObjectOutcome;
use sovereign::migrate::apply::apply;
use sovereign::migrate::plan::{Plan, PlannedObject};

use super::support;

const NS: &str = "apply-app";
const ROLE: &str = "apply-app-reader";

fn planned(obj: Value) -> PlannedObject {
    PlannedObject {
        kind: obj["kind"].as_str().unwrap_or_default().to_string(),
        name: obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
        transforms: vec![],
        object: obj,
    }
}

fn plan(objects: Vec<Value>) -> Plan {
    Plan {
        hash: "test".into(),
        objects: objects.into_iter().map(planned).collect(),
        volumes: vec![],
        transforms: vec![],
        findings: vec![],
        skipped: vec![],
    }
}

fn configmap(i: usize, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": NS},
           "data": {"k": value}})
}

fn outcomes(r: &[sovereign::api::workload::ObjectResult]) -> Vec<(String, ObjectOutcome)> {
    r.iter().map(|o| (o.name.clone(), o.result)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_then_unchanged_with_one_list_per_kind() {
    let (_, client) = support::clients().await;
    let mut objects: Vec<Value> = (0..20).map(|i| configmap(i, "v1")).collect();
    objects.push(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS},
                        "type": "Opaque", "data": {"p": "eA=="}}),
    );
    objects.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": ROLE}, "rules": []}),
    );
    objects.push(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w", "namespace": NS}}));

    let first = apply(&client, &plan(objects.clone()), NS)
        .await
        .expect("apply");
    assert_eq!(first.len(), 23);
    for (name, outcome) in outcomes(&first) {
        let want = if name == "w" {
            ObjectOutcome::Failed
        } else {
            ObjectOutcome::Applied
        };
        assert_eq!(outcome, want, "{name}");
    }
    assert!(
        first
            .iter()
            .any(|o| o.name == "w" && o.message.contains("install its CRD")),
        "{first:?}"
    );

    // Again, with one ConfigMap changed: only that one is Applied.
    objects[3] = configmap(3, "v2");
    let audit = support::shared().target.dir().join("audit.log");
    let before = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
    let second = apply(&client, &plan(objects), NS).await.expect("apply");
    let requests = Requests::since(&audit, before);
    for (name, outcome) in outcomes(&second) {
        let want = match name.as_str() {
            "w" => ObjectOutcome::Failed,
            "cm-3" => ObjectOutcome::Applied,
            _ => ObjectOutcome::Unchanged,
        };
        assert_eq!(outcome, want, "{name}");
    }
    // One patch per object that the target serves, plus the namespace; the existing objects are
    // read with one list per namespaced kind and one GET for the cluster-scoped ClusterRole.
    assert_eq!(requests.patch, 23, "{requests:?}");
    assert_eq!(requests.list, 2, "{requests:?}");
    assert_eq!(requests.get, 1, "{requests:?}");
    let nss: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let _ = nss.delete(NS, &Default::default()).await;
    let roles: kube::Api<k8s_openapi::api::rbac::v1::ClusterRole> = kube::Api::all(client);
    let _ = roles.delete(ROLE, &Default::default()).await;
}

/// Requests the API server recorded in its audit log (Metadata level, written before it
/// answers) that touched the test's namespace or ClusterRole.
#[derive(Debug, Default)]
struct Requests {
    patch: usize,
    list: usize,
    get: usize,
}

impl Requests {
    fn since(audit: &std::path::Path, offset: u64) -> Requests {
        let text = std::fs::read(audit).expect("the audit log");
        let mut r = Requests::default();
        for line in String::from_utf8_lossy(&text[offset as usize..]).lines() {
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if e["stage"] != "ResponseComplete" {
                continue;
            }
            let o = &e["objectRef"];
            let ours = o["namespace"] == NS
                || (o["resource"] == "namespaces" && o["name"] == NS)
                || (o["resource"] == "clusterroles" && o["name"] == ROLE);
            if !ours {
                continue;
            }
            match e["verb"].as_str() {
                Some("patch") => r.patch += 1,
                Some("list") => r.list += 1,
                Some("get") => r.get += 1,
                _ => {}
            }
        }
        r
    }
}
