//! CSI volume snapshots (the external-snapshotter's snapshot-controller and the CSI driver's
//! csi-snapshotter sidecar in one): a `VolumeSnapshot` of a bound claim becomes a copy of the
//! claim's directory under `<data_dir>/<cluster>/snapshots/<handle>/` (bytes, modes, symlinks and
//! mtimes), a `VolumeSnapshotContent` `snapcontent-<snapshot uid>` bound to it, and a ready
//! snapshot. What stops a snapshot is written to `status.error` with `readyToUse: false`, in the
//! real controller's words where they are known. Deleting a snapshot deletes its content and the
//! copy when the deletion policy is `Delete` (a finalizer holds the snapshot until then, and while
//! a claim is still being restored from it).
//!
//! Restoring (a claim whose `dataSource`/`dataSourceRef` names a VolumeSnapshot) is the
//! provisioner's job: `volumes` calls [`restore_source`] and copies the snapshot's directory into
//! the new volume.
//!
//! Not simulated: pre-provisioned snapshots (`spec.source.volumeSnapshotContentName`) are refused
//! with an error rather than bound.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::Host;
use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

pub const GROUP: &str = "snapshot.storage.k8s.io";
const MANAGER: &str = "snapshot-controller";
/// The snapshot-controller's finalizer on a bound VolumeSnapshot.
const BOUND_FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
const DEFAULT_CLASS: &str =
    "/metadata/annotations/snapshot.storage.kubernetes.io~1is-default-class";

pub fn pass(c: &Arc<Cluster>, host: &Host) -> bool {
    let mut changed = false;
    for vs in o::list(c, GROUP, "volumesnapshots") {
        changed |= if meta::is_deleting(&vs) {
            release(c, host, &vs)
        } else {
            sync(c, host, &vs)
        };
    }
    changed
}

/// The snapshot's directory for a snapshot handle.
pub fn snapshot_dir(host: &Host, handle: &str) -> PathBuf {
    host.snapshots_dir().join(handle)
}

fn content_name(vs: &Value) -> String {
    format!("snapcontent-{}", meta::uid(vs))
}

/// A stable handle, EBS-style (`snap-` and 17 hex digits), derived from the content's name.
fn handle_of(content: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(content.as_bytes()));
    format!("snap-{}", &h[..17])
}

/// Why a snapshot cannot be taken (yet), as the real controller words it; `Ok` with the class and
/// the bound volume otherwise.
fn inputs(c: &Cluster, vs: &Value) -> Result<(Arc<Value>, Arc<Value>), String> {
    let name = meta::name(vs);
    let ns = meta::namespace(vs);
    let claim = o::str_at(vs, "/spec/source/persistentVolumeClaimName");
    let content = o::str_at(vs, "/spec/source/volumeSnapshotContentName");
    if claim.is_empty() == content.is_empty() {
        return Err(
            "Exactly one of PersistentVolumeClaimName and VolumeSnapshotContentName should be specified"
                .into(),
        );
    }
    if claim.is_empty() {
        return Err(format!(
            "the sandbox does not bind pre-provisioned snapshots (spec.source.volumeSnapshotContentName {content:?})"
        ));
    }
    let input_err = |why: String| {
        format!(
            "Failed to create snapshot: failed to get input parameters to create snapshot {name}: {why:?}"
        )
    };
    let pvc = o::get(c, "", "persistentvolumeclaims", ns, claim);
    let class_name = o::str_at(vs, "/spec/volumeSnapshotClassName");
    let class = if class_name.is_empty() {
        // The default class of the claim's driver (the controller then records it in the spec).
        let driver = pvc
            .as_ref()
            .and_then(|p| super::volumes::class_of(c, p))
            .map(|sc| o::str_at(&sc, "/provisioner").to_string())
            .unwrap_or_default();
        o::list(c, GROUP, "volumesnapshotclasses")
            .into_iter()
            .find(|k| o::str_at(k, "/driver") == driver && o::str_at(k, DEFAULT_CLASS) == "true")
            .ok_or("Failed to set default snapshot class with error cannot find default snapshot class")?
    } else {
        o::get(c, GROUP, "volumesnapshotclasses", "", class_name).ok_or_else(|| {
            format!(
                "Failed to get snapshot class with error failed to retrieve snapshot class {class_name} from the informer: \"volumesnapshotclass.snapshot.storage.k8s.io \\\"{class_name}\\\" not found\""
            )
        })?
    };
    let Some(pvc) = pvc else {
        return Err(input_err(format!(
            "failed to retrieve PVC {claim} from the lister: \"persistentvolumeclaim \\\"{claim}\\\" not found\""
        )));
    };
    if o::str_at(&pvc, "/status/phase") != "Bound" {
        return Err(input_err(format!(
            "the PVC {claim} is not yet bound to a PV, will not attempt to take a snapshot"
        )));
    }
    let pv_name = o::str_at(&pvc, "/spec/volumeName");
    let pv = o::get(c, "", "persistentvolumes", "", pv_name).ok_or_else(|| {
        input_err(format!(
            "failed to retrieve PV {pv_name} from the API server: \"persistentvolumes \\\"{pv_name}\\\" not found\""
        ))
    })?;
    let driver = o::str_at(&pv, "/spec/csi/driver");
    if driver.is_empty() {
        return Err(format!(
            "Failed to create snapshot content with error cannot find CSI PersistentVolumeSource for volume {pv_name}"
        ));
    }
    // The real csi-snapshotter of another driver would never pick the content up; the sandbox
    // says so instead of leaving the snapshot unready without a word.
    let class_driver = o::str_at(&class, "/driver");
    if class_driver != driver {
        return Err(format!(
            "Failed to create snapshot content with error the driver {class_driver:?} of VolumeSnapshotClass {:?} does not match the driver {driver:?} of volume {pv_name}",
            meta::name(&class)
        ));
    }
    Ok((class, pv))
}

fn sync(c: &Cluster, host: &Host, vs: &Arc<Value>) -> bool {
    if vs.pointer("/status/readyToUse") == Some(&json!(true))
        && !o::str_at(vs, "/status/boundVolumeSnapshotContentName").is_empty()
    {
        return false;
    }
    let (class, pv) = match inputs(c, vs) {
        Ok(x) => x,
        Err(message) => return set_error(c, vs, &message),
    };
    // 1. The class the controller chose is recorded in the spec.
    if o::str_at(vs, "/spec/volumeSnapshotClassName").is_empty() {
        let name = meta::name(&class).to_string();
        return match o::update(c, MANAGER, GROUP, "volumesnapshots", vs, |x| {
            x["spec"]["volumeSnapshotClassName"] = json!(name);
        }) {
            Ok(_) => true,
            Err(e) => {
                o::warn("snapshots", vs, &e);
                false
            }
        };
    }
    // 2. The finalizer, before anything is taken: a deletion then waits for the content to go.
    if !meta::finalizers(vs).iter().any(|f| f == BOUND_FINALIZER) {
        return match o::update(c, MANAGER, GROUP, "volumesnapshots", vs, |x| {
            let mut f = meta::finalizers(x);
            f.push(BOUND_FINALIZER.into());
            x["metadata"]["finalizers"] = json!(f);
        }) {
            Ok(_) => true,
            Err(e) => {
                o::warn("snapshots", vs, &e);
                false
            }
        };
    }
    // 3. The snapshot itself: the volume's directory copied (once; a half-made copy is redone).
    let content_name = content_name(vs);
    let handle = handle_of(&content_name);
    let dir = snapshot_dir(host, &handle);
    let Some(from) = super::volumes::pv_dir(&pv) else {
        return set_error(
            c,
            vs,
            &format!(
                "the sandbox has no directory for volume {}",
                meta::name(&pv)
            ),
        );
    };
    if !dir.is_dir()
        && let Err(e) = copy_tree_into(&from, &dir)
    {
        return set_error(
            c,
            vs,
            &format!(
                "Failed to check and update snapshot content: failed to take snapshot of the volume {}: {e}",
                meta::name(&pv)
            ),
        );
    }
    let restore_size = pv
        .pointer("/spec/capacity/storage")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let restore_bytes = crate::migrate::plan::quantity_bytes(&restore_size).unwrap_or(0);
    // 4. The content, bound both ways, ready.
    let content = match o::get(c, GROUP, "volumesnapshotcontents", "", &content_name) {
        Some(x) => x,
        None => {
            let body = json!({
                "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotContent",
                "metadata": {"name": content_name, "finalizers": ["snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"]},
                "spec": {
                    "deletionPolicy": o::str_at(&class, "/deletionPolicy"),
                    "driver": o::str_at(&class, "/driver"),
                    "source": {"volumeHandle": o::str_at(&pv, "/spec/csi/volumeHandle")},
                    "volumeSnapshotClassName": meta::name(&class),
                    "volumeSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot",
                        "name": meta::name(vs), "namespace": meta::namespace(vs), "uid": meta::uid(vs),
                        "resourceVersion": o::str_at(vs, "/metadata/resourceVersion")}
                }
            });
            match o::create(c, MANAGER, GROUP, "volumesnapshotcontents", "", body) {
                Ok(x) => x,
                Err(e) => {
                    o::warn("snapshots", vs, &e);
                    return false;
                }
            }
        }
    };
    let created_ns = jiff::Timestamp::now().as_nanosecond() as i64;
    if content.pointer("/status/readyToUse") != Some(&json!(true))
        && let Err(e) =
            o::update_status(c, MANAGER, GROUP, "volumesnapshotcontents", &content, |x| {
                x["status"] = json!({"creationTime": created_ns, "readyToUse": true,
                                 "restoreSize": restore_bytes, "snapshotHandle": handle});
            })
    {
        o::warn("snapshots", &content, &e);
        return false;
    }
    let now = meta::now();
    o::update_status(c, MANAGER, GROUP, "volumesnapshots", vs, |x| {
        x["status"] = json!({"boundVolumeSnapshotContentName": content_name, "creationTime": now,
                             "readyToUse": true, "restoreSize": restore_size});
    })
    .is_ok()
}

/// `readyToUse: false` with the error; no write when it already says so.
fn set_error(c: &Cluster, vs: &Value, message: &str) -> bool {
    if o::str_at(vs, "/status/error/message") == message {
        return false;
    }
    let now = meta::now();
    let m = message.to_string();
    match o::update_status(c, MANAGER, GROUP, "volumesnapshots", vs, |x| {
        let mut st = x.get("status").cloned().unwrap_or_else(|| json!({}));
        st["readyToUse"] = json!(false);
        st["error"] = json!({"message": m, "time": now});
        x["status"] = st;
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("snapshots", vs, &e);
            false
        }
    }
}

/// A snapshot being deleted: its content (and the copy) go when the policy says Delete, then the
/// finalizer; not while a claim is still being restored from it.
fn release(c: &Cluster, host: &Host, vs: &Arc<Value>) -> bool {
    if !meta::finalizers(vs).iter().any(|f| f == BOUND_FINALIZER) {
        return false;
    }
    let restoring = o::list_in(c, "", "persistentvolumeclaims", meta::namespace(vs))
        .iter()
        .any(|p| {
            o::str_at(p, "/status/phase") != "Bound"
                && !meta::is_deleting(p)
                && data_source(p).is_some_and(|n| n == meta::name(vs))
        });
    if restoring {
        return false;
    }
    let name = o::str_at(vs, "/status/boundVolumeSnapshotContentName");
    let name = if name.is_empty() {
        content_name(vs)
    } else {
        name.to_string()
    };
    if let Some(content) = o::get(c, GROUP, "volumesnapshotcontents", "", &name)
        && o::str_at(&content, "/spec/volumeSnapshotRef/uid") == meta::uid(vs)
        && o::str_at(&content, "/spec/deletionPolicy") == "Delete"
    {
        let handle = o::str_at(&content, "/status/snapshotHandle");
        let dir = if handle.is_empty() {
            snapshot_dir(host, &handle_of(&name))
        } else {
            snapshot_dir(host, handle)
        };
        if let Err(e) = remove_tree(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(snapshot = meta::name(vs), error = %e, "cannot remove the snapshot's directory");
            return false;
        }
        // The sidecar's finalizer goes with the physical snapshot, then the content.
        let gone = o::update(
            c,
            "csi-snapshotter",
            GROUP,
            "volumesnapshotcontents",
            &content,
            |x| {
                x["metadata"]["finalizers"] = json!([]);
            },
        )
        .and_then(|x| o::delete(c, GROUP, "volumesnapshotcontents", &x, None));
        if let Err(e) = gone {
            o::warn("snapshots", &content, &e);
            return false;
        }
    }
    match o::update(c, MANAGER, GROUP, "volumesnapshots", vs, |x| {
        let f: Vec<String> = meta::finalizers(x)
            .into_iter()
            .filter(|f| f != BOUND_FINALIZER)
            .collect();
        x["metadata"]["finalizers"] = json!(f);
    }) {
        Ok(_) => true,
        Err(e) => {
            o::warn("snapshots", vs, &e);
            false
        }
    }
}

/// The VolumeSnapshot a claim is to be restored from (`dataSourceRef` first, then `dataSource`).
pub fn data_source(pvc: &Value) -> Option<&str> {
    ["/spec/dataSourceRef", "/spec/dataSource"]
        .iter()
        .filter_map(|p| pvc.pointer(p))
        .find(|d| !d.is_null())
        .filter(|d| {
            d.get("kind").and_then(Value::as_str) == Some("VolumeSnapshot")
                && d.get("apiGroup").and_then(Value::as_str) == Some(GROUP)
        })
        .and_then(|d| d.get("name").and_then(Value::as_str))
}

/// For a claim restored from a VolumeSnapshot: the snapshot's directory, or why provisioning
/// cannot go on yet (the external-provisioner's words). `Ok(None)` for any other claim.
pub fn restore_source(c: &Cluster, host: &Host, pvc: &Value) -> Result<Option<PathBuf>, String> {
    let Some(name) = data_source(pvc) else {
        return Ok(None);
    };
    let vs = o::get(c, GROUP, "volumesnapshots", meta::namespace(pvc), name).ok_or_else(|| {
        format!(
            "error getting snapshot {name} from api server: volumesnapshots.snapshot.storage.k8s.io \"{name}\" not found"
        )
    })?;
    if meta::is_deleting(&vs) {
        return Err(format!("snapshot {name} is currently being deleted"));
    }
    if vs.pointer("/status/readyToUse") != Some(&json!(true)) {
        return Err(format!("snapshot {name} is not Ready"));
    }
    let content_name = o::str_at(&vs, "/status/boundVolumeSnapshotContentName");
    let content =
        o::get(c, GROUP, "volumesnapshotcontents", "", content_name).ok_or_else(|| {
            format!("error getting snapshot content {content_name:?} from api server: not found")
        })?;
    let size = o::i64_at(&content, "/status/restoreSize").unwrap_or(0);
    let requested = o::str_at(pvc, "/spec/resources/requests/storage");
    let requested_bytes = crate::migrate::plan::quantity_bytes(requested).unwrap_or(0) as i64;
    if requested_bytes < size {
        return Err(format!(
            "requested volume size {requested_bytes} is less than the size {size} for the source snapshot {name}"
        ));
    }
    let dir = snapshot_dir(host, o::str_at(&content, "/status/snapshotHandle"));
    if !dir.is_dir() {
        return Err(format!(
            "snapshot {name}'s data is gone ({})",
            dir.display()
        ));
    }
    Ok(Some(dir))
}

/// Copies the tree at `from` to `to`, which must not exist: into `<to>.partial` first, then
/// renamed, so that `to` is either absent or complete. Regular files, directories and symlinks
/// are copied (other kinds are skipped) with their modes and modification times; owners too when
/// running as root.
pub fn copy_tree_into(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if let Err(e) = remove_tree(&partial)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(e);
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    copy_dir(from, &partial, rustix::process::geteuid().is_root())?;
    std::fs::rename(&partial, to)
}

fn copy_dir(from: &Path, to: &Path, owners: bool) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir(to)?;
    // Owner-writable while it is filled; its own mode is set last.
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let m = std::fs::symlink_metadata(&src)?;
        let t = m.file_type();
        if t.is_dir() {
            copy_dir(&src, &dst, owners)?;
            continue;
        }
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if t.is_file() {
            // Copies the permission bits too.
            std::fs::copy(&src, &dst)?;
        } else {
            tracing::debug!(path = %src.display(), "not a file, directory or symlink: not copied");
            continue;
        }
        if owners {
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        }
        set_mtime(&dst, &m)?;
    }
    let m = std::fs::symlink_metadata(from)?;
    if owners {
        std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()))?;
    }
    std::fs::set_permissions(to, m.permissions())?;
    set_mtime(to, &m)
}

fn set_mtime(path: &Path, m: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let t = |sec: i64, nsec: i64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = rustix::fs::Timestamps {
        last_access: t(m.atime(), m.atime_nsec()),
        last_modification: t(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
}

/// Removes a tree, making read-only directories writable first (a copied tree keeps the modes
/// of its source).
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn unlock(dir: &Path) {
        if let Ok(m) = std::fs::symlink_metadata(dir)
            && m.is_dir()
        {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ =
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
            }
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    unlock(&e.path());
                }
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            unlock(dir);
            std::fs::remove_dir_all(dir)
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_copied_tree_keeps_bytes_modes_links_and_mtimes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
        std::fs::write(src.join("a/b/f.txt"), b"hello").expect("write");
        std::fs::set_permissions(
            src.join("a/b/f.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("a/b/f.txt", src.join("link")).expect("symlink");
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        let old = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 5,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000_000_000,
                tv_nsec: 5,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            src.join("a/b/f.txt"),
            &old,
            rustix::fs::AtFlags::empty(),
        )
        .expect("utimensat");
        let dst = tmp.path().join("snaps/dst");
        copy_tree_into(&src, &dst).expect("copy");
        assert_eq!(
            std::fs::read(dst.join("a/b/f.txt")).expect("read"),
            b"hello"
        );
        let m = std::fs::metadata(dst.join("a/b/f.txt")).expect("meta");
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        use std::os::unix::fs::MetadataExt;
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 5));
        assert_eq!(
            std::fs::metadata(dst.join("a"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::read_link(dst.join("link")).expect("link"),
            PathBuf::from("a/b/f.txt")
        );
        assert!(!tmp.path().join("snaps/dst.partial").exists());
        remove_tree(&dst).expect("remove");
        assert!(!dst.exists());
    }
}
