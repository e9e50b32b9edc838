//! `migrate::apply` against a sandbox cluster: what it reports per object (Applied, Unchanged,
//! Failed), and that it reads the target namespace once per kind, not once per object.

#![cfg(feature = "sandbox")]

use serde_json::{Value, json};
use sovereign::api::workload::ObjectOutcome;
use sovereign::migrate::apply::apply;
use sovereign::migrate::plan::{Plan, PlannedObject};
use sovereign::sandbox::{SimCluster, SimOptions};

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
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": "app"},
           "data": {"k": value}})
}

fn outcomes(r: &[sovereign::api::workload::ObjectResult]) -> Vec<(String, ObjectOutcome)> {
    r.iter().map(|o| (o.name.clone(), o.result)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_then_unchanged_with_one_list_per_kind() {
    let mut options = SimOptions::temporary();
    options.controllers = false;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let cluster = SimCluster::start_with("target", any, options)
        .await
        .expect("cluster");
    let client = cluster.client().await.expect("client");
    let mut objects: Vec<Value> = (0..20).map(|i| configmap(i, "v1")).collect();
    objects.push(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "app"},
                        "type": "Opaque", "data": {"p": "eA=="}}),
    );
    objects.push(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": "app-reader"}, "rules": []}),
    );
    objects.push(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                        "metadata": {"name": "w", "namespace": "app"}}));

    let first = apply(&client, &plan(objects.clone()), "app")
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
    let before = cluster.requests();
    let second = apply(&client, &plan(objects), "app").await.expect("apply");
    let requests = cluster.requests() - before;
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
    cluster.shutdown().await;
}
