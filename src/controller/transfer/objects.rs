//! The mover's objects, built from a VolumeTransfer: the certificate Secrets, the receiver Pod and
//! its Service in the target, the sender Pod of each pass and the claim that keeps the sender's
//! stat cache across passes in the source and, with consistency Snapshot, the pass's
//! VolumeSnapshot and the claim restored from it. Pure: the reconcile applies what these return.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::json;

use crate::api::transfer::VolumeTransfer;
use crate::api::workload::{Transport, keys};
use crate::migrate::plan::quantity_bytes;
use crate::migrate::snapshot;
use crate::mover::certs::TlsMaterial;

/// The receiver's port.
pub const PORT: i32 = 8443;
/// Where the volume and the certificates are mounted in the mover's containers.
pub const DATA_PATH: &str = "/data";
pub const CERTS_PATH: &str = "/certs";
/// Where the sender's stat-cache claim is mounted, and the cache file in it.
pub const CACHE_PATH: &str = "/cache";
pub const CACHE_FILE: &str = "/cache/sender.idx";

pub fn secret_name(vt: &VolumeTransfer) -> String {
    format!("{}-mover-tls", vt.name_any())
}

pub fn receiver_name(vt: &VolumeTransfer) -> String {
    format!("{}-recv", vt.name_any())
}

pub fn sender_name(vt: &VolumeTransfer, pass: i32, attempt: i32) -> String {
    format!("{}-send-{pass}-{attempt}", vt.name_any())
}

/// The VolumeSnapshot of a pass, and the claim restored from it (the same name: one of each).
pub fn snapshot_name(vt: &VolumeTransfer, pass: i32) -> String {
    format!("{}-snap-{pass}", vt.name_any())
}

/// The claim that keeps the sender's stat cache from one pass to the next (see `cache`).
pub fn cache_name(vt: &VolumeTransfer) -> String {
    format!("{}-cache", vt.name_any())
}

/// What the cache claim requests for a volume of `capacity` (a quantity; the source claim's): the
/// cache holds about 40 bytes per 16 KiB chunk and 200 per file, i.e. well under 1/256 of the
/// volume; so max(1Gi, capacity/256), rounded up to whole GiB. Unknown capacity: 1Gi.
pub fn cache_request(capacity: Option<&str>) -> String {
    const GIB: u64 = 1 << 30;
    let bytes = capacity.and_then(quantity_bytes).unwrap_or(0);
    format!("{}Gi", bytes.div_ceil(256).div_ceil(GIB).max(1))
}

/// The sender's cache claim, in the source namespace and the source claim's StorageClass (so that
/// it is provisioned in the same topology; `None`: the cluster's default class).
pub fn cache_claim(vt: &VolumeTransfer, storage_class: Option<&str>) -> PersistentVolumeClaim {
    let description = format!(
        "Stat cache of the sovereign mover's sender for the claim {:?}: what the last verified pass \
         of VolumeTransfer {}/{} read, so that the next pass reads only what changed. It \
         holds the volume's file names, sizes, times and chunk hashes, not its contents; deleted \
         with the transfer's other mover objects.",
        vt.spec.source.pvc,
        vt.namespace().unwrap_or_default(),
        vt.name_any()
    );
    let mut v = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": cache_name(vt), "namespace": vt.spec.source.namespace,
                     "labels": labels(vt, "cache"),
                     "annotations": {"kubernetes.io/description": description}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": cache_request(vt.spec.capacity.as_deref())}}
        }
    });
    if let Some(sc) = storage_class {
        v["spec"]["storageClassName"] = json!(sc);
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// Labels every mover object carries: found and removed by them.
pub fn labels(vt: &VolumeTransfer, role: &str) -> BTreeMap<String, String> {
    [
        (keys::MANAGED_BY.to_string(), keys::MANAGER.to_string()),
        (keys::TRANSFER.to_string(), vt.name_any()),
        (
            "app.kubernetes.io/name".to_string(),
            "sovereign-mover".to_string(),
        ),
        ("app.kubernetes.io/component".to_string(), role.to_string()),
    ]
    .into()
}

pub fn selector(vt: &VolumeTransfer) -> String {
    format!("{}={}", keys::TRANSFER, vt.name_any())
}

/// One side's certificate Secret (`ca.crt`, `<role>.crt`, `<role>.key`), the files
/// `sovereign mover` reads from `--certs`.
pub fn secret(vt: &VolumeTransfer, namespace: &str, role: &str, m: &TlsMaterial) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        (
            "ca.crt".to_string(),
            ByteString(m.ca_pem.clone().into_bytes()),
        ),
        (
            format!("{role}.crt"),
            ByteString(m.cert_pem.clone().into_bytes()),
        ),
        (
            format!("{role}.key"),
            ByteString(m.key_pem.clone().into_bytes()),
        ),
    ]
    .into();
    let mut s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret_name(vt), "namespace": namespace},
        "type": "Opaque",
    }))
    .unwrap_or_default();
    s.metadata.labels = Some(labels(vt, role));
    s.data = Some(data);
    s
}

/// The movers run as root, overriding the image's non-root `USER`: the sender must read every
/// file whatever its owner and mode (a database's 0600 files), the receiver must give each file
/// its owner back, and the certificate Secret's files are root's, 0400. A non-root process gets
/// none of the added capabilities in its effective set. So: uid 0 with every capability dropped
/// but the three this needs (all three allowed by the Pod Security "baseline" level).
fn security_context() -> serde_json::Value {
    json!({"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
           "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]},
           "seccompProfile": {"type": "RuntimeDefault"}})
}

/// The receiver: mounts the target PVC read-write and listens on its pod IP.
pub fn receiver_pod(vt: &VolumeTransfer, image: &str) -> Pod {
    let v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": receiver_name(vt), "namespace": vt.spec.target.namespace, "labels": labels(vt, "receiver")},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "receiver",
                "image": image,
                "command": ["/usr/local/bin/sovereign"],
                "args": ["mover", "receive", "--listen", format!("$(POD_IP):{PORT}"),
                         "--root", DATA_PATH, "--certs", CERTS_PATH, "--log-format", "json"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "mover", "containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 2},
                "securityContext": security_context(),
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_PATH},
                    {"name": "certs", "mountPath": CERTS_PATH, "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": vt.spec.target.pvc}},
                {"name": "certs", "secret": {"secretName": secret_name(vt), "defaultMode": 0o400}}
            ]
        }
    });
    serde_json::from_value(v).unwrap_or_default()
}

/// The receiver's Service: how the sender, in another cluster, reaches it.
pub fn receiver_service(vt: &VolumeTransfer, transport: Transport) -> Service {
    let type_ = match transport {
        Transport::NodePort => "NodePort",
        // With an explicit endpoint the Service only gives the relay or NAT a stable target.
        Transport::Endpoint => "ClusterIP",
        Transport::LoadBalancer => "LoadBalancer",
    };
    let v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": receiver_name(vt), "namespace": vt.spec.target.namespace, "labels": labels(vt, "receiver")},
        "spec": {
            "type": type_,
            "selector": {keys::TRANSFER: vt.name_any(), "app.kubernetes.io/component": "receiver"},
            "ports": [{"name": "mover", "port": PORT, "targetPort": "mover", "protocol": "TCP"}]
        }
    });
    serde_json::from_value(v).unwrap_or_default()
}

/// The VolumeSnapshot a Snapshot pass reads: of the source claim, with the chosen class, in the
/// source namespace.
pub fn volume_snapshot(vt: &VolumeTransfer, pass: i32, class: &str) -> DynamicObject {
    let mut o = DynamicObject::new(&snapshot_name(vt, pass), &snapshot::volume_snapshots())
        .within(&vt.spec.source.namespace)
        .data(json!({"spec": {
            "volumeSnapshotClassName": class,
            "source": {"persistentVolumeClaimName": vt.spec.source.pvc}
        }}));
    o.metadata.labels = Some(labels(vt, "snapshot"));
    o.metadata.annotations = Some([("sovereign.dev/pass".to_string(), pass.to_string())].into());
    o
}

/// What a claim restored from a snapshot requests: at least the snapshot's `restoreSize`, and at
/// least what the source claim requests (the first known of them when the other is unreadable).
pub fn restore_request(restore_size: Option<&str>, source_request: Option<&str>) -> Option<String> {
    let known: Vec<(&str, u64)> = [restore_size, source_request]
        .into_iter()
        .flatten()
        .filter_map(|q| Some((q, quantity_bytes(q)?)))
        .collect();
    known
        .iter()
        .max_by_key(|(_, b)| *b)
        .map(|(q, _)| q.to_string())
}

/// The claim a Snapshot pass's sender reads: restored from the pass's VolumeSnapshot, in the
/// source claim's StorageClass (the snapshot's driver restores it), sized by `restore_request`.
pub fn snapshot_claim(
    vt: &VolumeTransfer,
    pass: i32,
    storage_class: Option<&str>,
    request: &str,
    access_modes: &[String],
) -> PersistentVolumeClaim {
    let name = snapshot_name(vt, pass);
    let modes: Vec<String> = if access_modes.is_empty() {
        vec!["ReadWriteOnce".into()]
    } else {
        access_modes.to_vec()
    };
    let mut v = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": vt.spec.source.namespace, "labels": labels(vt, "snapshot"),
                     "annotations": {"sovereign.dev/pass": pass.to_string()}},
        "spec": {
            "accessModes": modes,
            "volumeMode": "Filesystem",
            "resources": {"requests": {"storage": request}},
            "dataSource": {"apiGroup": snapshot::GROUP, "kind": "VolumeSnapshot", "name": name}
        }
    });
    if let Some(sc) = storage_class {
        v["spec"]["storageClassName"] = json!(sc);
    }
    serde_json::from_value(v).unwrap_or_default()
}

/// The sender of one pass: mounts `claim` read-only (the source claim, or the claim restored from
/// the pass's snapshot); placed on `node` when given (the node that already mounts a live
/// ReadWriteOnce claim: such a volume attaches to one node). With `cache` (the cache claim's
/// name) it mounts that claim read-write and keeps its stat cache there (`--cache`).
#[allow(clippy::too_many_arguments)]
pub fn sender_pod(
    vt: &VolumeTransfer,
    image: &str,
    to: &str,
    pass: i32,
    last: bool,
    attempt: i32,
    claim: &str,
    node: Option<&str>,
    cache: Option<&str>,
) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": sender_name(vt, pass, attempt), "namespace": vt.spec.source.namespace,
                     "labels": labels(vt, "sender"),
                     "annotations": {"sovereign.dev/pass": pass.to_string()}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "sender",
                "image": image,
                "command": ["/usr/local/bin/sovereign"],
                "args": ["mover", "send", "--to", to, "--root", DATA_PATH, "--certs", CERTS_PATH,
                         "--pass", pass.to_string(), "--log-format", "json"],
                "securityContext": security_context(),
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_PATH, "readOnly": true},
                    {"name": "certs", "mountPath": CERTS_PATH, "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": true}},
                {"name": "certs", "secret": {"secretName": secret_name(vt), "defaultMode": 0o400}}
            ]
        }
    });
    if last && let Some(args) = v["spec"]["containers"][0]["args"].as_array_mut() {
        args.push(json!("--final"));
    }
    if let Some(cache) = cache {
        let c = &mut v["spec"]["containers"][0];
        if let Some(args) = c["args"].as_array_mut() {
            args.extend([json!("--cache"), json!(CACHE_FILE)]);
        }
        if let Some(mounts) = c["volumeMounts"].as_array_mut() {
            mounts.push(json!({"name": "cache", "mountPath": CACHE_PATH}));
        }
        if let Some(volumes) = v["spec"]["volumes"].as_array_mut() {
            volumes.push(json!({"name": "cache", "persistentVolumeClaim": {"claimName": cache}}));
        }
    }
    if let Some(node) = node {
        v["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
    }
    serde_json::from_value(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::transfer::{VolumeEnd, VolumeTransferSpec};
    use crate::api::workload::Consistency;

    fn vt() -> VolumeTransfer {
        let end = |c: &str, ns: &str| VolumeEnd {
            cluster: c.into(),
            namespace: ns.into(),
            pvc: "data-db-0".into(),
            storage_class: None,
        };
        VolumeTransfer::new(
            "dossier-data-db-0",
            VolumeTransferSpec {
                workload: "dossier".into(),
                source: end("aws", "sante"),
                target: end("qc", "sante-qc"),
                consistency: Consistency::Quiesce,
                capacity: None,
            },
        )
    }

    #[test]
    fn the_sender_reads_the_source_claim_read_only_and_names_its_pass() {
        let p = sender_pod(
            &vt(),
            "img",
            "10.0.0.1:8443",
            2,
            true,
            1,
            "data-db-0",
            Some("node-a"),
            None,
        );
        let spec = p.spec.expect("spec");
        assert_eq!(p.metadata.namespace.as_deref(), Some("sante"));
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap_or_default();
        assert!(args.windows(2).any(|w| w == ["--pass", "2"]));
        assert!(args.windows(2).any(|w| w == ["--to", "10.0.0.1:8443"]));
        assert!(args.iter().any(|a| a == "--final"));
        let vol = spec.volumes.unwrap_or_default();
        let claim = vol[0].persistent_volume_claim.clone().expect("claim");
        assert_eq!(claim.claim_name, "data-db-0");
        assert_eq!(claim.read_only, Some(true));
        assert!(spec.affinity.is_some());
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn without_a_cache_the_sender_mounts_nothing_writable_and_keeps_no_cache() {
        let p = sender_pod(&vt(), "img", "a:1", 1, false, 1, "data-db-0", None, None);
        let spec = p.spec.expect("spec");
        let args = spec.containers[0].args.clone().unwrap_or_default();
        assert!(!args.iter().any(|a| a == "--cache"), "{args:?}");
        let mounts = spec.containers[0].volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts.iter().all(|m| m.read_only == Some(true)),
            "{mounts:?}"
        );
        assert_eq!(spec.volumes.unwrap_or_default().len(), 2);
        assert!(spec.security_context.is_none());
    }

    #[test]
    fn with_a_cache_the_sender_keeps_it_in_its_claim_across_passes() {
        let v = vt();
        let p = sender_pod(
            &v,
            "img",
            "a:1",
            2,
            true,
            3,
            "data-db-0",
            Some("node-a"),
            Some("dossier-data-db-0-cache"),
        );
        let spec = p.spec.expect("spec");
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap_or_default();
        assert!(
            args.windows(2)
                .any(|w| w == ["--cache", "/cache/sender.idx"]),
            "{args:?}"
        );
        assert!(args.iter().any(|a| a == "--final"));
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        let cache = mounts.iter().find(|m| m.name == "cache").expect("mount");
        assert_eq!(cache.mount_path, CACHE_PATH);
        assert_ne!(cache.read_only, Some(true), "the cache is written");
        let data = mounts.iter().find(|m| m.name == "data").expect("mount");
        assert_eq!(data.read_only, Some(true), "the data stays read-only");
        let vols = spec.volumes.clone().unwrap_or_default();
        let claim = vols
            .iter()
            .find(|x| x.name == "cache")
            .and_then(|x| x.persistent_volume_claim.clone())
            .expect("claim");
        assert_eq!(claim.claim_name, "dossier-data-db-0-cache");
        assert_ne!(claim.read_only, Some(true));
        let data = vols
            .iter()
            .find(|x| x.name == "data")
            .and_then(|x| x.persistent_volume_claim.clone())
            .expect("claim");
        assert_eq!(
            (data.claim_name.as_str(), data.read_only),
            ("data-db-0", Some(true))
        );
        let sc = spec.containers[0]
            .security_context
            .clone()
            .expect("security context");
        assert_eq!(
            (sc.run_as_user, sc.run_as_non_root),
            (Some(0), Some(false)),
            "root, to write the cache claim and read any file"
        );
        assert!(spec.affinity.is_some(), "still on the live claim's node");
    }

    #[test]
    fn the_cache_claim_is_sized_from_the_volume() {
        const GIB: u64 = 1 << 30;
        let q = |b: u64| Some(b.to_string());
        assert_eq!(cache_request(None), "1Gi");
        assert_eq!(cache_request(Some("junk")), "1Gi");
        assert_eq!(cache_request(q(0).as_deref()), "1Gi");
        assert_eq!(cache_request(q(10 * GIB).as_deref()), "1Gi");
        assert_eq!(cache_request(q(256 * GIB).as_deref()), "1Gi");
        assert_eq!(cache_request(q(256 * GIB + 1).as_deref()), "2Gi");
        assert_eq!(cache_request(Some("500Gi")), "2Gi");
        assert_eq!(cache_request(Some("1Ti")), "4Gi");
        assert_eq!(cache_request(Some("10Ti")), "40Gi");
        assert_eq!(cache_request(Some("1100G")), "5Gi");
    }

    #[test]
    fn the_cache_claim_is_a_labelled_described_mover_object_in_the_source_class() {
        let mut v = vt();
        v.metadata.namespace = Some("migrations".into());
        v.spec.capacity = Some((1u64 << 40).to_string());
        let c = cache_claim(&v, Some("gp3"));
        assert_eq!(c.metadata.name.as_deref(), Some("dossier-data-db-0-cache"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("sante"));
        assert_eq!(c.metadata.labels, Some(labels(&v, "cache")));
        let d = c
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .remove("kubernetes.io/description")
            .unwrap_or_default();
        assert!(d.contains("migrations/dossier-data-db-0"), "{d}");
        assert!(d.contains("data-db-0"), "{d}");
        let spec = c.spec.clone().expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert!(spec.data_source.is_none());
        let req = spec.resources.and_then(|r| r.requests).unwrap_or_default();
        assert_eq!(req.get("storage").map(|q| q.0.as_str()), Some("4Gi"));
        // No class on the source claim: none here either, the cluster's default applies.
        let c = cache_claim(&v, None);
        assert_eq!(c.spec.and_then(|s| s.storage_class_name), None);
    }

    #[test]
    fn a_snapshot_pass_snapshots_the_source_claim_and_its_sender_reads_the_restored_claim() {
        let v = vt();
        let snap = volume_snapshot(&v, 3, "ebs-snap");
        assert_eq!(
            snap.metadata.name.as_deref(),
            Some("dossier-data-db-0-snap-3")
        );
        assert_eq!(snap.metadata.namespace.as_deref(), Some("sante"));
        assert_eq!(
            snap.types.as_ref().map(|t| t.api_version.as_str()),
            Some("snapshot.storage.k8s.io/v1")
        );
        assert_eq!(snap.data["spec"]["volumeSnapshotClassName"], "ebs-snap");
        assert_eq!(
            snap.data["spec"]["source"]["persistentVolumeClaimName"],
            "data-db-0"
        );
        let labels = snap.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(keys::TRANSFER).map(String::as_str),
            Some("dossier-data-db-0")
        );
        assert_eq!(
            labels
                .get("app.kubernetes.io/component")
                .map(String::as_str),
            Some("snapshot")
        );

        let claim = snapshot_claim(&v, 3, Some("gp3"), "20Gi", &[]);
        assert_eq!(claim.metadata.name, snap.metadata.name);
        assert_eq!(claim.metadata.labels.as_ref(), Some(&labels));
        let spec = claim.spec.clone().expect("spec");
        let ds = spec.data_source.clone().expect("dataSource");
        assert_eq!(
            (ds.api_group.as_deref(), ds.kind.as_str(), ds.name.as_str()),
            (
                Some("snapshot.storage.k8s.io"),
                "VolumeSnapshot",
                "dossier-data-db-0-snap-3"
            )
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        let req = spec.resources.and_then(|r| r.requests).unwrap_or_default();
        assert_eq!(req.get("storage").map(|q| q.0.as_str()), Some("20Gi"));

        let p = sender_pod(
            &v,
            "img",
            "a:1",
            3,
            false,
            1,
            "dossier-data-db-0-snap-3",
            None,
            None,
        );
        let spec = p.spec.expect("spec");
        let c = spec.volumes.unwrap_or_default()[0]
            .persistent_volume_claim
            .clone()
            .expect("claim");
        assert_eq!(c.claim_name, "dossier-data-db-0-snap-3");
        assert_eq!(c.read_only, Some(true));
        assert!(spec.affinity.is_none(), "a restored claim is not pinned");
    }

    #[test]
    fn a_restored_claim_requests_at_least_the_snapshot_and_the_source_claim() {
        assert_eq!(
            restore_request(Some("10Gi"), Some("8Gi")).as_deref(),
            Some("10Gi")
        );
        assert_eq!(
            restore_request(Some("1Gi"), Some("2000Mi")).as_deref(),
            Some("2000Mi")
        );
        assert_eq!(restore_request(None, Some("5Gi")).as_deref(), Some("5Gi"));
        assert_eq!(
            restore_request(Some("junk"), Some("5Gi")).as_deref(),
            Some("5Gi")
        );
        assert_eq!(restore_request(None, None), None);
    }

    #[test]
    fn the_receiver_writes_the_target_claim_and_its_service_selects_it() {
        let v = vt();
        let p = receiver_pod(&v, "img");
        assert_eq!(p.metadata.namespace.as_deref(), Some("sante-qc"));
        let s = receiver_service(&v, Transport::LoadBalancer);
        let sel = s.spec.clone().and_then(|s| s.selector).unwrap_or_default();
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert!(sel.iter().all(|(k, val)| labels.get(k) == Some(val)));
        assert_eq!(
            s.spec.and_then(|s| s.type_).as_deref(),
            Some("LoadBalancer")
        );
    }
}
