//! The simulated cluster's behaviour: workloads make pods, the scheduler places them, claims bind
//! to real directories, Services get addresses and a proxy, and the kubelet runs the project's
//! own binary for real. Each test waits for the state it checks (with a generous overall
//! deadline so a broken controller fails instead of hanging), never for a fixed time.
#![cfg(feature = "sandbox")]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sovereign::sandbox::{ExecImage, SimCluster, SimOptions, seed, write_kubeconfig};

const DEADLINE: Duration = Duration::from_secs(90);

/// Poll until `f` yields a value; a deadline only turns a hang into a failure.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn v<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).expect("serialisable")
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

async fn get<K>(api: &Api<K>, name: &str) -> Option<Value>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    api.get_opt(name).await.expect("get").map(|o| v(&o))
}

async fn list<K>(api: &Api<K>, selector: &str) -> Vec<Value>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list")
        .items
        .iter()
        .map(v)
        .collect()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn condition<'a>(v: &'a Value, ty: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

async fn eks(name: &str, options: SimOptions) -> (SimCluster, kube::Client) {
    let c = SimCluster::start_with(name, SocketAddr::from(([127, 0, 0, 1], 0)), options)
        .await
        .expect("start");
    seed::eks_us_east_1(c.api()).expect("seed nodes");
    let client = c.client().await.expect("client");
    (c, client)
}

fn web_deployment(replicas: i64, image: &str) -> Deployment {
    obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image,
                                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    }))
}

#[tokio::test]
async fn deployment_makes_a_replica_set_and_ready_pods_scales_and_rolls() {
    let (c, client) = eks("deploy", SimOptions::temporary()).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deploys
        .create(&PostParams::default(), &web_deployment(3, "nginx:1.27"))
        .await
        .expect("create");
    let d = until("3 ready replicas", || async {
        get(&deploys, "web")
            .await
            .filter(|d| d.pointer("/status/readyReplicas") == Some(&json!(3)))
    })
    .await;
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        s(condition(&d, "Available").expect("Available"), "/reason"),
        "MinimumReplicasAvailable"
    );
    let rs = list(&sets, "app=web").await;
    assert_eq!(rs.len(), 1);
    let hash = s(&rs[0], "/metadata/labels/pod-template-hash").to_string();
    assert_eq!(s(&rs[0], "/metadata/name"), format!("web-{hash}"));
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(rs[0]["metadata"]["ownerReferences"][0]["controller"], true);
    let running = list(&pods, "app=web").await;
    assert_eq!(running.len(), 3);
    let octet = c.loopback_octet();
    for p in &running {
        assert!(s(p, "/metadata/name").starts_with(&format!("web-{hash}-")));
        assert_eq!(s(p, "/metadata/labels/pod-template-hash"), hash);
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("ReplicaSet"), Some(true))
        );
        assert_eq!(s(p, "/status/phase"), "Running");
        assert_eq!(s(condition(p, "Ready").expect("Ready"), "/status"), "True");
        assert!(s(p, "/status/podIP").starts_with(&format!("127.{octet}.")));
        assert!(s(p, "/status/hostIP").starts_with(&format!("127.{octet}.")));
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert!(p["status"]["containerStatuses"][0]["state"]["running"].is_object());
    }
    let ips: std::collections::HashSet<&str> =
        running.iter().map(|p| s(p, "/status/podIP")).collect();
    assert_eq!(ips.len(), 3, "pod addresses are unique");

    // Scale to 0: the pods go.
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale down");
    until("no pods left", || async {
        list(&pods, "app=web").await.is_empty().then_some(())
    })
    .await;

    // Back to 2 with a new template: a second ReplicaSet takes over.
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})),
        )
        .await
        .expect("new template");
    let d = until("the rollout to finish", || async {
        get(&deploys, "web").await.filter(|d| {
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && d["status"]["updatedReplicas"] == 2
                && d["status"]["readyReplicas"] == 2
                && d["status"]["replicas"] == 2
        })
    })
    .await;
    assert_eq!(
        s(
            condition(&d, "Progressing").expect("Progressing"),
            "/reason"
        ),
        "NewReplicaSetAvailable"
    );
    let rs = list(&sets, "app=web").await;
    assert_eq!(rs.len(), 2, "one ReplicaSet per template");
    let new = rs
        .iter()
        .find(|r| s(r, "/metadata/labels/pod-template-hash") != hash)
        .expect("a new ReplicaSet");
    assert_eq!(new["spec"]["replicas"], 2);
    assert_eq!(
        s(
            new,
            "/metadata/annotations/deployment.kubernetes.io~1revision"
        ),
        "2"
    );
    let pods_now = list(&pods, "app=web").await;
    assert!(
        pods_now
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28")
    );
    c.shutdown().await;
}

#[tokio::test]
async fn statefulset_claims_bind_to_real_directories_and_outlive_the_pods() {
    let (c, client) = eks("sts", SimOptions::temporary()).await;
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claim = |name: &str| json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    sts.create(
        &PostParams::default(),
        &obj(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16",
                         "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}, {"name": "wal", "mountPath": "/wal"}]}]}},
                     "volumeClaimTemplates": [claim("data"), claim("wal")]}
        })),
    )
    .await
    .expect("create");
    let st = until("2 ready replicas", || async {
        get(&sts, "db")
            .await
            .filter(|s| s.pointer("/status/readyReplicas") == Some(&json!(2)))
    })
    .await;
    assert_eq!(st["status"]["currentReplicas"], 2);
    assert_eq!(st["status"]["availableReplicas"], 2);
    assert_eq!(
        st["status"]["observedGeneration"],
        st["metadata"]["generation"]
    );
    for i in 0..2 {
        let pod = get(&pods, &format!("db-{i}"))
            .await
            .expect("ordered pod name");
        let zone_of_node = {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
            let n = get(&nodes, s(&pod, "/spec/nodeName")).await.expect("node");
            s(&n, "/metadata/labels/topology.kubernetes.io~1zone").to_string()
        };
        for t in ["data", "wal"] {
            let name = format!("{t}-db-{i}");
            let pvc = get(&pvcs, &name)
                .await
                .expect("claim per template and ordinal");
            assert_eq!(s(&pvc, "/status/phase"), "Bound");
            assert_eq!(
                s(&pvc, "/spec/storageClassName"),
                "gp3",
                "the default class"
            );
            assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
            let pv_name = s(&pvc, "/spec/volumeName");
            assert_eq!(pv_name, format!("pvc-{}", s(&pvc, "/metadata/uid")));
            let pv = get(&pvs, pv_name).await.expect("pv");
            assert_eq!(s(&pv, "/status/phase"), "Bound");
            assert_eq!(s(&pv, "/spec/claimRef/name"), name);
            assert_eq!(
                pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"]
                    [0]["values"][0],
                zone_of_node.as_str(),
                "the volume follows its first consumer's zone"
            );
            let dir = PathBuf::from(s(
                &pv,
                "/spec/csi/volumeAttributes/sandbox.sovereign.dev~1path",
            ));
            assert!(dir.is_dir(), "{} exists", dir.display());
            let through = c
                .volume_path("default", &name)
                .expect("bound claim has a path");
            std::fs::write(through.join("hello.txt"), format!("from {name}")).expect("write");
            assert_eq!(
                std::fs::read_to_string(dir.join("hello.txt")).expect("read"),
                format!("from {name}")
            );
        }
    }
    // Scale to 0: the pods go, their claims stay bound with their data.
    sts.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .expect("scale");
    until("no pods left", || async {
        list(&pods, "app=db").await.is_empty().then_some(())
    })
    .await;
    let kept = c.volume_path("default", "data-db-1").expect("still bound");
    assert!(kept.join("hello.txt").is_file());
    // Deleting a claim of a Delete class deletes its volume and directory.
    let pv_name = s(
        &get(&pvcs, "data-db-1").await.expect("pvc"),
        "/spec/volumeName",
    )
    .to_string();
    pvcs.delete("data-db-1", &DeleteParams::default())
        .await
        .expect("delete claim");
    until("the volume to be deleted", || async {
        get(&pvs, &pv_name).await.is_none().then_some(())
    })
    .await;
    assert!(!kept.exists(), "the directory goes with the volume");
    c.shutdown().await;
}

#[tokio::test]
async fn replicas_sharing_a_delayed_claim_all_land_in_its_volumes_zone() {
    // Three replicas would spread over the three zones; one WaitForFirstConsumer claim binds in
    // the first consumer's zone, and the real scheduler's PreBind keeps the others out of the rest.
    let (c, client) = eks("shared-claim", SimOptions::temporary()).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    pvcs.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})),
    )
    .await
    .expect("claim");
    deploys
        .create(
            &PostParams::default(),
            &obj(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "files"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "files"}},
                         "template": {"metadata": {"labels": {"app": "files"}},
                                      "spec": {"containers": [{"name": "f", "image": "nginx:1.27",
                                                "resources": {"requests": {"cpu": "100m"}},
                                                "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                                               "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]}}}
            })),
        )
        .await
        .expect("deployment");
    let running = until("3 running replicas", || async {
        let ps = list(&pods, "app=files").await;
        (ps.len() == 3 && ps.iter().all(|p| s(p, "/status/phase") == "Running")).then_some(ps)
    })
    .await;
    let pvc = get(&pvcs, "shared").await.expect("claim");
    let pv = get(&pvs, s(&pvc, "/spec/volumeName"))
        .await
        .expect("bound volume");
    let volume_zone = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0]["values"][0]
        .as_str()
        .expect("a zone")
        .to_string();
    for p in &running {
        let n = get(&nodes, s(p, "/spec/nodeName")).await.expect("node");
        assert_eq!(
            s(&n, "/metadata/labels/topology.kubernetes.io~1zone"),
            volume_zone,
            "{} runs outside its volume's zone",
            s(p, "/metadata/name")
        );
    }
    c.shutdown().await;
}

/// A tree as comparable facts: relative path → (kind, mode, content or link target).
fn tree(root: &Path) -> std::collections::BTreeMap<String, (char, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut std::collections::BTreeMap<String, (char, u32, Vec<u8>)>,
    ) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                out.insert(rel, ('l', 0, t.display().to_string().into_bytes()));
            } else if m.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(rel, ('f', mode, std::fs::read(&p).expect("read")));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn claim_of(name: &str, source: Option<&str>) -> PersistentVolumeClaim {
    let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    if let Some(snap) = source {
        v["spec"]["dataSource"] =
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap});
    }
    obj(v)
}

fn mounting(pod: &str, claim: &str) -> Pod {
    pod_with(
        pod,
        json!({"containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
               "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}),
    )
}

fn snapshot_api(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        plural,
    )
}

fn volume_snapshot(name: &str, claim: &str, class: &str) -> kube::api::DynamicObject {
    let ar = snapshot_api("VolumeSnapshot", "volumesnapshots");
    kube::api::DynamicObject::new(name, &ar).data(json!({"spec": {
        "volumeSnapshotClassName": class, "source": {"persistentVolumeClaimName": claim}}}))
}

#[tokio::test]
async fn a_snapshot_freezes_a_claims_files_and_a_claim_restored_from_it_has_exactly_those() {
    let (c, client) = eks("snap", SimOptions::temporary()).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let snaps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &snapshot_api("VolumeSnapshot", "volumesnapshots"),
    );
    let contents: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &snapshot_api("VolumeSnapshotContent", "volumesnapshotcontents"),
    );
    let pp = PostParams::default();
    // A claim of the default class (gp3, WaitForFirstConsumer), bound through its first consumer.
    pvcs.create(&pp, &claim_of("data", None))
        .await
        .expect("claim");
    pods.create(&pp, &mounting("writer", "data"))
        .await
        .expect("pod");
    let live = until("the claim bound", || async {
        c.volume_path("default", "data")
    })
    .await;
    std::fs::create_dir_all(live.join("records/2026")).expect("mkdir");
    for i in 0..20 {
        std::fs::write(
            live.join(format!("records/2026/{i:03}.csv")),
            format!("row,{i}\n").repeat(100 + i),
        )
        .expect("write");
    }
    std::fs::write(live.join("README.txt"), "v1\n").expect("write");
    std::fs::set_permissions(
        live.join("README.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .expect("chmod");
    std::os::unix::fs::symlink("records/2026/001.csv", live.join("latest.csv")).expect("symlink");
    let at_snapshot = tree(&live);

    // A claim restored from a snapshot that does not exist yet: Pending, and the provisioner says why.
    pvcs.create(&pp, &claim_of("restored", Some("snap-1")))
        .await
        .expect("claim");
    pods.create(&pp, &mounting("reader", "restored"))
        .await
        .expect("pod");
    let ev = until("a ProvisioningFailed event", || async {
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("ProvisioningFailed")
                    && e.involved_object.name.as_deref() == Some("restored")
            })
    })
    .await;
    assert!(
        ev.message
            .as_deref()
            .unwrap_or_default()
            .contains("error getting handle for DataSource Type VolumeSnapshot by Name snap-1"),
        "{:?}",
        ev.message
    );
    assert_eq!(
        s(
            &get(&pvcs, "restored").await.expect("claim"),
            "/status/phase"
        ),
        "Pending"
    );

    // The snapshot: ready, bound to a content that records the volume and the class's policy.
    snaps
        .create(&pp, &volume_snapshot("snap-1", "data", "ebs-csi-snapclass"))
        .await
        .expect("snapshot");
    let snap = until("the snapshot ready to use", || async {
        get(&snaps, "snap-1")
            .await
            .filter(|v| v.pointer("/status/readyToUse") == Some(&json!(true)))
    })
    .await;
    // Written after the snapshot: the restored claim must not see these.
    std::fs::write(live.join("README.txt"), "v2, after the snapshot\n").expect("write");
    std::fs::write(live.join("records/2026/late.csv"), "late\n").expect("write");
    std::fs::remove_file(live.join("records/2026/000.csv")).expect("rm");
    assert_eq!(snap["status"]["restoreSize"], "1Gi");
    assert!(!s(&snap, "/status/creationTime").is_empty());
    let content_name = s(&snap, "/status/boundVolumeSnapshotContentName").to_string();
    assert_eq!(
        content_name,
        format!("snapcontent-{}", s(&snap, "/metadata/uid"))
    );
    let content = get(&contents, &content_name).await.expect("content");
    let pv = s(
        &get(&pvcs, "data").await.expect("claim"),
        "/spec/volumeName",
    )
    .to_string();
    assert_eq!(s(&content, "/spec/source/volumeHandle"), pv);
    assert_eq!(s(&content, "/spec/driver"), "ebs.csi.aws.com");
    assert_eq!(s(&content, "/spec/deletionPolicy"), "Delete");
    assert_eq!(s(&content, "/spec/volumeSnapshotRef/name"), "snap-1");
    assert_eq!(
        s(&content, "/spec/volumeSnapshotRef/uid"),
        s(&snap, "/metadata/uid")
    );
    assert_eq!(content["status"]["readyToUse"], true);
    assert_eq!(content["status"]["restoreSize"], 1i64 << 30);
    let handle = s(&content, "/status/snapshotHandle").to_string();
    let snap_dir = c.data_dir().join("snapshots").join(&handle);
    assert!(snap_dir.is_dir(), "{}", snap_dir.display());

    // The restored claim binds (once its consumer is placed) with exactly the files at snapshot time.
    let restored = until("the restored claim bound", || async {
        c.volume_path("default", "restored")
    })
    .await;
    assert_ne!(restored, live);
    assert_eq!(tree(&restored), at_snapshot);
    assert_ne!(tree(&live), at_snapshot, "the live volume moved on");

    // Errors: a class that does not exist, a claim not bound yet.
    snaps
        .create(&pp, &volume_snapshot("no-class", "data", "nope"))
        .await
        .expect("snapshot");
    let bad = until("an error for the missing class", || async {
        get(&snaps, "no-class")
            .await
            .filter(|v| !s(v, "/status/error/message").is_empty())
    })
    .await;
    assert_eq!(bad["status"]["readyToUse"], false);
    assert!(
        s(&bad, "/status/error/message").contains("Failed to get snapshot class with error")
            && s(&bad, "/status/error/message").contains("\"nope\\\" not found"),
        "{}",
        s(&bad, "/status/error/message")
    );
    pvcs.create(&pp, &claim_of("idle", None))
        .await
        .expect("claim");
    snaps
        .create(
            &pp,
            &volume_snapshot("of-unbound", "idle", "ebs-csi-snapclass"),
        )
        .await
        .expect("snapshot");
    let unbound = until("an error for the unbound claim", || async {
        get(&snaps, "of-unbound")
            .await
            .filter(|v| !s(v, "/status/error/message").is_empty())
    })
    .await;
    assert!(
        s(&unbound, "/status/error/message").contains("the PVC idle is not yet bound to a PV"),
        "{unbound}"
    );

    // Deleting a snapshot of a Delete class deletes its content and its data.
    snaps
        .delete("snap-1", &DeleteParams::default())
        .await
        .expect("delete");
    until("the snapshot and its content gone", || async {
        (get(&snaps, "snap-1").await.is_none() && get(&contents, &content_name).await.is_none())
            .then_some(())
    })
    .await;
    assert!(!snap_dir.exists(), "the snapshot's directory goes with it");
    assert_eq!(
        tree(&restored),
        at_snapshot,
        "a restored volume outlives its snapshot"
    );
    c.shutdown().await;
}

fn pod_with(name: &str, spec: Value) -> Pod {
    obj(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}),
    )
}

#[tokio::test]
async fn the_scheduler_filters_nodes_and_explains_in_its_own_words() {
    let (c, client) = eks("sched", SimOptions::temporary()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let container = json!([{"name": "c", "image": "busybox"}]);
    let cases = [
        (
            "nowhere",
            json!({"nodeSelector": {"topology.kubernetes.io/zone": "eu-west-3a"}, "containers": container}),
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        ),
        (
            "too-big",
            json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "64"}}}]}),
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        ),
        (
            "unbound",
            json!({"containers": container, "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "no-class"}}]}),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        ),
    ];
    pvcs.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "no-class"},
                    "spec": {"storageClassName": "absent", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})),
    )
    .await
    .expect("claim");
    for (name, spec, _) in &cases {
        pods.create(&PostParams::default(), &pod_with(name, spec.clone()))
            .await
            .expect("create");
    }
    for (name, _, message) in &cases {
        let p = until("the pod to be found unschedulable", || async {
            get(&pods, name)
                .await
                .filter(|p| condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False"))
        })
        .await;
        let cond = condition(&p, "PodScheduled").expect("condition");
        assert_eq!(
            (s(cond, "/reason"), s(cond, "/message")),
            ("Unschedulable", *message)
        );
        assert_eq!(s(&p, "/status/phase"), "Pending");
        assert!(p.pointer("/spec/nodeName").is_none());
    }
    // The right selector, and a required affinity with NotIn/Exists: placed where they say.
    pods.create(
        &PostParams::default(),
        &pod_with("zone-b", json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-east-1b"}, "containers": container})),
    )
    .await
    .expect("create");
    pods.create(
        &PostParams::default(),
        &pod_with("not-a-or-b", json!({"containers": container, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["us-east-1a", "us-east-1b"]},
            {"key": "eks.amazonaws.com/nodegroup", "operator": "Exists"}]}]}}}})),
    )
    .await
    .expect("create");
    for (name, node) in [
        ("zone-b", "ip-10-0-2-57.ec2.internal"),
        ("not-a-or-b", "ip-10-0-3-91.ec2.internal"),
    ] {
        let p = until("the pod to run", || async {
            get(&pods, name)
                .await
                .filter(|p| s(p, "/status/phase") == "Running")
        })
        .await;
        assert_eq!(s(&p, "/spec/nodeName"), node);
        assert_eq!(
            s(condition(&p, "PodScheduled").expect("scheduled"), "/status"),
            "True"
        );
    }
    // A DaemonSet: one pod per schedulable node.
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    ds.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
                     "spec": {"containers": [{"name": "a", "image": "fluent-bit:3"}]}}}})),
    )
    .await
    .expect("create");
    let d = until("the daemon pods to be ready", || async {
        get(&ds, "agent")
            .await
            .filter(|d| d.pointer("/status/numberReady") == Some(&json!(3)))
    })
    .await;
    assert_eq!(d["status"]["desiredNumberScheduled"], 3);
    let nodes: std::collections::HashSet<String> = list(&pods, "app=agent")
        .await
        .iter()
        .map(|p| s(p, "/spec/nodeName").to_string())
        .collect();
    assert_eq!(nodes.len(), 3, "one per node");
    c.shutdown().await;
}

#[tokio::test]
async fn a_job_completes_and_a_suspended_cronjob_creates_no_job() {
    let (c, client) = eks("jobs", SimOptions::temporary()).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
            "spec": {"completions": 2, "parallelism": 1, "backoffLimit": 2,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})),
    )
    .await
    .expect("create");
    let j = until("the job to complete", || async {
        get(&jobs, "once")
            .await
            .filter(|j| condition(j, "Complete").is_some_and(|c| c["status"] == "True"))
    })
    .await;
    assert_eq!(j["status"]["succeeded"], 2);
    assert_eq!(j["status"]["active"], 0);
    assert!(j["status"]["completionTime"].is_string());
    let done = list(&pods, "job-name=once").await;
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|p| s(p, "/status/phase") == "Succeeded"
        && p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"));

    // Two CronJobs created five minutes ago, every minute: a missed schedule is due for both,
    // yet only the one that is not suspended runs it.
    let created = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(300))
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for (name, suspend) in [("suspended", true), ("active", false)] {
        c.apply_object(json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"schedule": "* * * * *", "suspend": suspend,
                     "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}}))
            .expect("seed cronjob");
    }
    let active = until("the active cronjob to schedule", || async {
        get(&cronjobs, "active")
            .await
            .filter(|cj| cj.pointer("/status/lastScheduleTime").is_some())
    })
    .await;
    let owned = |owner: String| {
        let jobs = jobs.clone();
        async move {
            jobs.list(&ListParams::default())
                .await
                .expect("list")
                .items
                .iter()
                .map(v)
                .filter(|j| j["metadata"]["ownerReferences"][0]["uid"] == owner.as_str())
                .count()
        }
    };
    assert_eq!(owned(s(&active, "/metadata/uid").to_string()).await, 1);
    let suspended = get(&cronjobs, "suspended").await.expect("cronjob");
    assert_eq!(owned(s(&suspended, "/metadata/uid").to_string()).await, 0);
    assert!(suspended.pointer("/status/lastScheduleTime").is_none());
    c.shutdown().await;
}

fn sovereign() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sovereign"))
}

fn exec_options() -> SimOptions {
    let mut o = SimOptions::temporary();
    o.exec_binary = Some(sovereign());
    // A shell for the one test that needs an exit code the product binary never uses.
    o.exec_images
        .push(ExecImage::new("/busybox", Some(PathBuf::from("/bin/sh"))));
    o
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl on the PATH");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[tokio::test]
async fn the_projects_image_runs_for_real_behind_a_load_balancer() {
    let (c, client) = eks("exec", exec_options()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let certs = work.path().join("certs");
    let status = std::process::Command::new(sovereign())
        .args(["mover", "certs", "--out"])
        .arg(&certs)
        .status()
        .expect("sovereign mover certs");
    assert!(status.success());
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).expect("cert file");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "receiver-tls"},
                "stringData": {"ca.crt": read("ca.crt"), "receiver.crt": read("receiver.crt"), "receiver.key": read("receiver.key")}})),
        )
        .await
        .expect("secret");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "inbox"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})),
    )
    .await
    .expect("claim");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "receiver"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "receiver"}, "ports": [{"name": "mover", "port": 9443, "targetPort": "mover"}]}})),
        )
        .await
        .expect("service");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod_with("receiver", json!({
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "mover", "image": "ghcr.io/sovereign-dev/sovereign-operator:0.1.0",
                "command": ["sovereign"],
                "args": ["mover", "receive", "--listen", "$(POD_IP):7000", "--root", "/data", "--certs", "/etc/mover"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "mover", "containerPort": 7000}],
                "readinessProbe": {"tcpSocket": {"port": "mover"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tls", "mountPath": "/etc/mover", "readOnly": true}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "inbox"}},
                        {"name": "tls", "secret": {"secretName": "receiver-tls", "defaultMode": 256}}]
        })),
    )
    .await
    .expect("pod");
    let pod = until("the receiver to be ready", || async {
        get(&pods, "receiver")
            .await
            .filter(|p| condition(p, "Ready").is_some_and(|c| c["status"] == "True"))
    })
    .await;
    let pod_ip = s(&pod, "/status/podIP").to_string();
    let svc = until("a load balancer address", || async {
        get(&services, "receiver")
            .await
            .filter(|s| s.pointer("/status/loadBalancer/ingress/0/ip").is_some())
    })
    .await;
    let lb = s(&svc, "/status/loadBalancer/ingress/0/ip").to_string();
    assert!(
        lb.starts_with(&format!("127.{}.", c.loopback_octet())),
        "{lb}"
    );
    assert_ne!(lb, pod_ip);
    // Endpoints and the EndpointSlice point at the pod's address and resolved target port.
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = until("endpoints", || async {
        get(&eps, "receiver")
            .await
            .filter(|e| e.pointer("/subsets/0/addresses/0/ip").is_some())
    })
    .await;
    assert_eq!(s(&ep, "/subsets/0/addresses/0/ip"), pod_ip);
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 7000);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = until("an endpoint slice", || async {
        list(&slices, "kubernetes.io/service-name=receiver")
            .await
            .into_iter()
            .find(|s| s.pointer("/endpoints/0").is_some())
    })
    .await;
    assert_eq!(slice["endpoints"][0]["addresses"][0], pod_ip.as_str());
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);

    // The real sender, on the host, reaches the receiver through the load balancer.
    let src = work.path().join("src");
    std::fs::create_dir_all(src.join("docs")).expect("mkdir");
    std::fs::write(src.join("docs/dossier.txt"), "patient 42: ok\n").expect("write");
    let send = tokio::process::Command::new(sovereign())
        .args(["mover", "send", "--no-owner", "--to"])
        .arg(format!("{lb}:9443"))
        .arg("--root")
        .arg(&src)
        .arg("--certs")
        .arg(&certs)
        .output()
        .await
        .expect("sovereign mover send");
    assert!(
        send.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&send.stderr)
    );
    let inbox = c.volume_path("default", "inbox").expect("bound");
    assert_eq!(
        std::fs::read_to_string(inbox.join("docs/dossier.txt")).expect("received file"),
        "patient 42: ok\n",
        "the file landed in the claim's directory (the pod's /data)"
    );

    // kubectl logs shows what the process wrote.
    let kubeconfig = work.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &[("exec", &c)], "exec").expect("kubeconfig");
    let logs = kubectl(&kubeconfig, &["logs", "receiver"]).await;
    assert!(logs.contains("receiver listening"), "{logs}");
    let tail = kubectl(&kubeconfig, &["logs", "receiver", "--tail=1"]).await;
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // Deleting the pod stops the process, then the pod goes.
    let needle = inbox.to_string_lossy().into_owned();
    assert_eq!(processes_mentioning(&needle).len(), 1, "the receiver runs");
    pods.delete("receiver", &DeleteParams::default())
        .await
        .expect("delete");
    let terminating = get(&pods, "receiver").await;
    if let Some(p) = terminating {
        assert!(p.pointer("/metadata/deletionTimestamp").is_some());
    }
    until("the pod to go", || async {
        get(&pods, "receiver").await.is_none().then_some(())
    })
    .await;
    assert!(
        processes_mentioning(&needle).is_empty(),
        "the receiver was stopped"
    );
    assert!(
        std::net::TcpStream::connect(format!("{pod_ip}:7000")).is_err(),
        "nothing listens at the pod's address any more"
    );
    c.shutdown().await;
}

#[tokio::test]
async fn exit_codes_reach_the_pod_status() {
    let (c, client) = eks("exits", exec_options()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod_with("three", json!({"restartPolicy": "Never", "containers": [{"name": "sh", "image": "docker.io/library/busybox:1.36",
            "command": ["sh", "-c", "echo leaving with $(CODE); exit $(CODE)"], "env": [{"name": "CODE", "value": "3"}]}]})),
    )
    .await
    .expect("create");
    // The product binary failing for real: a receiver without its certificates.
    pods.create(
        &PostParams::default(),
        &pod_with("no-certs", json!({"restartPolicy": "Never", "containers": [{"name": "mover", "image": "ghcr.io/sovereign-dev/sovereign:0.1.0",
            "command": ["sovereign"], "args": ["mover", "receive", "--listen", "127.0.0.1:0", "--root", "/tmp/x", "--certs", "/nonexistent"]}]})),
    )
    .await
    .expect("create");
    for (name, code) in [("three", 3), ("no-certs", 1)] {
        let p = until("the pod to fail", || async {
            get(&pods, name)
                .await
                .filter(|p| s(p, "/status/phase") == "Failed")
        })
        .await;
        let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(code), Some("Error")),
            "{name}"
        );
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    }
    let kubeconfig = tempfile::NamedTempFile::new().expect("tmp");
    write_kubeconfig(kubeconfig.path(), &[("exits", &c)], "exits").expect("kubeconfig");
    let logs = kubectl(kubeconfig.path(), &["logs", "three"]).await;
    assert_eq!(logs, "leaving with 3\n");
    // OnFailure restarts with back-off, counted in restartCount.
    pods.create(
        &PostParams::default(),
        &pod_with(
            "again",
            json!({"restartPolicy": "OnFailure", "containers": [{"name": "sh", "image": "busybox",
            "command": ["sh", "-c", "exit 2"]}]}),
        ),
    )
    .await
    .expect("create");
    let p = until("a restart", || async {
        get(&pods, "again").await.filter(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_i64()
                .is_some_and(|n| n >= 1)
        })
    })
    .await;
    assert_eq!(s(&p, "/status/phase"), "Running");
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        2
    );
    c.shutdown().await;
}
