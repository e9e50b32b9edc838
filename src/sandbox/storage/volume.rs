//! The PersistentVolume the provisioner creates for a claim, as the CSI external-provisioner and
//! the provisioner library shape it: CSI source of the class's driver (volume handle = PV name,
//! fsType, the directory in the volume attributes, the provisioner identity), capacity = the
//! request, access modes and volume mode of the claim, reclaim policy and mount options of the
//! class, `claimRef` with the claim's uid (KCM's PV controller completes the bind), the
//! `pv.kubernetes.io/provisioned-by` annotation, the library's finalizer, and the zone of the node
//! the volume was made for. A migrated in-tree aws-ebs class gets the in-tree source instead.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, CSIPersistentVolumeSource, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{PATH_ATTRIBUTE, intree, names};

pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The provisioner library's finalizer: the PV's storage is the provisioner's to clean up.
pub const PV_FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";
pub const IDENTITY_ATTRIBUTE: &str = "storage.kubernetes.io/csiProvisionerIdentity";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";

/// What a volume is made of.
pub struct Plan<'a> {
    /// `pvc-<claim uid>`.
    pub name: &'a str,
    pub claim: &'a PersistentVolumeClaim,
    pub class: &'a StorageClass,
    /// The directory behind the volume.
    pub dir: &'a Path,
    /// The zone of the node the volume is made for (None: the nodes carry no zone).
    pub zone: Option<&'a str>,
}

/// The class's file system type (`csi.storage.k8s.io/fstype`, or the deprecated `fsType`), ext4
/// by default as the EBS and Cinder drivers deploy their provisioner.
pub fn fs_type(class: &StorageClass) -> String {
    class
        .parameters
        .iter()
        .flatten()
        .find(|(k, _)| {
            k.eq_ignore_ascii_case("fstype") || k.as_str() == "csi.storage.k8s.io/fstype"
        })
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "ext4".to_string())
}

fn claim_ref(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: Some(claim.name_any()),
        namespace: claim.namespace(),
        uid: claim.uid(),
        resource_version: claim.resource_version(),
        ..Default::default()
    }
}

fn affinity(terms: Vec<(&str, &str)>) -> Option<VolumeNodeAffinity> {
    if terms.is_empty() {
        return None;
    }
    let match_expressions = terms
        .into_iter()
        .map(|(key, value)| NodeSelectorRequirement {
            key: key.to_string(),
            operator: "In".into(),
            values: Some(vec![value.to_string()]),
        })
        .collect();
    Some(VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(match_expressions),
                match_fields: None,
            }],
        }),
    })
}

/// The PV's source and node affinity: CSI, or (migrated aws-ebs) in-tree as csi-translation-lib's
/// `TranslateCSIPVToInTree` leaves it, with zone and region terms and labels. Returns the labels.
fn set_source(
    plan: &Plan<'_>,
    spec: &mut PersistentVolumeSpec,
    fs_type: Option<String>,
) -> BTreeMap<String, String> {
    let provisioner = plan.class.provisioner.as_str();
    let dir = plan.dir.to_string_lossy().to_string();
    let mut labels = BTreeMap::new();
    if intree::in_tree_shaped(provisioner) {
        spec.aws_elastic_block_store = Some(AWSElasticBlockStoreVolumeSource {
            volume_id: names::ebs_volume_id(plan.name),
            fs_type,
            ..Default::default()
        });
        let mut terms = Vec::new();
        if let Some(zone) = plan.zone {
            terms.push((ZONE, zone));
            labels.insert(ZONE.to_string(), zone.to_string());
            if let Some(region) = intree::aws_region_of(zone) {
                terms.push((REGION, region));
                labels.insert(REGION.to_string(), region.to_string());
            }
        }
        spec.node_affinity = affinity(terms);
        return labels;
    }
    let driver = intree::driver_of(provisioner);
    spec.csi = Some(CSIPersistentVolumeSource {
        driver: driver.to_string(),
        volume_handle: plan.name.to_string(),
        fs_type,
        volume_attributes: Some(BTreeMap::from([
            (PATH_ATTRIBUTE.to_string(), dir),
            (
                IDENTITY_ATTRIBUTE.to_string(),
                names::provisioner_identity(driver),
            ),
        ])),
        ..Default::default()
    });
    spec.node_affinity = affinity(plan.zone.map(|z| (ZONE, z)).into_iter().collect());
    labels
}

/// The PV for the plan; Err says why the claim cannot have one.
pub fn build(plan: &Plan<'_>) -> Result<PersistentVolume, String> {
    let spec = plan.claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| format!("claim {} requests no storage", plan.claim.name_any()))?;
    let block = spec.volume_mode.as_deref() == Some("Block");
    let reclaim = plan
        .class
        .reclaim_policy
        .clone()
        .unwrap_or_else(|| "Delete".into());
    let mut annotations = BTreeMap::from([
        (PROVISIONED_BY.to_string(), plan.class.provisioner.clone()),
        (
            "volume.kubernetes.io/provisioner-deletion-secret-name".to_string(),
            String::new(),
        ),
        (
            "volume.kubernetes.io/provisioner-deletion-secret-namespace".to_string(),
            String::new(),
        ),
    ]);
    if intree::in_tree_shaped(&plan.class.provisioner) {
        // An in-tree source has no attributes: the directory is recorded on the PV itself.
        annotations.insert(
            PATH_ATTRIBUTE.to_string(),
            plan.dir.to_string_lossy().to_string(),
        );
    }
    let modes = spec.access_modes.clone().filter(|m| !m.is_empty());
    let mut pv_spec = PersistentVolumeSpec {
        capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
        access_modes: Some(modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()])),
        persistent_volume_reclaim_policy: Some(reclaim.clone()),
        storage_class_name: Some(plan.class.name_any()),
        volume_mode: Some(if block { "Block" } else { "Filesystem" }.into()),
        mount_options: plan.class.mount_options.clone(),
        claim_ref: Some(claim_ref(plan.claim)),
        ..Default::default()
    };
    let labels = set_source(plan, &mut pv_spec, (!block).then(|| fs_type(plan.class)));
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(plan.name.to_string()),
            annotations: Some(annotations),
            labels: (!labels.is_empty()).then_some(labels),
            // As handleProtectionFinalizer leaves it: only a Delete volume has storage to clean up.
            finalizers: (reclaim == "Delete").then(|| vec![PV_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(pv_spec),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "u-1", "resourceVersion": "42"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}},
                     "storageClassName": "gp3"}
        }))
        .expect("claim")
    }

    fn class(provisioner: &str, reclaim: &str) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "gp3"}, "provisioner": provisioner, "reclaimPolicy": reclaim,
            "parameters": {"type": "gp3", "fsType": "xfs"}, "mountOptions": ["noatime"]
        }))
        .expect("class")
    }

    #[test]
    fn a_csi_volume_has_the_claims_size_modes_and_the_classes_policy() {
        let (claim, class) = (claim(), class("ebs.csi.aws.com", "Delete"));
        let dir = Path::new("/c/volumes/pvc-u-1");
        let plan = Plan {
            name: "pvc-u-1",
            claim: &claim,
            class: &class,
            dir,
            zone: Some("us-east-1b"),
        };
        let pv = serde_json::to_value(build(&plan).expect("pv")).expect("json");
        assert_eq!(pv["metadata"]["name"], "pvc-u-1");
        assert_eq!(
            pv["metadata"]["annotations"][PROVISIONED_BY],
            "ebs.csi.aws.com"
        );
        assert_eq!(pv["metadata"]["finalizers"], json!([PV_FINALIZER]));
        let spec = &pv["spec"];
        assert_eq!(spec["capacity"]["storage"], "5Gi");
        assert_eq!(spec["accessModes"], json!(["ReadWriteMany"]));
        assert_eq!(spec["volumeMode"], "Filesystem");
        assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(spec["storageClassName"], "gp3");
        assert_eq!(spec["mountOptions"], json!(["noatime"]));
        assert_eq!(
            spec["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "name": "data", "namespace": "shop", "uid": "u-1", "resourceVersion": "42"})
        );
        assert_eq!(spec["csi"]["driver"], "ebs.csi.aws.com");
        assert_eq!(spec["csi"]["volumeHandle"], "pvc-u-1");
        assert_eq!(spec["csi"]["fsType"], "xfs");
        assert_eq!(
            spec["csi"]["volumeAttributes"][PATH_ATTRIBUTE],
            "/c/volumes/pvc-u-1"
        );
        assert_eq!(
            spec["csi"]["volumeAttributes"][IDENTITY_ATTRIBUTE],
            "sandbox-ebs.csi.aws.com"
        );
        assert_eq!(
            spec["nodeAffinity"]["required"]["nodeSelectorTerms"],
            json!([{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["us-east-1b"]}]}])
        );
        let pv: PersistentVolume = serde_json::from_value(pv).expect("pv");
        assert_eq!(super::super::pv_dir(&pv).as_deref(), Some(dir));
    }

    #[test]
    fn retain_and_zoneless_volumes_have_no_finalizer_and_no_affinity() {
        let (claim, class) = (claim(), class("rbd.csi.ceph.com", "Retain"));
        let plan = Plan {
            name: "pvc-u-1",
            claim: &claim,
            class: &class,
            dir: Path::new("/d"),
            zone: None,
        };
        let pv = build(&plan).expect("pv");
        assert!(pv.metadata.finalizers.is_none());
        let spec = pv.spec.expect("spec");
        assert!(spec.node_affinity.is_none());
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
    }

    #[test]
    fn a_migrated_gp2_volume_is_in_tree_shaped_with_zone_and_region() {
        let (claim, class) = (claim(), class("kubernetes.io/aws-ebs", "Delete"));
        let dir = Path::new("/c/volumes/pvc-u-1");
        let plan = Plan {
            name: "pvc-u-1",
            claim: &claim,
            class: &class,
            dir,
            zone: Some("us-east-1a"),
        };
        let pv = build(&plan).expect("pv");
        assert_eq!(super::super::pv_dir(&pv).as_deref(), Some(dir));
        let v = serde_json::to_value(&pv).expect("json");
        assert!(v["spec"]["csi"].is_null());
        assert!(
            v["spec"]["awsElasticBlockStore"]["volumeID"]
                .as_str()
                .is_some_and(|id| id.starts_with("vol-"))
        );
        assert_eq!(v["spec"]["awsElasticBlockStore"]["fsType"], "xfs");
        assert_eq!(
            v["metadata"]["annotations"][PROVISIONED_BY],
            "kubernetes.io/aws-ebs"
        );
        assert_eq!(v["metadata"]["labels"][REGION], "us-east-1");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][1],
            json!({"key": REGION, "operator": "In", "values": ["us-east-1"]})
        );
    }

    #[test]
    fn a_claim_without_a_request_gets_no_volume() {
        let mut claim = claim();
        if let Some(s) = claim.spec.as_mut() {
            s.resources = None;
        }
        let class = class("ebs.csi.aws.com", "Delete");
        let plan = Plan {
            name: "pvc-u-1",
            claim: &claim,
            class: &class,
            dir: Path::new("/d"),
            zone: None,
        };
        assert!(build(&plan).is_err());
    }
}
