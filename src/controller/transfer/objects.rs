//! The mover's objects, built from a VolumeTransfer: the certificate Secrets, the receiver Pod and
//! its Service in the target, the sender Pod of each pass in the source and, with consistency
//! Snapshot, the pass's VolumeSnapshot and the claim restored from it. Pure: the reconcile applies
//! what these return.

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

fn security_context() -> serde_json::Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "FOWNER", "DAC_OVERRIDE"]},
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
/// ReadWriteOnce claim: such a volume attaches to one node).
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
