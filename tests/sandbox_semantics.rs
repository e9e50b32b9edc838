//! The sandbox's API server against the Kubernetes API conventions, through the `kube` client and
//! raw HTTP. Each test starts its own simulated cluster.
#![cfg(feature = "sandbox")]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sovereign::sandbox::SimCluster;

// ------------------------------------------------------------------------------------ helpers

async fn cluster() -> (SimCluster, kube::Client) {
    let c = SimCluster::start("test")
        .await
        .expect("start simulated cluster");
    let client = c.client().await.expect("client");
    (c, client)
}

/// A raw request; returns the status code and the JSON body (Null if not JSON).
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("Content-Type", ct);
    }
    let bytes = body
        .map(|v| serde_json::to_vec(&v).expect("encode"))
        .unwrap_or_default();
    let req = b.body(kube::client::Body::from(bytes)).expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Read a raw watch stream until `stop` says so or the stream ends; returns the events.
async fn read_watch(
    client: &kube::Client,
    path: &str,
    limit: Duration,
    stop: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let req = http::Request::builder()
        .uri(path)
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("send");
    assert_eq!(
        resp.status().as_u16(),
        200,
        "watch answered {}",
        resp.status()
    );
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut events: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if stop(&events) {
            break;
        }
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break,
            Ok(None) => break,
            Ok(Some(f)) => f.expect("frame"),
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                events.push(serde_json::from_slice(&line).expect("event is JSON"));
            }
        }
    }
    events
}

fn rv(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .expect("resourceVersion is a string")
        .parse()
        .expect("numeric")
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}})
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn install_our_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    for entry in std::fs::read_dir(dir).expect("crds/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read CRD");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("CRD YAML");
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
    }
}

fn sw_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sovereign.dev", "v1alpha1", "SovereignWorkload"),
        "sovereignworkloads",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn sovc_api(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sovereign.dev", "v1alpha1", "SovereignCluster"),
        "sovereignclusters",
    );
    Api::all_with(client.clone(), &ar)
}

fn workload(name: &str, source: &str, target: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"source": {"cluster": source, "namespace": "sante"}, "target": {"cluster": target}, "mode": "Plan"}
    }))
    .expect("workload")
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

// ------------------------------------------------------------------------------------ tests

#[tokio::test]
async fn resource_versions_are_strings_and_cluster_wide_monotonic() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut last = 0;
    for i in 0..5 {
        let o: Value = serde_json::to_value(
            cms.create(
                &PostParams::default(),
                &serde_json::from_value(cm(&format!("c{i}"))).unwrap(),
            )
            .await
            .unwrap(),
        )
        .unwrap();
        let r = rv(&o);
        assert!(r > last, "resourceVersion {r} not above {last}");
        last = r;
    }
    // Another kind shares the same counter.
    let (code, ns) = raw(
        &client,
        "POST",
        "/api/v1/namespaces",
        None,
        Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})),
    )
    .await;
    assert_eq!(code, 201);
    assert!(rv(&ns) > last);
    // Lists carry the current resourceVersion as a string.
    let (_, list) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        None,
    )
    .await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["apiVersion"], "v1");
    assert!(rv(&list) >= rv(&ns));
    c.shutdown().await;
}

#[tokio::test]
async fn stale_update_is_a_409_conflict() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("stale")).unwrap(),
        )
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "one".to_string())].into());
    cms.replace("stale", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut second = created;
    second.data = Some([("k".to_string(), "two".to_string())].into());
    let err = api_err(
        cms.replace("stale", &PostParams::default(), &second)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"stale\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A merge patch carrying a stale resourceVersion is refused the same way.
    let (code, body) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/stale",
        Some("application/merge-patch+json"),
        Some(json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}})),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    c.shutdown().await;
}

#[tokio::test]
async fn generation_moves_with_spec_only_and_status_is_a_separate_subresource() {
    let (c, client) = cluster().await;
    install_our_crds(&client).await;
    let api = sovc_api(&client);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": "ovh"},
        "spec": {"inCluster": true, "provider": "ovhcloud"}, "status": {"reachable": true}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create when it is a subresource"
    );
    // Metadata-only change: no bump.
    let p = api
        .patch(
            "ovh",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    // Status through the main resource is ignored.
    let p = api
        .patch(
            "ovh",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"reachable": false}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(1));
    assert!(p.data.get("status").is_none());
    // Spec change: bump.
    let p = api
        .patch(
            "ovh",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"region": "ca-east-bhs"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    // Status writes never bump generation, and spec in a status write is ignored.
    let s = api
        .patch_status("ovh", &PatchParams::default(), &Patch::Merge(json!({"status": {"reachable": true, "observedGeneration": 2}, "spec": {"region": "nope"}})))
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    assert_eq!(s.data["status"]["reachable"], true);
    assert_eq!(s.data["spec"]["region"], "ca-east-bhs");
    assert!(rv(&serde_json::to_value(&s).unwrap()) > rv(&serde_json::to_value(&p).unwrap()));
    c.shutdown().await;
}

#[tokio::test]
async fn generate_name_creates_unique_names() {
    let (c, client) = cluster().await;
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}});
    let (c1, a) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        Some(body.clone()),
    )
    .await;
    let (c2, b) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        Some(body),
    )
    .await;
    assert_eq!((c1, c2), (201, 201));
    let (na, nb) = (
        a["metadata"]["name"].as_str().unwrap(),
        b["metadata"]["name"].as_str().unwrap(),
    );
    assert!(na.starts_with("gen-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);
    let (code, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    c.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut o = cm("held");
    o["metadata"]["finalizers"] = json!(["example.com/hold"]);
    let created = cms
        .create(&PostParams::default(), &serde_json::from_value(o).unwrap())
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let start_rv = created.metadata.resource_version.clone().unwrap();
    let first = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = first
        .left()
        .expect("an object with finalizers is returned, not a Status");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    // A second delete answers 200 with the object, unchanged.
    let second = cms
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object");
    assert_eq!(
        second.metadata.resource_version,
        pending.metadata.resource_version
    );
    // New finalizers cannot be added while deleting.
    let err = api_err(
        cms.patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    // Removing the last finalizer deletes it, with a DELETED event for the same uid.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());
    let events = read_watch(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start_rv}"),
        Duration::from_secs(5),
        |e| e.iter().any(|x| x["type"] == "DELETED"),
    )
    .await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "DELETED"]);
    assert_eq!(events[1]["object"]["metadata"]["uid"], uid);
    c.shutdown().await;
}

async fn owner_and_child(
    client: &kube::Client,
    owner: &str,
    block: bool,
) -> (Api<ConfigMap>, String) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let o = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm(owner)).unwrap(),
        )
        .await
        .unwrap();
    let uid = o.metadata.uid.unwrap();
    let mut child = cm(&format!("{owner}-child"));
    child["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": block}]);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(child).unwrap(),
    )
    .await
    .unwrap();
    (cms, uid)
}

#[tokio::test]
async fn owner_reference_gc_background_foreground_orphan() {
    let (c, client) = cluster().await;
    // Background: the owner goes at once, the dependent after.
    let (cms, _) = owner_and_child(&client, "bg", false).await;
    cms.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(cms.get_opt("bg").await.unwrap().is_none());
    wait_until("background GC of bg-child", || async {
        cms.get_opt("bg-child").await.unwrap().is_none()
    })
    .await;

    // Foreground: the owner waits (foregroundDeletion finalizer) until blocking dependents are gone.
    let (cms, _) = owner_and_child(&client, "fg", true).await;
    let pending = cms
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .expect("owner kept while dependents exist");
    assert!(
        pending
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    wait_until("foreground deletion of fg and fg-child", || async {
        cms.get_opt("fg-child").await.unwrap().is_none()
            && cms.get_opt("fg").await.unwrap().is_none()
    })
    .await;

    // Orphan: the dependent stays, without its ownerReference.
    let (cms, _) = owner_and_child(&client, "or", false).await;
    cms.delete("or", &DeleteParams::orphan()).await.unwrap();
    wait_until("orphaning of or-child", || async {
        cms.get_opt("or").await.unwrap().is_none()
            && cms
                .get_opt("or-child")
                .await
                .unwrap()
                .is_some_and(|c| c.metadata.owner_references.unwrap_or_default().is_empty())
    })
    .await;
    c.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_empties_it_and_forbids_new_content() {
    let (c, client) = cluster().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let mut held = cm("held");
    held["metadata"]["namespace"] = json!("doomed");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(held).unwrap(),
    )
    .await
    .unwrap();
    let deleted = nss
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("namespace is returned");
    assert_eq!(
        deleted.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let mut fresh = cm("late");
    fresh["metadata"]["namespace"] = json!("doomed");
    let err = api_err(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(fresh).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert!(
        err.message.contains(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{}",
        err.message
    );
    // The finalizer on the content holds the namespace.
    wait_until("content marked for deletion", || async {
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    })
    .await;
    assert!(nss.get_opt("doomed").await.unwrap().is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_until("namespace gone", || async {
        nss.get_opt("doomed").await.unwrap().is_none()
    })
    .await;
    // Creating in a missing namespace is a 404 on the namespace.
    let err = api_err(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "doomed"}}))
                .unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"doomed\" not found")
    );
    c.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (n, env, tier) in [
        ("a", "prod", "web"),
        ("b", "dev", "web"),
        ("c", "prod", "db"),
    ] {
        let mut o = cm(n);
        o["metadata"]["labels"] = json!({"env": env, "tier": tier});
        cms.create(&PostParams::default(), &serde_json::from_value(o).unwrap())
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("env=prod"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("env!=prod"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache),env"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("!missing,tier notin (db)"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name!=b,metadata.namespace=default"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    let err = api_err(
        cms.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (400, "field label not supported: data.k")
    );
    c.shutdown().await;
}

#[tokio::test]
async fn limit_and_continue_page_through_a_list() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(cm(&format!("p{i}"))).unwrap(),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => {
                assert!(page.metadata.remaining_item_count.is_some());
                lp = lp.continue_token(&token);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    // A continue token older than the watch history is 410 Expired.
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    c.store().compact();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("late")).unwrap(),
    )
    .await
    .unwrap();
    c.store().compact();
    let err = api_err(
        cms.list(
            &ListParams::default()
                .limit(2)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    c.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_resource_version_sends_only_later_events_in_order() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("before")).unwrap(),
    )
    .await
    .unwrap();
    let from = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("w1")).unwrap(),
    )
    .await
    .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(3), &from)
        .await
        .unwrap()
        .boxed();
    let mut got = Vec::new();
    while let Some(ev) = stream.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(o) => got.push((
                "ADDED",
                o.metadata.name.unwrap(),
                o.metadata.resource_version.unwrap(),
            )),
            WatchEvent::Modified(o) => got.push((
                "MODIFIED",
                o.metadata.name.unwrap(),
                o.metadata.resource_version.unwrap(),
            )),
            WatchEvent::Deleted(o) => got.push((
                "DELETED",
                o.metadata.name.unwrap(),
                o.metadata.resource_version.unwrap(),
            )),
            _ => {}
        }
        if got.len() == 3 {
            break;
        }
    }
    let kinds: Vec<(&str, &str)> = got.iter().map(|(t, n, _)| (*t, n.as_str())).collect();
    assert_eq!(
        kinds,
        [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    );
    let rvs: Vec<u64> = got.iter().map(|(_, _, r)| r.parse().unwrap()).collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > from.parse::<u64>().unwrap(),
        "{rvs:?}"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn watch_replays_state_with_rv_zero_sends_bookmarks_and_honours_timeout() {
    let (c, client) = cluster().await;
    c.configure(|s| s.bookmark_interval = Duration::from_millis(200));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("exists")).unwrap(),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let events = read_watch(
        &client,
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=1",
        Duration::from_secs(10),
        |_| false,
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "stream ended after {elapsed:?}"
    );
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "exists");
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark");
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert!(bookmark["object"]["metadata"]["resourceVersion"].is_string());
    // Without allowWatchBookmarks there are none.
    let events = read_watch(
        &client,
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        Duration::from_secs(10),
        |_| false,
    )
    .await;
    assert!(events.iter().all(|e| e["type"] != "BOOKMARK"));
    c.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_compacted_resource_version_gets_410_gone() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(cm("old")).unwrap(),
        )
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("newer")).unwrap(),
    )
    .await
    .unwrap();
    c.store().compact();
    let old_rv = first.metadata.resource_version.unwrap();
    let events = read_watch(
        &client,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={old_rv}"),
        Duration::from_secs(5),
        |_| false,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
    // A list at an old resourceVersion is not a 410: it serves the current state.
    let (code, _) = raw(
        &client,
        "GET",
        &format!("/api/v1/namespaces/default/configmaps?resourceVersion={old_rv}"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    c.shutdown().await;
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (c, client) = cluster().await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "web", "image": "nginx:1.26", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
            {"name": "sidecar", "image": "busybox"}
        ]}}}
    }))
    .unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    // Strategic: containers merged by name, env by name.
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}})))
        .await
        .unwrap();
    let v = serde_json::to_value(&p).unwrap();
    let cs = v
        .pointer("/spec/template/spec/containers")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 2, "the sidecar survives a strategic patch");
    assert_eq!(cs[0]["image"], "nginx:1.27");
    assert_eq!(
        cs[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
    );
    // $patch: delete removes one element by its key.
    let p = deploys.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}))).await.unwrap();
    assert_eq!(p.spec.unwrap().template.spec.unwrap().containers.len(), 1);
    // Merge patch replaces lists.
    let p = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(3));
    assert_eq!(p.metadata.labels.unwrap()["x"], "y");
    // JSON patch, with a failing test as a 422.
    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 5}, {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}])).unwrap();
    let p = deploys
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(p.spec.unwrap().replicas, Some(5));
    let (code, body) = raw(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some("application/json-patch+json"),
        Some(json!([{"op": "test", "path": "/spec/replicas", "value": 99}])),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    // Strategic merge patch on a custom resource is a 415.
    install_our_crds(&client).await;
    let (code, body) = raw(
        &client,
        "PATCH",
        "/apis/sovereign.dev/v1alpha1/sovereignclusters/x",
        Some("application/strategic-merge-patch+json"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    c.shutdown().await;
}

#[tokio::test]
async fn scale_subresource_answers_autoscaling_v1_scale() {
    let (c, client) = cluster().await;
    let (code, _) = raw(&client, "POST", "/apis/apps/v1/namespaces/default/deployments", None, Some(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))).await;
    assert_eq!(code, 201);
    let (code, scale) = raw(
        &client,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/s/scale",
        Some("application/merge-patch+json"),
        Some(json!({"spec": {"replicas": 4}})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        (scale["kind"].as_str(), scale["apiVersion"].as_str()),
        (Some("Scale"), Some("autoscaling/v1"))
    );
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=s");
    let (_, d) = raw(
        &client,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/s",
        None,
        None,
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
    c.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_tracks_managers_and_reports_conflicts() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "1", "a": "x"}});
    let created = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a))
        .await
        .unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(
        (mf[0].manager.as_deref(), mf[0].operation.as_deref()),
        (Some("alice"), Some("Apply"))
    );
    // Bob applies the same value: shared ownership, no conflict.
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "1", "b": "y"}});
    cms.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b))
        .await
        .unwrap();
    // Bob changes a field alice owns: conflict.
    let b2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "2", "b": "y"}});
    let err = api_err(
        cms.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b2))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"alice\" using v1: .data.shared"
    );
    // With force, bob takes it.
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&b2),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["shared"], "2");
    // Alice stops applying `a`: it is removed, since nobody else owns it.
    let a2 =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let after = cms
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a2))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert!(!data.contains_key("a"), "{data:?}");
    assert_eq!(data["shared"], "2");
    assert_eq!(data["b"], "y");
    // An Update manager's fields conflict too.
    cms.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"b": "z"}})),
    )
    .await
    .unwrap();
    let err = api_err(
        cms.patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b2))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("conflict with \"editor\""),
        "{}",
        err.message
    );
    // Apply without a field manager is refused.
    let (code, s) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=",
        Some("application/apply-patch+yaml"),
        Some(b2),
    )
    .await;
    assert!(
        s["message"]
            .as_str()
            .unwrap_or_default()
            .contains("fieldManager: Required value"),
        "{s}"
    );
    assert_eq!(code, 422);
    c.shutdown().await;
}

#[tokio::test]
async fn errors_are_status_objects_with_real_reasons() {
    let (c, client) = cluster().await;
    install_our_crds(&client).await;
    let (code, s) = raw(
        &client,
        "GET",
        "/apis/sovereign.dev/v1alpha1/sovereignclusters/nope",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], "NotFound");
    assert_eq!(
        s["message"],
        "sovereignclusters.sovereign.dev \"nope\" not found"
    );
    assert_eq!(
        s["details"],
        json!({"name": "nope", "group": "sovereign.dev", "kind": "sovereignclusters"})
    );
    let (code, s) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps/nope",
        None,
        None,
    )
    .await;
    assert_eq!(
        (code, s["message"].as_str()),
        (404, Some("configmaps \"nope\" not found"))
    );
    let (code, _) = raw(
        &client,
        "GET",
        "/apis/nothing.example/v1/things",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404);
    raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(cm("dup")),
    )
    .await;
    let (code, s) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(cm("dup")),
    )
    .await;
    assert_eq!(
        (code, s["reason"].as_str(), s["message"].as_str()),
        (
            409,
            Some("AlreadyExists"),
            Some("configmaps \"dup\" already exists")
        )
    );
    c.shutdown().await;
}

#[tokio::test]
async fn dry_run_runs_the_pipeline_without_persisting() {
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv_before = c.store().current_rv();
    let o = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &serde_json::from_value(cm("dry")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(o.metadata.name.as_deref(), Some("dry"));
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("wet")).unwrap(),
    )
    .await
    .unwrap();
    let rv_wet = c.store().current_rv();
    let p = cms
        .patch(
            "wet",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"k": "dry"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap()["k"], "dry");
    assert_eq!(cms.get("wet").await.unwrap().data.unwrap()["k"], "v");
    assert_eq!(c.store().current_rv(), rv_wet);
    assert!(rv_wet > rv_before);
    cms.delete(
        "wet",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(cms.get_opt("wet").await.unwrap().is_some());
    c.shutdown().await;
}

#[tokio::test]
async fn crds_registered_at_run_time_are_served_and_their_schema_enforced() {
    let (c, client) = cluster().await;
    install_our_crds(&client).await;
    let crd: CustomResourceDefinition = Api::all(client.clone())
        .get("sovereignworkloads.sovereign.dev")
        .await
        .unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let sws = sw_api(&client, "default");
    // Served at once; defaults applied; unknown fields pruned (fieldValidation=Ignore).
    let mut ok = workload("ok", "aws-us-east-1", "ovh-bhs5");
    ok.data["spec"]["data"] = json!({"bogus": true});
    let created = sws.create(&PostParams::default(), &ok).await.unwrap();
    assert_eq!(
        created.data["spec"]["data"]["preCopyPasses"], 1,
        "default applied"
    );
    assert_eq!(created.data["spec"]["data"]["parallelVolumes"], 2);
    assert!(
        created.data["spec"]["data"].get("bogus").is_none(),
        "unknown field pruned"
    );
    // Strict field validation refuses the unknown field.
    let (code, s) = raw(&client, "POST", "/apis/sovereign.dev/v1alpha1/namespaces/default/sovereignworkloads?fieldValidation=Strict", None, Some(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload", "metadata": {"name": "strict"},
        "spec": {"source": {"cluster": "a", "namespace": "s"}, "target": {"cluster": "b"}, "bogus": 1}
    }))).await;
    assert_eq!(code, 400);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.bogus\""),
        "{s}"
    );
    let invalid = |patch: Value| {
        let sws = sws.clone();
        async move {
            let mut w = workload("bad", "aws-us-east-1", "ovh-bhs5");
            for (k, v) in patch.as_object().unwrap() {
                w.data["spec"][k] = v.clone();
            }
            api_err(sws.create(&PostParams::default(), &w).await.unwrap_err())
        }
    };
    // type
    let e = invalid(json!({"data": {"preCopyPasses": "two"}})).await;
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.data.preCopyPasses: Invalid value: \"string\": spec.data.preCopyPasses in body must be of type integer"), "{}", e.message);
    // enum
    let e = invalid(json!({"mode": "Teleport"})).await;
    assert!(
        e.message
            .contains("spec.mode: Unsupported value: \"Teleport\": supported values:"),
        "{}",
        e.message
    );
    // minimum / maximum
    let e = invalid(json!({"data": {"preCopyPasses": 11}})).await;
    assert!(e.message.contains("spec.data.preCopyPasses: Invalid value: 11: spec.data.preCopyPasses in body should be less than or equal to 10"), "{}", e.message);
    // pattern
    let e = invalid(json!({"source": {"cluster": "a", "namespace": "Not_A_Namespace"}})).await;
    assert!(
        e.message.contains("spec.source.namespace") && e.message.contains("should match"),
        "{}",
        e.message
    );
    // required
    let e = invalid(json!({"target": {"namespace": "x"}})).await;
    assert!(
        e.message.contains("spec.target.cluster: Required value"),
        "{}",
        e.message
    );
    // CEL on the object, with the rule's fieldPath and message, in the apiserver's format.
    let e = api_err(
        sws.create(&PostParams::default(), &workload("same", "c1", "c1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "SovereignWorkload.sovereign.dev \"same\" is invalid: spec.target.cluster: Invalid value: \"object\": source.cluster and target.cluster must name different SovereignClusters"
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes[0].field, "spec.target.cluster");
    assert_eq!(causes[0].reason, "FieldValueInvalid");
    // CEL transition rule (oldSelf): source.cluster is immutable.
    let e = api_err(
        sws.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"source": {"cluster": "azure-canadacentral"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains(
            "spec.source.cluster: Invalid value: \"string\": source.cluster is immutable"
        ),
        "{}",
        e.message
    );
    // …while other changes are accepted.
    sws.patch(
        "ok",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"data": {"preCopyPasses": 3}}})),
    )
    .await
    .unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn a_kube_watcher_survives_dropped_watches_and_410() {
    use kube::runtime::{WatchStreamExt, watcher};
    let (c, client) = cluster().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stream = watcher(cms.clone(), watcher::Config::default()).applied_objects();
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(ev) = stream.next().await {
            if let Ok(o) = ev {
                let _ = tx.send(o.metadata.name.unwrap_or_default());
            }
        }
    });
    async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, name: &str) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(n) = rx.recv().await {
                if n == name {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("watcher never saw {name}"));
    }
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("one")).unwrap(),
    )
    .await
    .unwrap();
    expect(&mut rx, "one").await;
    c.faults().drop_watches();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("two")).unwrap(),
    )
    .await
    .unwrap();
    expect(&mut rx, "two").await;
    // History compacted and watches dropped: the re-watch gets 410 and the watcher relists.
    c.store().compact();
    c.faults().drop_watches();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("three")).unwrap(),
    )
    .await
    .unwrap();
    expect(&mut rx, "three").await;
    // Injected 500s on some requests: the watcher backs off and recovers.
    c.faults().set_errors(0.5, &[500, 429]);
    c.faults().drop_watches();
    c.faults().set_errors(0.0, &[]);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(cm("four")).unwrap(),
    )
    .await
    .unwrap();
    expect(&mut rx, "four").await;
    task.abort();
    c.shutdown().await;
}

#[tokio::test]
async fn faults_fail_requests_and_make_the_cluster_unreachable() {
    let (c, _) = cluster().await;
    // kube retries 429s by default; this test looks at the raw answers.
    let mut config = kube::Config::new(c.url().parse().unwrap());
    config.default_retry = false;
    let client = kube::Client::try_from(config).unwrap();
    c.faults().set_errors(1.0, &[429]);
    let (code, s) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        None,
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (429, Some("TooManyRequests")));
    c.faults().set_errors(1.0, &[500]);
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        None,
    )
    .await;
    assert_eq!(code, 500);
    c.faults().clear();
    c.faults().set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    let (code, _) = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    c.faults().clear();
    c.faults().set_unreachable(true);
    let fresh = c.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(fresh, "default");
    assert!(
        cms.list(&ListParams::default()).await.is_err(),
        "an unreachable cluster answers nothing"
    );
    c.faults().set_unreachable(false);
    assert!(cms.list(&ListParams::default()).await.is_ok());
    c.shutdown().await;
}

#[tokio::test]
async fn discovery_tables_and_openapi() {
    let (c, client) = cluster().await;
    install_our_crds(&client).await;
    // Legacy discovery has our kinds with their subresources.
    let (_, rl) = raw(&client, "GET", "/apis/sovereign.dev/v1alpha1", None, None).await;
    let names: Vec<&str> = rl["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"sovereignworkloads") && names.contains(&"sovereignworkloads/status"),
        "{names:?}"
    );
    // kube's own discovery finds them.
    let disc = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(disc.groups().any(|g| g.name() == "sovereign.dev"));
    // Tables: CRD printer columns.
    let api = sovc_api(&client);
    api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": "t"}, "spec": {"inCluster": true}})).unwrap())
        .await
        .unwrap();
    let req = http::Request::builder()
        .uri("/apis/sovereign.dev/v1alpha1/sovereignclusters")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(kube::client::Body::empty())
        .unwrap();
    let table: Value = serde_json::from_slice(
        &client
            .send(req)
            .await
            .unwrap()
            .into_body()
            .collect_bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Provider",
            "Region",
            "Location",
            "Jurisdiction",
            "Reachable",
            "Version",
            "Nodes",
            "Age"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    // OpenAPI v3 lists the group-version, and its PATCH operation has fieldValidation.
    let (_, root) = raw(&client, "GET", "/openapi/v3", None, None).await;
    let url = root["paths"]["apis/sovereign.dev/v1alpha1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc) = raw(&client, "GET", &url, None, None).await;
    assert_eq!(code, 200);
    let patch = &doc["paths"]["/apis/sovereign.dev/v1alpha1/namespaces/{namespace}/sovereignworkloads/{name}"]
        ["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "SovereignWorkload"
    );
    c.shutdown().await;
}
