//! Names and quantities the provisioner and the snapshotter derive, deterministically, from the
//! objects they serve: what makes a restarted agent find what it made before.

use sha2::{Digest, Sha256};

/// The PersistentVolume provisioned for a claim (the provisioner library's
/// `getProvisionedVolumeNameForClaim`).
pub fn volume_for_claim(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The content of a dynamically created VolumeSnapshot (the snapshot-controller's
/// `GetDynamicSnapshotContentNameForSnapshot`).
pub fn content_for_snapshot(snapshot_uid: &str) -> String {
    format!("snapcontent-{snapshot_uid}")
}

fn hex17(seed: &str) -> String {
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    h[..17].to_string()
}

/// A content's snapshot handle, EBS-style (`snap-` and 17 hex digits), derived from its name.
pub fn snapshot_handle(content: &str) -> String {
    format!("snap-{}", hex17(content))
}

/// An EBS-style volume id (`vol-` and 17 hex digits) for a PV of a migrated in-tree class.
pub fn ebs_volume_id(pv: &str) -> String {
    format!("vol-{}", hex17(pv))
}

/// What the provisioner calls itself in `storage.kubernetes.io/csiProvisionerIdentity` (a real
/// external-provisioner writes `<start ms>-<random>-<driver>`).
pub fn provisioner_identity(driver: &str) -> String {
    format!("sandbox-{driver}")
}

/// A quantity's bytes, rounded up (`1Gi`, `500M`, `1.5Gi`).
pub fn bytes_of(quantity: &str) -> Option<u64> {
    crate::migrate::plan::quantity_bytes(quantity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_upstream_ones_and_stable() {
        assert_eq!(volume_for_claim("0a1b"), "pvc-0a1b");
        assert_eq!(content_for_snapshot("0a1b"), "snapcontent-0a1b");
        let h = snapshot_handle("snapcontent-0a1b");
        assert_eq!(h, snapshot_handle("snapcontent-0a1b"));
        assert_ne!(h, snapshot_handle("snapcontent-0a1c"));
        assert!(h.starts_with("snap-") && h.len() == 22, "{h}");
        let v = ebs_volume_id("pvc-0a1b");
        assert!(v.starts_with("vol-") && v.len() == 21, "{v}");
        assert_eq!(
            provisioner_identity("ebs.csi.aws.com"),
            "sandbox-ebs.csi.aws.com"
        );
    }

    #[test]
    fn quantities_read_as_bytes() {
        assert_eq!(bytes_of("1Gi"), Some(1 << 30));
        assert_eq!(bytes_of("3Mi"), Some(3 << 20));
    }
}
