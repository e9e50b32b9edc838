//! Volume provisioning and binding (the external provisioner plus the PV controller): a claim of
//! a storage class (its own or the default one) gets a PersistentVolume `pvc-<claim uid>` backed
//! by a real directory `<data_dir>/<cluster>/volumes/<pv>/`, sized and moded like the claim, with
//! the zone node affinity of the consumer's node (WaitForFirstConsumer) or of the first node;
//! both are then marked Bound as the real controller writes them. A claim whose `dataSource` is a
//! VolumeSnapshot waits until the snapshot is ready (Pending, with a `ProvisioningFailed` Event
//! saying why) and starts as a copy of it. A released volume is deleted with its directory
//! (reclaimPolicy Delete) or left Released (Retain).

use std::sync::Arc;

use serde_json::{Value, json};

use super::Host;
use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

const MANAGER: &str = "persistentvolume-binder";
const ZONE: &str = "topology.kubernetes.io/zone";
/// Where a sandbox PV records the directory behind it (its CSI volume attributes).
pub const PATH_ATTRIBUTE: &str = "sandbox.sovereign.dev/path";

/// The claim's storage class: the named one, or the default class when the claim names none.
pub fn class_of(c: &Cluster, pvc: &Value) -> Option<Arc<Value>> {
    match pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
    {
        Some("") => None,
        Some(name) => o::get(c, "storage.k8s.io", "storageclasses", "", name),
        None => default_class(c),
    }
}

fn default_class(c: &Cluster) -> Option<Arc<Value>> {
    o::list(c, "storage.k8s.io", "storageclasses")
        .into_iter()
        .find(|sc| {
            o::str_at(
                sc,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true"
        })
}

pub fn pass(c: &Arc<Cluster>, host: &Host) -> bool {
    let mut changed = false;
    for pvc in o::list(c, "", "persistentvolumeclaims") {
        if meta::is_deleting(&pvc) {
            continue;
        }
        changed |= claim(c, host, &pvc);
    }
    let claims = o::list(c, "", "persistentvolumeclaims");
    for pv in o::list(c, "", "persistentvolumes") {
        changed |= reclaim(c, host, &pv, &claims);
    }
    changed
}

fn claim(c: &Cluster, host: &Host, pvc: &Arc<Value>) -> bool {
    if o::str_at(pvc, "/status/phase") == "Bound" {
        return false;
    }
    // A claim without a class takes the default one (retroactive default class assignment).
    if pvc.pointer("/spec/storageClassName").is_none()
        && let Some(sc) = default_class(c)
    {
        let name = meta::name(&sc).to_string();
        return match o::update(c, MANAGER, "", "persistentvolumeclaims", pvc, |x| {
            x["spec"]["storageClassName"] = json!(name);
        }) {
            Ok(_) => true,
            Err(e) => {
                o::warn("volumes", pvc, &e);
                false
            }
        };
    }
    // Pre-bound to an existing volume: bind both.
    let requested_pv = o::str_at(pvc, "/spec/volumeName");
    if !requested_pv.is_empty() {
        return match o::get(c, "", "persistentvolumes", "", requested_pv) {
            Some(pv) => bind(c, pvc, &pv),
            None => false,
        };
    }
    let Some(sc) = class_of(c, pvc) else {
        return set_pending(c, pvc);
    };
    let selected = o::str_at(
        pvc,
        "/metadata/annotations/volume.kubernetes.io~1selected-node",
    );
    if o::str_at(&sc, "/volumeBindingMode") == "WaitForFirstConsumer" && selected.is_empty() {
        return set_pending(c, pvc);
    }
    let nodes = o::list(c, "", "nodes");
    let node = nodes
        .iter()
        .find(|n| meta::name(n) == selected)
        .or_else(|| nodes.first());
    let pv_name = format!("pvc-{}", meta::uid(pvc));
    if let Some(pv) = o::get(c, "", "persistentvolumes", "", &pv_name) {
        return bind(c, pvc, &pv);
    }
    // A claim restored from a VolumeSnapshot waits for it, then starts as a copy of it.
    let restore = match super::snapshots::restore_source(c, host, pvc) {
        Ok(r) => r,
        Err(why) => {
            let message = format!(
                "failed to provision volume with StorageClass {:?}: error getting handle for DataSource Type VolumeSnapshot by Name {}: {why}",
                meta::name(&sc),
                super::snapshots::data_source(pvc).unwrap_or_default()
            );
            let evented = o::event(
                c,
                "csi-provisioner",
                pvc,
                "Warning",
                "ProvisioningFailed",
                &message,
            );
            return set_pending(c, pvc) || evented;
        }
    };
    let dir = host.volume_dir(&pv_name);
    let made = match &restore {
        // Into a new directory at once: `dir` is absent or a complete copy.
        Some(from) if !dir.is_dir() => super::snapshots::copy_tree_into(from, &dir),
        Some(_) => Ok(()),
        None => std::fs::create_dir_all(&dir),
    };
    if let Err(e) = made {
        tracing::warn!(pv = pv_name, error = %e, "cannot create the volume's directory");
        return false;
    }
    let provisioner = o::str_at(&sc, "/provisioner");
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or(json!("1Gi"));
    let mut pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": provisioner,
                     "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy").and_then(Value::as_str).unwrap_or("Delete"),
            "storageClassName": meta::name(&sc),
            "volumeMode": pvc.pointer("/spec/volumeMode").and_then(Value::as_str).unwrap_or("Filesystem"),
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta::namespace(pvc),
                         "name": meta::name(pvc), "uid": meta::uid(pvc), "resourceVersion": o::str_at(pvc, "/metadata/resourceVersion")},
            "csi": {"driver": provisioner, "volumeHandle": pv_name,
                    "fsType": sc.pointer("/parameters/fsType").and_then(Value::as_str).unwrap_or("ext4"),
                    "volumeAttributes": {PATH_ATTRIBUTE: dir.to_string_lossy(),
                                         "storage.kubernetes.io/csiProvisionerIdentity": format!("sandbox-{provisioner}")}},
        }
    });
    if let Some(mo) = sc.get("mountOptions") {
        pv["spec"]["mountOptions"] = mo.clone();
    }
    if let Some(zone) = node.and_then(|n| {
        n.pointer("/metadata/labels")
            .and_then(|l| l.get(ZONE))
            .and_then(Value::as_str)
    }) {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}]}});
    }
    match o::create(c, "csi-provisioner", "", "persistentvolumes", "", pv) {
        Ok(pv) => {
            bind(c, pvc, &pv);
            true
        }
        Err(e) => {
            o::warn("volumes", pvc, &e);
            false
        }
    }
}

fn set_pending(c: &Cluster, pvc: &Value) -> bool {
    if o::str_at(pvc, "/status/phase") == "Pending" {
        return false;
    }
    o::update_status(c, MANAGER, "", "persistentvolumeclaims", pvc, |x| {
        x["status"] = json!({"phase": "Pending"});
    })
    .is_ok()
}

fn bind(c: &Cluster, pvc: &Value, pv: &Value) -> bool {
    let claim_uid = o::str_at(pv, "/spec/claimRef/uid");
    if !claim_uid.is_empty() && claim_uid != meta::uid(pvc) {
        return false;
    }
    let mut changed = false;
    let pv_name = meta::name(pv).to_string();
    let provisioner =
        o::str_at(pv, "/metadata/annotations/pv.kubernetes.io~1provisioned-by").to_string();
    if o::str_at(pv, "/status/phase") != "Bound" {
        let claim_ref = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta::namespace(pvc),
                               "name": meta::name(pvc), "uid": meta::uid(pvc), "resourceVersion": o::str_at(pvc, "/metadata/resourceVersion")});
        let pv = match o::update(c, MANAGER, "", "persistentvolumes", pv, |x| {
            x["spec"]["claimRef"] = claim_ref;
            x["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        }) {
            Ok(pv) => pv,
            Err(e) => {
                o::warn("volumes", pv, &e);
                return false;
            }
        };
        changed |= o::update_status(c, MANAGER, "", "persistentvolumes", &pv, |x| {
            x["status"] = json!({"phase": "Bound", "lastPhaseTransitionTime": meta::now()});
        })
        .is_ok();
    }
    let capacity = pv.pointer("/spec/capacity").cloned().unwrap_or(json!({}));
    let modes = pv
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or(json!([]));
    let pvc = match o::update(c, MANAGER, "", "persistentvolumeclaims", pvc, |x| {
        x["spec"]["volumeName"] = json!(pv_name);
        let a = &mut x["metadata"]["annotations"];
        a["pv.kubernetes.io/bind-completed"] = json!("yes");
        a["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        if !provisioner.is_empty() {
            a["volume.beta.kubernetes.io/storage-provisioner"] = json!(provisioner);
            a["volume.kubernetes.io/storage-provisioner"] = json!(provisioner);
        }
    }) {
        Ok(p) => p,
        Err(e) => {
            o::warn("volumes", pvc, &e);
            return changed;
        }
    };
    changed |= o::update_status(c, MANAGER, "", "persistentvolumeclaims", &pvc, |x| {
        x["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": capacity});
    })
    .is_ok();
    changed
}

fn reclaim(c: &Cluster, host: &Host, pv: &Arc<Value>, claims: &[Arc<Value>]) -> bool {
    if meta::is_deleting(pv) || o::str_at(pv, "/status/phase") != "Bound" {
        return false;
    }
    let uid = o::str_at(pv, "/spec/claimRef/uid");
    if uid.is_empty() || claims.iter().any(|p| meta::uid(p) == uid) {
        return false;
    }
    // The claim is gone.
    if o::str_at(pv, "/spec/persistentVolumeReclaimPolicy") == "Delete" {
        let dir = pv
            .pointer(&format!(
                "/spec/csi/volumeAttributes/{}",
                PATH_ATTRIBUTE.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(std::path::PathBuf::from);
        // Only directories the sandbox made are removed.
        if let Some(dir) = dir.filter(|d| d.starts_with(host.volumes_dir()))
            && let Err(e) = super::snapshots::remove_tree(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pv = meta::name(pv), error = %e, "cannot remove the volume's directory");
        }
        return o::delete(c, "", "persistentvolumes", pv, None).is_ok();
    }
    o::update_status(c, MANAGER, "", "persistentvolumes", pv, |x| {
        x["status"] = json!({"phase": "Released", "lastPhaseTransitionTime": meta::now()});
    })
    .is_ok()
}

/// The directory behind a bound claim.
pub fn claim_dir(c: &Cluster, ns: &str, claim: &str) -> Option<std::path::PathBuf> {
    let pvc = o::get(c, "", "persistentvolumeclaims", ns, claim)?;
    if o::str_at(&pvc, "/status/phase") != "Bound" {
        return None;
    }
    let pv = o::get(
        c,
        "",
        "persistentvolumes",
        "",
        o::str_at(&pvc, "/spec/volumeName"),
    )?;
    pv_dir(&pv)
}

/// The directory behind a PersistentVolume (the sandbox's CSI attribute, or a hostPath/local path).
pub fn pv_dir(pv: &Value) -> Option<std::path::PathBuf> {
    let path = pv
        .pointer(&format!(
            "/spec/csi/volumeAttributes/{}",
            PATH_ATTRIBUTE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .or_else(|| pv.pointer("/spec/hostPath/path").and_then(Value::as_str))
        .or_else(|| pv.pointer("/spec/local/path").and_then(Value::as_str))?;
    Some(std::path::PathBuf::from(path))
}
