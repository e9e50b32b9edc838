//! StorageClasses of in-tree volume plugins that Kubernetes migrated to CSI (`kubernetes.io/aws-ebs`
//! is the EKS profile's `gp2`). The plugins' code is gone from KCM (aws-ebs since 1.27): its PV
//! controller writes the CSI driver's name into a claim's `volume.kubernetes.io/storage-provisioner`
//! (seen on 1.37: `ebs.csi.aws.com` for a gp2 claim, no `migrated-to` annotation on the claim) and
//! waits for that driver's external-provisioner, which provisions through the CSI driver and then
//! translates the PV back to the in-tree source (csi-translation-lib `TranslateCSIPVToInTree`), so
//! that the volume looks as it did before the migration.

/// The CSI driver an in-tree provisioner was migrated to (csi-translation-lib's plugin table).
pub fn csi_driver_of(in_tree: &str) -> Option<&'static str> {
    Some(match in_tree {
        "kubernetes.io/aws-ebs" => "ebs.csi.aws.com",
        "kubernetes.io/gce-pd" => "pd.csi.storage.gke.io",
        "kubernetes.io/azure-disk" => "disk.csi.azure.com",
        "kubernetes.io/azure-file" => "file.csi.azure.com",
        "kubernetes.io/cinder" => "cinder.csi.openstack.org",
        "kubernetes.io/vsphere-volume" => "csi.vsphere.vmware.com",
        "kubernetes.io/portworx-volume" => "pxd.portworx.com",
        _ => return None,
    })
}

/// The CSI driver that serves a class: its provisioner, or the driver it was migrated to.
pub fn driver_of(provisioner: &str) -> &str {
    csi_driver_of(provisioner).unwrap_or(provisioner)
}

/// Whether a claim's storage-provisioner annotation hands it to the driver of a class with this
/// provisioner (the library's `knownProvisioner`, with the in-tree name as the CSI
/// external-provisioner's additional name).
pub fn serves(provisioner: &str, annotation: &str) -> bool {
    // Local volumes are made by hand, never provisioned.
    provisioner != NO_PROVISIONER
        && (annotation == provisioner || csi_driver_of(provisioner) == Some(annotation))
}

/// The provisioner of classes of pre-made local volumes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Whether the agent writes the PV of this provisioner in the in-tree shape. Only aws-ebs: the
/// other in-tree classes exist in no profile, and their PVs are written CSI-shaped with the
/// migrated driver (what their external-provisioner creates before translating).
pub fn in_tree_shaped(provisioner: &str) -> bool {
    provisioner == "kubernetes.io/aws-ebs"
}

/// The region of an AWS zone (`us-east-1a` → `us-east-1`), as csi-translation-lib derives it.
pub fn aws_region_of(zone: &str) -> Option<&str> {
    let region = zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
    (region.len() < zone.len() && region.ends_with(|c: char| c.is_ascii_digit())).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrated_classes_are_served_by_their_csi_driver() {
        assert!(serves("kubernetes.io/aws-ebs", "ebs.csi.aws.com"));
        assert!(serves("ebs.csi.aws.com", "ebs.csi.aws.com"));
        assert!(!serves("ebs.csi.aws.com", "efs.csi.aws.com"));
        assert!(!serves(NO_PROVISIONER, NO_PROVISIONER));
        assert_eq!(driver_of("kubernetes.io/aws-ebs"), "ebs.csi.aws.com");
        assert_eq!(driver_of("rbd.csi.ceph.com"), "rbd.csi.ceph.com");
        assert_eq!(aws_region_of("us-east-1a"), Some("us-east-1"));
        assert_eq!(aws_region_of("nova"), None);
    }
}
