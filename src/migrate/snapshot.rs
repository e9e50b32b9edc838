//! `consistency: Snapshot` needs CSI snapshots of the source's claims: the snapshot API's
//! resources (no k8s-openapi types: dynamic objects), which VolumeSnapshotClass a claim is
//! snapshotted with, and the pre-flight finding that refuses the plan before anything moves when
//! a claim's driver has none. The choice is pure; [`inventory`] is the one read it needs.

use std::collections::BTreeMap;

use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};

use super::PlannedVolume;
use crate::api::{Finding, Severity};

pub const GROUP: &str = "snapshot.storage.k8s.io";
/// The annotation that marks the default class of a driver.
pub const DEFAULT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";
const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// `snapshot.storage.k8s.io/v1` VolumeSnapshot (namespaced).
pub fn volume_snapshots() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "VolumeSnapshot"),
        "volumesnapshots",
    )
}

/// `snapshot.storage.k8s.io/v1` VolumeSnapshotClass (cluster-scoped).
pub fn volume_snapshot_classes() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1", "VolumeSnapshotClass"),
        "volumesnapshotclasses",
    )
}

/// A VolumeSnapshotClass, as far as the choice goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotClass {
    pub name: String,
    pub driver: String,
    pub default: bool,
}

impl SnapshotClass {
    pub fn from_object(o: &DynamicObject) -> Self {
        SnapshotClass {
            name: o.name_any(),
            driver: o.data["driver"].as_str().unwrap_or_default().to_string(),
            default: o.annotations().get(DEFAULT_CLASS).map(String::as_str) == Some("true"),
        }
    }
}

/// What the source cluster offers for snapshots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    /// StorageClass name → provisioner.
    pub provisioners: BTreeMap<String, String>,
    /// The StorageClass a claim without one gets.
    pub default_storage_class: Option<String>,
    pub classes: Vec<SnapshotClass>,
    /// Whether the cluster serves the snapshot API at all (its CRDs installed).
    pub served: bool,
}

/// The VolumeSnapshotClass for a CSI driver: the only one with that driver; among several, the
/// one annotated as the default, else the first by name. Pure.
pub fn choose_class<'a>(classes: &'a [SnapshotClass], driver: &str) -> Option<&'a SnapshotClass> {
    let mut matching: Vec<&SnapshotClass> = classes.iter().filter(|c| c.driver == driver).collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name));
    matching
        .iter()
        .find(|c| c.default)
        .or(matching.first())
        .copied()
}

/// Why a claim cannot be snapshotted: a sentence for a condition or a transfer's message, and
/// the parts of a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoClass {
    pub evidence: String,
    pub remediation: String,
}

impl NoClass {
    pub fn message(&self) -> String {
        format!(
            "consistency Snapshot cannot snapshot this claim: {}; {}",
            self.evidence, self.remediation
        )
    }
}

impl Inventory {
    /// The class that snapshots a claim of StorageClass `storage_class` (None: the default
    /// StorageClass), or why there is none. Pure.
    pub fn class_for(&self, storage_class: Option<&str>) -> Result<&SnapshotClass, NoClass> {
        let Some(sc) = storage_class
            .filter(|s| !s.is_empty())
            .or(self.default_storage_class.as_deref())
        else {
            return Err(NoClass {
                evidence: "the claim has no StorageClass and the source cluster has no default one, so its CSI driver is unknown".into(),
                remediation: "use consistency: Quiesce for claims bound to pre-provisioned volumes".into(),
            });
        };
        let Some(driver) = self.provisioners.get(sc) else {
            return Err(NoClass {
                evidence: format!(
                    "StorageClass {sc:?} does not exist in the source cluster, so the claim's CSI driver is unknown"
                ),
                remediation: "use consistency: Quiesce".into(),
            });
        };
        choose_class(&self.classes, driver).ok_or_else(|| NoClass {
            evidence: if self.served {
                format!("no VolumeSnapshotClass in the source cluster has driver {driver} (the provisioner of StorageClass {sc:?})")
            } else {
                format!("the source cluster does not serve snapshot.storage.k8s.io (no snapshot CRDs), so driver {driver} (StorageClass {sc:?}) cannot be snapshotted")
            },
            remediation: format!(
                "create a VolumeSnapshotClass with driver {driver} in the source cluster, or use consistency: Quiesce"
            ),
        })
    }
}

/// The pre-flight of a Snapshot migration: one error per claim that no class can snapshot. Pure.
pub fn preflight(volumes: &[PlannedVolume], inv: &Inventory) -> Vec<Finding> {
    volumes
        .iter()
        .filter_map(|v| {
            let why = inv.class_for(v.source_storage_class.as_deref()).err()?;
            Some(Finding {
                object: format!("PersistentVolumeClaim/{}", v.pvc),
                field: "spec.storageClassName".into(),
                evidence: why.evidence,
                rule: "consistency Snapshot needs a VolumeSnapshotClass for each claim's CSI driver in the source cluster".into(),
                severity: Severity::Error,
                remediation: why.remediation,
            })
        })
        .collect()
}

/// Reads the source cluster's StorageClasses and VolumeSnapshotClasses. A cluster without the
/// snapshot CRDs serves no classes (`served: false`); any other failure is the caller's to report.
pub async fn inventory(client: &Client) -> Result<Inventory, kube::Error> {
    let storage: Api<StorageClass> = Api::all(client.clone());
    let mut inv = Inventory::default();
    for sc in storage.list(&ListParams::default()).await? {
        if sc
            .annotations()
            .get(DEFAULT_STORAGE_CLASS)
            .map(String::as_str)
            == Some("true")
        {
            inv.default_storage_class = Some(sc.name_any());
        }
        inv.provisioners.insert(sc.name_any(), sc.provisioner);
    }
    let classes: Api<DynamicObject> = Api::all_with(client.clone(), &volume_snapshot_classes());
    match classes.list(&ListParams::default()).await {
        Ok(list) => {
            inv.served = true;
            inv.classes = list.iter().map(SnapshotClass::from_object).collect();
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => return Err(e),
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, driver: &str, default: bool) -> SnapshotClass {
        SnapshotClass {
            name: name.into(),
            driver: driver.into(),
            default,
        }
    }

    fn volume(pvc: &str, sc: Option<&str>) -> PlannedVolume {
        PlannedVolume {
            pvc: pvc.into(),
            source_storage_class: sc.map(String::from),
            target_storage_class: None,
            capacity_bytes: 1 << 30,
            bytes: 1 << 30,
        }
    }

    fn inventory(classes: Vec<SnapshotClass>) -> Inventory {
        Inventory {
            provisioners: [
                ("gp3".to_string(), "ebs.csi.aws.com".to_string()),
                ("efs".to_string(), "efs.csi.aws.com".to_string()),
            ]
            .into(),
            default_storage_class: Some("gp3".into()),
            classes,
            served: true,
        }
    }

    #[test]
    fn the_class_is_the_drivers_default_else_the_first_by_name() {
        let classes = vec![
            class("zz-ebs", "ebs.csi.aws.com", false),
            class("other", "pd.csi.storage.gke.io", true),
            class("aa-ebs", "ebs.csi.aws.com", false),
        ];
        assert_eq!(
            choose_class(&classes, "ebs.csi.aws.com").map(|c| c.name.as_str()),
            Some("aa-ebs"),
            "no default: the first by name, whatever the list order"
        );
        let mut with_default = classes.clone();
        with_default.push(class("mm-ebs", "ebs.csi.aws.com", true));
        assert_eq!(
            choose_class(&with_default, "ebs.csi.aws.com").map(|c| c.name.as_str()),
            Some("mm-ebs")
        );
        assert_eq!(
            choose_class(&classes, "disk.csi.azure.com"),
            None,
            "another driver's default is not a candidate"
        );
    }

    #[test]
    fn a_claim_is_snapshotted_by_its_storage_class_drivers_class() {
        let inv = inventory(vec![class("ebs-snap", "ebs.csi.aws.com", false)]);
        assert_eq!(
            inv.class_for(Some("gp3")).map(|c| c.name.as_str()),
            Ok("ebs-snap")
        );
        // No class named on the claim: the default StorageClass's driver.
        assert_eq!(inv.class_for(None).map(|c| c.name.as_str()), Ok("ebs-snap"));
        let why = inv.class_for(Some("efs")).expect_err("no class for EFS");
        assert!(why.evidence.contains("efs.csi.aws.com"), "{why:?}");
        assert!(why.remediation.contains("consistency: Quiesce"), "{why:?}");
        assert!(inv.class_for(Some("nope")).is_err());
    }

    #[test]
    fn the_preflight_names_each_claim_whose_driver_has_no_class() {
        let vols = [
            volume("data-db-0", Some("gp3")),
            volume("shared", Some("efs")),
        ];
        let ok = preflight(
            &vols[..1],
            &inventory(vec![class("s", "ebs.csi.aws.com", false)]),
        );
        assert!(ok.is_empty(), "{ok:?}");
        let f = preflight(&vols, &inventory(vec![]));
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|f| f.severity == Severity::Error));
        assert_eq!(f[0].object, "PersistentVolumeClaim/data-db-0");
        assert!(f[0].evidence.contains("ebs.csi.aws.com"), "{:?}", f[0]);
        assert!(f[1].evidence.contains("efs.csi.aws.com"), "{:?}", f[1]);
        let unserved = Inventory {
            served: false,
            ..inventory(vec![])
        };
        assert!(
            preflight(&vols[..1], &unserved)[0]
                .evidence
                .contains("CRDs")
        );
    }
}
