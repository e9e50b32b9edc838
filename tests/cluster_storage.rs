//! Storage on real upstream Kubernetes: KCM's PV controller hands claims to the node agent's
//! provisioner and binds what it makes; the real scheduler places consumers; upstream's
//! snapshot-controller (external-snapshotter) binds VolumeSnapshots to contents that the agent's
//! snapshotter takes as copies of the volumes' directories. Pods are scheduled but not run (no pod runtime here), which is all that
//! WaitForFirstConsumer claims need. One throwaway cluster per test; every wait is on a
//! condition, with a generous deadline so a broken controller fails instead of hanging.
#![cfg(feature = "sandbox")]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use kube::api::{Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sovereign::sandbox::cluster::{Cluster, ClusterOptions};
use sovereign::sandbox::profiles;

const DEADLINE: Duration = Duration::from_secs(120);

/// Two clusters at a time: each is four control-plane processes on a two-core machine.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

struct Env {
    c: Cluster,
    client: kube::Client,
}

/// Runs `body` against a fresh cluster of the profile, and shuts the cluster down after it,
/// also when `body` fails (its processes would otherwise outlive it and hold its addresses).
async fn with_cluster(name: &str, profile: &str, body: impl AsyncFnOnce(&Env)) {
    use futures::FutureExt;
    let _slot = SLOTS.acquire().await.expect("semaphore");
    let bins = sovereign::sandbox::controlplane::binaries::locate(None, &mut |m| eprintln!("{m}"))
        .expect("control-plane binaries (SOVEREIGN_CONTROL_PLANE_BIN)");
    let profile = profiles::by_id(profile, 1).expect("profile");
    let sov = PathBuf::from(env!("CARGO_BIN_EXE_sovereign"));
    let c = Cluster::start(ClusterOptions::temporary(name, profile, &sov), &bins)
        .await
        .expect("cluster");
    let client = c.client().await.expect("client");
    let env = Env { c, client };
    let outcome = std::panic::AssertUnwindSafe(body(&env))
        .catch_unwind()
        .await;
    env.c.shutdown().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

impl Env {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), "default")
    }

    fn all<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        Api::all(self.client.clone())
    }

    fn snapshots(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            "default",
            &snapshot_kind("VolumeSnapshot"),
        )
    }

    fn contents(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &snapshot_kind("VolumeSnapshotContent"))
    }

    fn snapshot_classes(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &snapshot_kind("VolumeSnapshotClass"))
    }

    /// The directory behind a bound claim, once bound.
    async fn bound_dir(&self, claim: &str) -> PathBuf {
        until(&format!("claim {claim} bound to a directory"), || async {
            self.c.volume_path("default", claim).await
        })
        .await
    }

    /// The PV a claim is bound to.
    async fn volume_of(&self, claim: &str) -> Value {
        let pvc = get(&self.api::<PersistentVolumeClaim>(), claim)
            .await
            .expect("claim");
        get(&self.all::<PersistentVolume>(), s(&pvc, "/spec/volumeName"))
            .await
            .expect("bound volume")
    }
}

fn snapshot_kind(kind: &str) -> ApiResource {
    let lower = kind.to_lowercase();
    let plural = if lower.ends_with("ss") {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("snapshot.storage.k8s.io", "v1", kind),
        &plural,
    )
}

/// Poll until `f` yields a value; the deadline only turns a hang into a failure.
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
        tokio::time::sleep(Duration::from_millis(250)).await;
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
    let lp = ListParams::default().labels(selector);
    api.list(&lp)
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

fn zone_of_volume(pv: &Value) -> &str {
    let terms = &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"];
    terms[0]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["key"] == "topology.kubernetes.io/zone")
        .and_then(|e| e["values"][0].as_str())
        .unwrap_or_default()
}

async fn zone_of_node(e: &Env, node: &str) -> String {
    let n = get(&e.all::<Node>(), node).await.expect("node");
    s(&n, "/metadata/labels/topology.kubernetes.io~1zone").to_string()
}

fn claim(name: &str, class: Option<&str>, snapshot: Option<&str>) -> PersistentVolumeClaim {
    let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    if let Some(snap) = snapshot {
        c["spec"]["dataSource"] =
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snap});
    }
    obj(c)
}

/// A pod that only needs to be scheduled: the first consumer of a WaitForFirstConsumer claim.
fn consumer(pod: &str, claim: &str) -> Pod {
    obj(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
        "spec": {"containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
    )
}

fn volume_snapshot(name: &str, source: Value, class: Option<&str>) -> DynamicObject {
    let mut spec = json!({"source": source});
    if let Some(class) = class {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    DynamicObject::new(name, &snapshot_kind("VolumeSnapshot")).data(json!({"spec": spec}))
}

fn of_claim(claim: &str) -> Value {
    json!({"persistentVolumeClaimName": claim})
}

async fn ready_snapshot(e: &Env, name: &str) -> Value {
    until(&format!("snapshot {name} ready to use"), || async {
        get(&e.snapshots(), name)
            .await
            .filter(|v| v.pointer("/status/readyToUse") == Some(&json!(true)))
    })
    .await
}

async fn snapshot_error(e: &Env, name: &str) -> Value {
    until(&format!("an error on snapshot {name}"), || async {
        get(&e.snapshots(), name)
            .await
            .filter(|v| !s(v, "/status/error/message").is_empty())
    })
    .await
}

async fn events_of(e: &Env, object: &str) -> Vec<Event> {
    let events: Api<Event> = e.api();
    let all = events.list(&ListParams::default()).await.expect("events");
    all.items
        .into_iter()
        .filter(|ev| ev.involved_object.name.as_deref() == Some(object))
        .collect()
}

/// A tree as comparable facts: relative path → (kind, mode, mtime, content or link target).
fn tree(root: &Path) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (char, u32, i64, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = entry.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                out.insert(
                    rel,
                    ('l', 0, m.mtime(), t.display().to_string().into_bytes()),
                );
            } else if m.is_dir() {
                out.insert(rel, ('d', mode, m.mtime(), Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(
                    rel,
                    ('f', mode, m.mtime(), std::fs::read(&p).expect("read")),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Stands in for the missing kubelet: a pod the controllers deleted is gone once its kubelet
/// confirms; here nobody runs it, so the test confirms.
async fn confirm_deleted_pods(e: &Env, selector: &str) {
    let pods: Api<Pod> = e.api();
    until("the pods gone", || async {
        let left = list(&pods, selector).await;
        for p in &left {
            if p.pointer("/metadata/deletionTimestamp").is_some() {
                let _ = pods
                    .delete(
                        s(p, "/metadata/name"),
                        &DeleteParams::default().grace_period(0),
                    )
                    .await;
            }
        }
        left.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statefulset_claims_bind_to_real_directories_and_outlive_the_pods() {
    with_cluster("sts", "eks-us-east-1", async |e| {
        let sts: Api<StatefulSet> = e.api();
        let pods: Api<Pod> = e.api();
        let template = |name: &str| json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        // Parallel: the real controller would otherwise wait for db-0 to run before making db-1.
        let set = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:16",
                         "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql"}, {"name": "wal", "mountPath": "/wal"}]}]}},
                     "volumeClaimTemplates": [template("data"), template("wal")]}
        });
        sts.create(&PostParams::default(), &obj(set))
            .await
            .expect("statefulset");
        for i in 0..2 {
            let pod = until(&format!("db-{i} scheduled"), || async {
                get(&pods, &format!("db-{i}"))
                    .await
                    .filter(|p| !s(p, "/spec/nodeName").is_empty())
            })
            .await;
            let node_zone = zone_of_node(e, s(&pod, "/spec/nodeName")).await;
            for t in ["data", "wal"] {
                let name = format!("{t}-db-{i}");
                let dir = e.bound_dir(&name).await;
                let pvc = get(&e.api::<PersistentVolumeClaim>(), &name)
                    .await
                    .expect("claim per template and ordinal");
                assert_eq!(
                    s(&pvc, "/spec/storageClassName"),
                    "gp3",
                    "the default class"
                );
                assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
                let pv = e.volume_of(&name).await;
                assert_eq!(
                    s(&pv, "/metadata/name"),
                    format!("pvc-{}", s(&pvc, "/metadata/uid"))
                );
                assert_eq!(s(&pv, "/status/phase"), "Bound");
                assert_eq!(s(&pv, "/spec/claimRef/uid"), s(&pvc, "/metadata/uid"));
                assert_eq!(s(&pv, "/spec/csi/driver"), "ebs.csi.aws.com");
                assert_eq!(
                    s(
                        &pv,
                        "/metadata/annotations/pv.kubernetes.io~1provisioned-by"
                    ),
                    "ebs.csi.aws.com"
                );
                assert_eq!(
                    zone_of_volume(&pv),
                    node_zone,
                    "the volume follows its first consumer's zone"
                );
                assert_eq!(dir, e.c.host().volumes_dir().join(s(&pv, "/metadata/name")));
                std::fs::write(dir.join("hello.txt"), format!("from {name}")).expect("write");
            }
        }
        // Scale to 0: the pods go, their claims stay bound with their data.
        let scale = Patch::Merge(json!({"spec": {"replicas": 0}}));
        sts.patch("db", &PatchParams::default(), &scale)
            .await
            .expect("scale");
        confirm_deleted_pods(e, "app=db").await;
        for name in ["data-db-0", "wal-db-0", "data-db-1", "wal-db-1"] {
            let dir = e.c.volume_path("default", name).await.expect("still bound");
            assert_eq!(
                std::fs::read_to_string(dir.join("hello.txt")).expect("kept"),
                format!("from {name}")
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_sharing_a_delayed_claim_all_land_in_its_volumes_zone() {
    // Three replicas would spread over the three zones; the one WaitForFirstConsumer claim is
    // provisioned in its first consumer's zone, and the real scheduler keeps the others there.
    with_cluster("shared-claim", "eks-us-east-1", async |e| {
        let mut shared = claim("shared", None, None);
        if let Some(spec) = shared.spec.as_mut() {
            spec.access_modes = Some(vec!["ReadWriteMany".into()]);
        }
        e.api::<PersistentVolumeClaim>()
            .create(&PostParams::default(), &shared)
            .await
            .expect("claim");
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "files"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "files"}},
                     "template": {"metadata": {"labels": {"app": "files"}},
                                  "spec": {"containers": [{"name": "f", "image": "nginx:1.27", "resources": {"requests": {"cpu": "100m"}},
                                                           "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                                           "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]}}}
        });
        e.api::<Deployment>()
            .create(&PostParams::default(), &obj(deploy))
            .await
            .expect("deployment");
        let pods: Api<Pod> = e.api();
        let placed = until("3 replicas scheduled", || async {
            let ps = list(&pods, "app=files").await;
            (ps.len() == 3 && ps.iter().all(|p| !s(p, "/spec/nodeName").is_empty())).then_some(ps)
        })
        .await;
        e.bound_dir("shared").await;
        let pv = e.volume_of("shared").await;
        let volume_zone = zone_of_volume(&pv).to_string();
        assert!(!volume_zone.is_empty(), "{pv}");
        assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteMany"]));
        for p in &placed {
            assert_eq!(
                zone_of_node(e, s(p, "/spec/nodeName")).await,
                volume_zone,
                "{} is scheduled outside its volume's zone",
                s(p, "/metadata/name")
            );
        }
    })
    .await;
}

/// Writes the files a snapshot is to freeze; returns the tree at that moment.
fn seed_files(live: &Path) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    std::fs::create_dir_all(live.join("records/2026")).expect("mkdir");
    for i in 0..20 {
        let rows = format!("row,{i}\n").repeat(100 + i);
        std::fs::write(live.join(format!("records/2026/{i:03}.csv")), rows).expect("write");
    }
    std::fs::write(live.join("README.txt"), "v1\n").expect("write");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o640);
    std::fs::set_permissions(live.join("README.txt"), mode).expect("chmod");
    std::os::unix::fs::symlink("records/2026/001.csv", live.join("latest.csv")).expect("symlink");
    tree(live)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_freezes_a_claims_files_and_a_claim_restored_from_it_has_exactly_those() {
    with_cluster("snap", "eks-us-east-1", async |e| {
        let (pvcs, pods) = (e.api::<PersistentVolumeClaim>(), e.api::<Pod>());
        let pp = PostParams::default();
        // A claim of the default class (gp3, WaitForFirstConsumer), bound through its first consumer.
        pvcs.create(&pp, &claim("data", None, None))
            .await
            .expect("claim");
        pods.create(&pp, &consumer("writer", "data"))
            .await
            .expect("pod");
        let live = e.bound_dir("data").await;
        let at_snapshot = seed_files(&live);

        // Restored from a snapshot that does not exist yet: Pending, and the provisioner says why.
        pvcs.create(&pp, &claim("restored", None, Some("snap-1")))
            .await
            .expect("claim");
        pods.create(&pp, &consumer("reader", "restored"))
            .await
            .expect("pod");
        let ev = until("a ProvisioningFailed event", || async {
            events_of(e, "restored")
                .await
                .into_iter()
                .find(|ev| ev.reason.as_deref() == Some("ProvisioningFailed"))
        })
        .await;
        let message = ev.message.unwrap_or_default();
        assert!(
            message.starts_with("error getting handle for DataSource Type VolumeSnapshot by Name snap-1: error getting snapshot snap-1 from api server"),
            "{message}"
        );
        let restored_claim = get(&pvcs, "restored").await.expect("claim");
        assert_eq!(s(&restored_claim, "/status/phase"), "Pending");

        // The snapshot (no class named: the default class of the claim's driver is recorded).
        e.snapshots()
            .create(&pp, &volume_snapshot("snap-1", of_claim("data"), None))
            .await
            .expect("snapshot");
        let snap = ready_snapshot(e, "snap-1").await;
        // Written after the snapshot: the restored claim must not see these.
        std::fs::write(live.join("README.txt"), "v2, after the snapshot\n").expect("write");
        std::fs::write(live.join("records/2026/late.csv"), "late\n").expect("write");
        std::fs::remove_file(live.join("records/2026/000.csv")).expect("rm");
        assert_eq!(
            s(&snap, "/spec/volumeSnapshotClassName"),
            profiles::EBS_SNAPSHOT_CLASS
        );
        assert_eq!(snap["status"]["restoreSize"], "1Gi");
        assert!(!s(&snap, "/status/creationTime").is_empty());
        // The bound finalizer follows the binding (a reconcile after the status names the content).
        until("the snapshot's finalizers", || async {
            let vs = get(&e.snapshots(), "snap-1").await?;
            let has = |f: &str| {
                vs["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(format!("snapshot.storage.kubernetes.io/{f}"))))
            };
            (has("volumesnapshot-as-source-protection") && has("volumesnapshot-bound-protection"))
                .then_some(())
        })
        .await;
        let content_name = s(&snap, "/status/boundVolumeSnapshotContentName").to_string();
        assert_eq!(
            content_name,
            format!("snapcontent-{}", s(&snap, "/metadata/uid"))
        );
        let content = get(&e.contents(), &content_name).await.expect("content");
        let pv = e.volume_of("data").await;
        assert_eq!(
            s(&content, "/spec/source/volumeHandle"),
            s(&pv, "/spec/csi/volumeHandle")
        );
        assert_eq!(s(&content, "/spec/driver"), "ebs.csi.aws.com");
        assert_eq!(s(&content, "/spec/deletionPolicy"), "Delete");
        assert_eq!(
            s(&content, "/spec/volumeSnapshotClassName"),
            profiles::EBS_SNAPSHOT_CLASS
        );
        assert_eq!(
            s(&content, "/spec/volumeSnapshotRef/uid"),
            s(&snap, "/metadata/uid")
        );
        assert_eq!(content["status"]["readyToUse"], true);
        assert_eq!(content["status"]["restoreSize"], 1i64 << 30);
        assert!(
            content["status"]["creationTime"]
                .as_i64()
                .is_some_and(|t| t > 1_700_000_000_000_000_000)
        );
        assert_eq!(
            content["metadata"]["finalizers"],
            json!(["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"])
        );
        let snap_dir =
            e.c.host()
                .snapshots_dir()
                .join(s(&content, "/status/snapshotHandle"));
        assert!(snap_dir.is_dir(), "{}", snap_dir.display());
        // The source claim's protection was held while the snapshot was taken, and released after.
        until("the source claim released", || async {
            let c = get(&pvcs, "data").await.expect("claim");
            (!c["metadata"]["finalizers"]
                .to_string()
                .contains("pvc-as-source-protection"))
            .then_some(())
        })
        .await;

        // The restored claim binds (its consumer placed) with exactly the files at snapshot time.
        let restored = e.bound_dir("restored").await;
        assert_ne!(restored, live);
        assert_eq!(tree(&restored), at_snapshot);
        assert_ne!(tree(&live), at_snapshot, "the live volume moved on");

        // Errors: a class that does not exist, a claim not bound yet.
        e.snapshots()
            .create(
                &pp,
                &volume_snapshot("no-class", of_claim("data"), Some("nope")),
            )
            .await
            .expect("snapshot");
        let bad = snapshot_error(e, "no-class").await;
        assert_eq!(
            s(&bad, "/status/error/message"),
            "Failed to get snapshot class with error volumesnapshotclass.snapshot.storage.k8s.io \"nope\" not found"
        );
        pvcs.create(&pp, &claim("idle", None, None))
            .await
            .expect("claim");
        let unbound = volume_snapshot(
            "of-unbound",
            of_claim("idle"),
            Some(profiles::EBS_SNAPSHOT_CLASS),
        );
        e.snapshots().create(&pp, &unbound).await.expect("snapshot");
        let unbound = snapshot_error(e, "of-unbound").await;
        assert_eq!(
            s(&unbound, "/status/error/message"),
            "Failed to create snapshot content with error failed to get input parameters to create snapshot of-unbound: \"the PVC idle is not yet bound to a PV, will not attempt to take a snapshot\""
        );
        assert_eq!(unbound["status"]["readyToUse"], false);

        // Deleting the snapshot (policy Delete) deletes its content and its copy; the restore stays.
        e.snapshots()
            .delete("snap-1", &DeleteParams::default())
            .await
            .expect("delete");
        until("the snapshot and its content gone", || async {
            let gone = get(&e.snapshots(), "snap-1").await.is_none()
                && get(&e.contents(), &content_name).await.is_none();
            gone.then_some(())
        })
        .await;
        assert!(!snap_dir.exists(), "the snapshot's directory goes with it");
        assert_eq!(
            tree(&restored),
            at_snapshot,
            "a restored volume outlives its snapshot"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_of_an_immediate_class_binds_without_a_consumer() {
    with_cluster("immediate", "qc-sovereign", async |e| {
        let pvcs = e.api::<PersistentVolumeClaim>();
        pvcs.create(&PostParams::default(), &claim("data", None, None))
            .await
            .expect("claim");
        let dir = e.bound_dir("data").await;
        let pvc = get(&pvcs, "data").await.expect("claim");
        assert_eq!(s(&pvc, "/spec/storageClassName"), "ceph-rbd");
        let pv = e.volume_of("data").await;
        assert_eq!(s(&pv, "/spec/csi/driver"), "rbd.csi.ceph.com");
        assert_eq!(s(&pv, "/spec/csi/volumeHandle"), s(&pv, "/metadata/name"));
        assert_eq!(s(&pv, "/spec/csi/fsType"), "ext4");
        assert_eq!(
            s(
                &pv,
                "/spec/csi/volumeAttributes/sandbox.sovereign.dev~1path"
            ),
            dir.display().to_string()
        );
        assert_eq!(
            s(
                &pv,
                "/spec/csi/volumeAttributes/storage.kubernetes.io~1csiProvisionerIdentity"
            ),
            "sandbox-rbd.csi.ceph.com"
        );
        assert_eq!(s(&pv, "/spec/persistentVolumeReclaimPolicy"), "Delete");
        assert_eq!(s(&pv, "/spec/volumeMode"), "Filesystem");
        assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert!(
            pv["spec"]["nodeAffinity"].is_null(),
            "the profile's nodes carry no zone: {pv}"
        );
        assert!(
            pv["metadata"]["finalizers"]
                .to_string()
                .contains("external-provisioner.volume.kubernetes.io/finalizer")
        );
        let reasons = until("the provisioner's Events", || async {
            let evs = events_of(e, "data").await;
            let has = |r: &str| evs.iter().any(|ev| ev.reason.as_deref() == Some(r));
            (has("Provisioning") && has("ProvisioningSucceeded")).then_some(evs)
        })
        .await;
        let note = |r: &str| {
            reasons
                .iter()
                .find(|ev| ev.reason.as_deref() == Some(r))
                .and_then(|ev| ev.message.clone())
        };
        assert_eq!(
            note("Provisioning").as_deref(),
            Some("External provisioner is provisioning volume for claim \"default/data\"")
        );
        assert_eq!(
            note("ProvisioningSucceeded"),
            Some(format!(
                "Successfully provisioned volume {}",
                s(&pv, "/metadata/name")
            ))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_claim_of_a_delete_class_removes_its_volume_and_directory() {
    with_cluster("reclaim", "qc-sovereign", async |e| {
        let pvcs = e.api::<PersistentVolumeClaim>();
        pvcs.create(&PostParams::default(), &claim("scratch", None, None))
            .await
            .expect("claim");
        let dir = e.bound_dir("scratch").await;
        std::fs::write(dir.join("f"), "x").expect("write");
        let pv_name = s(&e.volume_of("scratch").await, "/metadata/name").to_string();
        pvcs.delete("scratch", &DeleteParams::default())
            .await
            .expect("delete");
        until("the volume deleted", || async {
            get(&e.all::<PersistentVolume>(), &pv_name)
                .await
                .is_none()
                .then_some(())
        })
        .await;
        assert!(!dir.exists(), "the directory goes with the volume");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_of_a_retain_class_leaves_its_volume_released_with_its_directory() {
    with_cluster("retain", "qc-sovereign", async |e| {
        let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ceph-retain"},
                           "provisioner": "rbd.csi.ceph.com", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"});
        let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = e.all();
        classes
            .create(&PostParams::default(), &obj(class))
            .await
            .expect("class");
        let pvcs = e.api::<PersistentVolumeClaim>();
        pvcs.create(
            &PostParams::default(),
            &claim("kept", Some("ceph-retain"), None),
        )
        .await
        .expect("claim");
        let dir = e.bound_dir("kept").await;
        std::fs::write(dir.join("f"), "precious").expect("write");
        let pv = e.volume_of("kept").await;
        let pv_name = s(&pv, "/metadata/name").to_string();
        assert_eq!(s(&pv, "/spec/persistentVolumeReclaimPolicy"), "Retain");
        assert!(
            !pv["metadata"]["finalizers"]
                .to_string()
                .contains("external-provisioner"),
            "{pv}"
        );
        pvcs.delete("kept", &DeleteParams::default())
            .await
            .expect("delete");
        let released = until("the volume Released", || async {
            get(&e.all::<PersistentVolume>(), &pv_name)
                .await
                .filter(|pv| s(pv, "/status/phase") == "Released")
        })
        .await;
        assert_eq!(s(&released, "/spec/claimRef/name"), "kept");
        assert_eq!(
            std::fs::read_to_string(dir.join("f")).expect("kept"),
            "precious"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_of_a_claim_whose_driver_has_no_snapshot_class_shows_the_upstream_error() {
    // EFS (Immediate, efs.csi.aws.com): its CSI driver has no snapshots, so no class.
    with_cluster("no-snapclass", "eks-us-east-1", async |e| {
        let pp = PostParams::default();
        e.api::<PersistentVolumeClaim>()
            .create(&pp, &claim("shared", Some("efs-sc"), None))
            .await
            .expect("claim");
        e.bound_dir("shared").await;
        e.snapshots()
            .create(
                &pp,
                &volume_snapshot("shared-snap", of_claim("shared"), None),
            )
            .await
            .expect("snapshot");
        let vs = snapshot_error(e, "shared-snap").await;
        assert_eq!(
            s(&vs, "/status/error/message"),
            "Failed to set default snapshot class with error cannot find default snapshot class"
        );
        assert!(!s(&vs, "/status/error/time").is_empty());
        assert!(s(&vs, "/spec/volumeSnapshotClassName").is_empty());
        let ev = until("a Warning Event", || async {
            events_of(e, "shared-snap")
                .await
                .into_iter()
                .find(|ev| ev.reason.as_deref() == Some("SetDefaultSnapshotClassFailed"))
        })
        .await;
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
    })
    .await;
}

/// Creates a snapshot object once its kind is served: a profile without a VolumeSnapshotClass of
/// its own does not wait for the snapshot CRDs before the cluster is ready.
async fn create_served(api: &Api<DynamicObject>, o: &DynamicObject) {
    until("the snapshot API served", || async {
        match api.create(&PostParams::default(), o).await {
            Ok(_) => Some(()),
            // The raw "404 page not found" of a kind not served yet.
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => panic!("create: {e}"),
        }
    })
    .await
}

fn snapshot_class(name: &str, policy: &str) -> DynamicObject {
    DynamicObject::new(name, &snapshot_kind("VolumeSnapshotClass"))
        .data(json!({"driver": "rbd.csi.ceph.com", "deletionPolicy": policy}))
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_volume_snapshot_removes_its_content_and_copy_unless_retained() {
    with_cluster("snap-delete", "qc-sovereign", async |e| {
        let pp = PostParams::default();
        for (name, policy) in [("rbd-delete", "Delete"), ("rbd-retain", "Retain")] {
            create_served(&e.snapshot_classes(), &snapshot_class(name, policy)).await;
        }
        e.api::<PersistentVolumeClaim>()
            .create(&pp, &claim("data", None, None))
            .await
            .expect("claim");
        let live = e.bound_dir("data").await;
        let at_snapshot = seed_files(&live);
        for (snap, class) in [("gone", "rbd-delete"), ("kept", "rbd-retain")] {
            e.snapshots()
                .create(&pp, &volume_snapshot(snap, of_claim("data"), Some(class)))
                .await
                .expect("snapshot");
        }
        let handle_of = |content: &Value| s(content, "/status/snapshotHandle").to_string();
        let mut dirs = BTreeMap::new();
        for snap in ["gone", "kept"] {
            let vs = ready_snapshot(e, snap).await;
            let content = get(
                &e.contents(),
                s(&vs, "/status/boundVolumeSnapshotContentName"),
            )
            .await
            .expect("content");
            let dir = e.c.host().snapshots_dir().join(handle_of(&content));
            assert_eq!(tree(&dir), at_snapshot);
            dirs.insert(snap, (s(&content, "/metadata/name").to_string(), dir));
            e.snapshots()
                .delete(snap, &DeleteParams::default())
                .await
                .expect("delete");
        }
        until("both snapshots gone", || async {
            let gone = get(&e.snapshots(), "gone").await.is_none()
                && get(&e.snapshots(), "kept").await.is_none();
            gone.then_some(())
        })
        .await;
        let (gone_content, gone_dir) = &dirs["gone"];
        until("the Delete content gone", || async {
            get(&e.contents(), gone_content)
                .await
                .is_none()
                .then_some(())
        })
        .await;
        assert!(!gone_dir.exists(), "the copy goes with a Delete content");
        let (kept_content, kept_dir) = &dirs["kept"];
        let kept = get(&e.contents(), kept_content)
            .await
            .expect("a Retain content stays");
        assert_eq!(kept["status"]["readyToUse"], true);
        assert_eq!(tree(kept_dir), at_snapshot, "and so does its copy");
    })
    .await;
}

fn preprovisioned_content(name: &str, handle: &str, snapshot: &str) -> DynamicObject {
    DynamicObject::new(name, &snapshot_kind("VolumeSnapshotContent")).data(json!({"spec": {
        "deletionPolicy": "Retain", "driver": "rbd.csi.ceph.com", "source": {"snapshotHandle": handle},
        "volumeSnapshotRef": {"name": snapshot, "namespace": "default"}}}))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_provisioned_snapshot_binds_to_a_copy_the_agent_has_and_restores() {
    with_cluster("snap-pre", "qc-sovereign", async |e| {
        let pp = PostParams::default();
        create_served(&e.snapshot_classes(), &snapshot_class("rbd", "Retain")).await;
        e.api::<PersistentVolumeClaim>()
            .create(&pp, &claim("data", None, None))
            .await
            .expect("claim");
        let at_snapshot = seed_files(&e.bound_dir("data").await);
        e.snapshots()
            .create(
                &pp,
                &volume_snapshot("first", of_claim("data"), Some("rbd")),
            )
            .await
            .expect("snapshot");
        let first = ready_snapshot(e, "first").await;
        let content = get(
            &e.contents(),
            s(&first, "/status/boundVolumeSnapshotContentName"),
        )
        .await
        .expect("content");
        let handle = s(&content, "/status/snapshotHandle").to_string();

        // The handle again, as a pre-provisioned content and snapshot (what a restore elsewhere does).
        e.contents()
            .create(&pp, &preprovisioned_content("pre-content", &handle, "pre"))
            .await
            .expect("content");
        let pre = volume_snapshot(
            "pre",
            json!({"volumeSnapshotContentName": "pre-content"}),
            None,
        );
        e.snapshots().create(&pp, &pre).await.expect("snapshot");
        let pre = ready_snapshot(e, "pre").await;
        assert_eq!(
            s(&pre, "/status/boundVolumeSnapshotContentName"),
            "pre-content"
        );
        let bound = get(&e.contents(), "pre-content").await.expect("content");
        assert_eq!(
            s(&bound, "/spec/volumeSnapshotRef/uid"),
            s(&pre, "/metadata/uid"),
            "bound back"
        );
        assert_eq!(s(&bound, "/status/snapshotHandle"), handle);
        e.api::<PersistentVolumeClaim>()
            .create(&pp, &claim("again", None, Some("pre")))
            .await
            .expect("claim");
        assert_eq!(tree(&e.bound_dir("again").await), at_snapshot);

        // A handle the agent has no copy for, and a content that does not exist.
        e.contents()
            .create(
                &pp,
                &preprovisioned_content("stray", "snap-0123456789abcdef0", "stray"),
            )
            .await
            .expect("content");
        let stray = volume_snapshot("stray", json!({"volumeSnapshotContentName": "stray"}), None);
        e.snapshots().create(&pp, &stray).await.expect("snapshot");
        let err = snapshot_error(e, "stray").await;
        assert_eq!(
            s(&err, "/status/error/message"),
            "Failed to check and update snapshot content: failed to list snapshot for content stray: \"rpc error: code = NotFound desc = snapshot id snap-0123456789abcdef0 not found\""
        );
        let missing = volume_snapshot(
            "missing",
            json!({"volumeSnapshotContentName": "nowhere"}),
            None,
        );
        e.snapshots().create(&pp, &missing).await.expect("snapshot");
        assert_eq!(
            s(
                &snapshot_error(e, "missing").await,
                "/status/error/message"
            ),
            "VolumeSnapshotContent is missing"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gp2_claim_is_provisioned_by_the_ebs_driver_and_keeps_its_in_tree_shape() {
    // gp2 is `kubernetes.io/aws-ebs`: KCM hands its claims to ebs.csi.aws.com (CSI migration), whose
    // provisioner translates the PV back to the in-tree source. The snapshot-controller takes
    // snapshots of CSI volumes only.
    with_cluster("gp2", "eks-us-east-1", async |e| {
        let pp = PostParams::default();
        e.api::<PersistentVolumeClaim>()
            .create(&pp, &claim("legacy", Some("gp2"), None))
            .await
            .expect("claim");
        e.api::<Pod>()
            .create(&pp, &consumer("old-app", "legacy"))
            .await
            .expect("pod");
        let dir = e.bound_dir("legacy").await;
        let pvc = get(&e.api::<PersistentVolumeClaim>(), "legacy")
            .await
            .expect("claim");
        assert_eq!(
            s(
                &pvc,
                "/metadata/annotations/volume.kubernetes.io~1storage-provisioner"
            ),
            "ebs.csi.aws.com"
        );
        let pv = e.volume_of("legacy").await;
        assert!(pv["spec"]["csi"].is_null(), "{pv}");
        assert!(
            s(&pv, "/spec/awsElasticBlockStore/volumeID").starts_with("vol-"),
            "{pv}"
        );
        assert_eq!(
            s(
                &pv,
                "/metadata/annotations/pv.kubernetes.io~1provisioned-by"
            ),
            "kubernetes.io/aws-ebs"
        );
        let pod = until("the consumer scheduled", || async {
            get(&e.api::<Pod>(), "old-app")
                .await
                .filter(|p| !s(p, "/spec/nodeName").is_empty())
        })
        .await;
        let zone = zone_of_node(e, s(&pod, "/spec/nodeName")).await;
        assert_eq!(zone_of_volume(&pv), zone);
        assert_eq!(
            s(&pv, "/metadata/labels/topology.kubernetes.io~1region"),
            "us-east-1"
        );
        assert!(dir.is_dir());
        e.snapshots()
            .create(
                &pp,
                &volume_snapshot("legacy-snap", of_claim("legacy"), None),
            )
            .await
            .expect("snapshot");
        let vs = snapshot_error(e, "legacy-snap").await;
        assert_eq!(
            s(&vs, "/status/error/message"),
            "Failed to set default snapshot class with error snapshotting non-CSI volumes is not supported, snapshot:default/legacy-snap"
        );
        // Deleting the claim: KCM leaves the migrated volume's deletion to the driver's provisioner.
        let pv_name = s(&pv, "/metadata/name").to_string();
        until("KCM marking the volume migrated", || async {
            get(&e.all::<PersistentVolume>(), &pv_name).await.filter(|pv| {
                s(pv, "/metadata/annotations/pv.kubernetes.io~1migrated-to") == "ebs.csi.aws.com"
            })
        })
        .await;
        let pods: Api<Pod> = e.api();
        pods.delete("old-app", &DeleteParams::default().grace_period(0)).await.expect("pod");
        e.api::<PersistentVolumeClaim>().delete("legacy", &DeleteParams::default()).await.expect("claim");
        until("the gp2 volume deleted", || async {
            get(&e.all::<PersistentVolume>(), &pv_name).await.is_none().then_some(())
        })
        .await;
        assert!(!dir.exists(), "its directory goes with it");
    })
    .await;
}
