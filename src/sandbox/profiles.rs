//! What each provider's cluster looks like from its API, as the node agent registers it: Node
//! names, labels and `spec.providerID` as that provider's kubelet and cloud controller set them
//! (facts in `../shared/data/`), node capacity of the instance type, and the StorageClasses and
//! VolumeSnapshotClasses a fresh cluster of that provider has.
//!
//! `scale` multiplies the nodes (per zone, or in all for a provider without zones): the tests'
//! shared clusters run many applications at once and need a bigger node group than the demo.

use serde_json::{Value, json};

/// One Node as its kubelet registers it (the agent adds addresses and status).
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub labels: Value,
    pub provider_id: Option<String>,
    pub os_image: String,
    pub kernel: String,
    pub runtime: String,
    pub cpu: String,
    pub memory: String,
}

#[derive(Clone, Debug)]
pub struct Profile {
    /// `eks-us-east-1`, `aks-eastus`, `gke-us-central1`, `ovh-bhs5`, `qc-sovereign`.
    pub id: &'static str,
    pub description: &'static str,
    pub nodes: Vec<NodeSpec>,
    /// Cluster-scoped objects the provider installs (StorageClasses, VolumeSnapshotClasses).
    pub objects: Vec<Value>,
}

/// The VolumeSnapshotClass of the EKS profile (driver `ebs.csi.aws.com`).
pub const EBS_SNAPSHOT_CLASS: &str = "ebs-csi-snapclass";

pub const IDS: [&str; 5] = [
    "eks-us-east-1",
    "aks-eastus",
    "gke-us-central1",
    "ovh-bhs5",
    "qc-sovereign",
];

/// The profile named `id`, with `scale` nodes per zone.
pub fn by_id(id: &str, scale: usize) -> Option<Profile> {
    let scale = scale.max(1);
    Some(match id {
        "eks-us-east-1" => eks_us_east_1(scale),
        "aks-eastus" => aks_eastus(scale),
        "gke-us-central1" => gke_us_central1(scale),
        "ovh-bhs5" => ovh_bhs5(scale),
        "qc-sovereign" => qc_sovereign(scale),
        _ => return None,
    })
}

fn base_labels(name: &str, instance_type: Option<&str>) -> serde_json::Map<String, Value> {
    let mut l = json!({
        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
    });
    if let Some(t) = instance_type {
        l["node.kubernetes.io/instance-type"] = json!(t);
        l["beta.kubernetes.io/instance-type"] = json!(t);
    }
    l.as_object().cloned().unwrap_or_default()
}

fn zone_labels(l: &mut serde_json::Map<String, Value>, region: &str, zone: &str) {
    for (k, v) in [
        ("topology.kubernetes.io/region", region),
        ("topology.kubernetes.io/zone", zone),
        ("failure-domain.beta.kubernetes.io/region", region),
        ("failure-domain.beta.kubernetes.io/zone", zone),
    ] {
        l.insert(k.into(), json!(v));
    }
}

fn storage_class(
    name: &str,
    provisioner: &str,
    parameters: Value,
    wait: bool,
    default: bool,
) -> Value {
    let mut sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": provisioner, "parameters": parameters,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": if wait { "WaitForFirstConsumer" } else { "Immediate" },
        "allowVolumeExpansion": true
    });
    if default {
        sc["metadata"]["annotations"] =
            json!({"storageclass.kubernetes.io/is-default-class": "true"});
    }
    sc
}

/// A stable hex string derived from a name (instance ids, VMSS suffixes).
fn hex_of(name: &str, len: usize) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(name.as_bytes()))[..len].to_string()
}

/// An EKS cluster in us-east-1 (the sandbox's `source`): managed node group `general-purpose` of
/// m5.xlarge in three zones, EBS CSI classes, EFS for shared files, the EBS snapshot class.
pub fn eks_us_east_1(scale: usize) -> Profile {
    let mut nodes = Vec::new();
    for (z, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        for k in 0..scale {
            let host = [23, 57, 91][z] + 10 * k;
            let name = format!("ip-10-0-{}-{host}.ec2.internal", z + 1);
            let mut l = base_labels(&name, Some("m5.xlarge"));
            zone_labels(&mut l, "us-east-1", zone);
            for (key, v) in [
                ("eks.amazonaws.com/nodegroup", "general-purpose"),
                ("eks.amazonaws.com/capacityType", "ON_DEMAND"),
                ("eks.amazonaws.com/nodegroup-image", "ami-0f1e2d3c4b5a69788"),
                ("topology.ebs.csi.aws.com/zone", zone),
            ] {
                l.insert(key.into(), json!(v));
            }
            nodes.push(NodeSpec {
                provider_id: Some(format!("aws:///{zone}/i-0{}", hex_of(&name, 16))),
                name,
                labels: Value::Object(l),
                os_image: "Amazon Linux 2023.6.20250203".into(),
                kernel: "6.1.127-135.201.amzn2023.x86_64".into(),
                runtime: "containerd://1.7.25".into(),
                cpu: "4".into(),
                memory: "15896804Ki".into(),
            });
        }
    }
    Profile {
        id: "eks-us-east-1",
        description: "EKS, us-east-1",
        nodes,
        objects: vec![
            storage_class(
                "gp3",
                "ebs.csi.aws.com",
                json!({"type": "gp3", "fsType": "ext4"}),
                true,
                true,
            ),
            storage_class(
                "gp2",
                "kubernetes.io/aws-ebs",
                json!({"type": "gp2", "fsType": "ext4"}),
                true,
                false,
            ),
            // EFS (NFS) has no snapshots: its CSI driver implements none.
            storage_class(
                "efs-sc",
                "efs.csi.aws.com",
                json!({"provisioningMode": "efs-ap", "directoryPerms": "700"}),
                false,
                false,
            ),
            // The EKS snapshot-controller add-on installs the CRDs and the controller, not a
            // class: this is the class a platform team creates for the EBS CSI driver (AWS's
            // documented example). The other profiles have none, as a fresh cluster has none.
            json!({
                "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                "metadata": {"name": EBS_SNAPSHOT_CLASS, "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
                "driver": "ebs.csi.aws.com", "deletionPolicy": "Delete"
            }),
        ],
    }
}

/// An AKS cluster in eastus (Virginia): the `kubernetes.azure.com/*` labels AKS reserves, VMSS
/// providerIDs (no region in them: the labels and the `MC_<rg>_<cluster>_<region>` resource
/// group tell), the Azure disk CSI classes.
pub fn aks_eastus(scale: usize) -> Profile {
    let mut nodes = Vec::new();
    for i in 0..3 * scale {
        let name = format!("aks-nodepool1-38412709-vmss{i:06}");
        let zone = format!("eastus-{}", i % 3 + 1);
        let mut l = base_labels(&name, Some("Standard_D4s_v5"));
        zone_labels(&mut l, "eastus", &zone);
        for (k, v) in [
            ("topology.disk.csi.azure.com/zone", zone.as_str()),
            ("kubernetes.azure.com/agentpool", "nodepool1"),
            (
                "kubernetes.azure.com/cluster",
                "MC_rg-sante_aks-sante_eastus",
            ),
            ("kubernetes.azure.com/managedby", "aks"),
            ("kubernetes.azure.com/mode", "system"),
            ("kubernetes.azure.com/role", "agent"),
            ("kubernetes.azure.com/os-sku", "Ubuntu"),
            (
                "kubernetes.azure.com/node-image-version",
                "AKSUbuntu-2204gen2containerd-202411.12.0",
            ),
            ("agentpool", "nodepool1"),
        ] {
            l.insert(k.into(), json!(v));
        }
        nodes.push(NodeSpec {
            provider_id: Some(format!("azure:///subscriptions/5f1c2b9a-0d3e-4c7b-9a61-2e8f4d6b7c10/resourceGroups/mc_rg-sante_aks-sante_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-38412709-vmss/virtualMachines/{i}")),
            name,
            labels: Value::Object(l),
            os_image: "Ubuntu 22.04.5 LTS".into(),
            kernel: "5.15.0-1074-azure".into(),
            runtime: "containerd://1.7.23-1".into(),
            cpu: "4".into(),
            memory: "16374584Ki".into(),
        });
    }
    Profile {
        id: "aks-eastus",
        description: "AKS, eastus",
        nodes,
        objects: vec![
            storage_class(
                "managed-csi",
                "disk.csi.azure.com",
                json!({"skuname": "StandardSSD_LRS"}),
                true,
                true,
            ),
            storage_class(
                "managed-csi-premium",
                "disk.csi.azure.com",
                json!({"skuname": "Premium_LRS"}),
                true,
                false,
            ),
        ],
    }
}

/// A GKE cluster in us-central1 (Iowa): `cloud.google.com/gke-*` labels, `gce://` providerIDs
/// (project/zone/instance), the persistent-disk CSI classes.
pub fn gke_us_central1(scale: usize) -> Profile {
    let mut nodes = Vec::new();
    for (z, zone) in ["us-central1-a", "us-central1-b", "us-central1-c"]
        .iter()
        .enumerate()
    {
        for k in 0..scale {
            let name = format!(
                "gke-sante-default-pool-7c1d9e2a-{}",
                &hex_of(&format!("{z}-{k}"), 4)
            );
            let mut l = base_labels(&name, Some("e2-standard-4"));
            zone_labels(&mut l, "us-central1", zone);
            for (key, v) in [
                ("topology.gke.io/zone", *zone),
                ("cloud.google.com/gke-nodepool", "default-pool"),
                ("cloud.google.com/gke-os-distribution", "cos"),
                ("cloud.google.com/machine-family", "e2"),
                ("cloud.google.com/gke-boot-disk", "pd-balanced"),
                ("cloud.google.com/gke-container-runtime", "containerd"),
            ] {
                l.insert(key.into(), json!(v));
            }
            nodes.push(NodeSpec {
                provider_id: Some(format!("gce://sante-prod-412019/{zone}/{name}")),
                name,
                labels: Value::Object(l),
                os_image: "Container-Optimized OS from Google".into(),
                kernel: "6.1.100+".into(),
                runtime: "containerd://1.7.24".into(),
                cpu: "4".into(),
                memory: "16393304Ki".into(),
            });
        }
    }
    Profile {
        id: "gke-us-central1",
        description: "GKE, us-central1",
        nodes,
        objects: vec![
            storage_class(
                "standard-rwo",
                "pd.csi.storage.gke.io",
                json!({"type": "pd-balanced"}),
                true,
                true,
            ),
            storage_class(
                "premium-rwo",
                "pd.csi.storage.gke.io",
                json!({"type": "pd-ssd"}),
                true,
                false,
            ),
        ],
    }
}

/// An OVHcloud Managed Kubernetes cluster in Beauharnois, QC. The BHS5 node label values are not
/// documented publicly: region `BHS5` and zone `nova` follow the OpenStack cloud controller's
/// convention (the region name and the Nova availability zone).
pub fn ovh_bhs5(scale: usize) -> Profile {
    let pool = "5d6f2a1c-8b3e-4c7d-9e0f-1a2b3c4d5e6f";
    let mut nodes = Vec::new();
    for i in 0..3 * scale {
        let name = format!("nodepool-b3-8-node-{}", hex_of(&format!("ovh-{i}"), 6));
        let uuid = hex_of(&format!("uuid-{name}"), 32);
        let mut l = base_labels(&name, Some("b3-8"));
        zone_labels(&mut l, "BHS5", "nova");
        for (k, v) in [
            ("k8s.ovh.net/nodepool", pool),
            ("nodepool", "nodepool-b3-8"),
            ("topology.cinder.csi.openstack.org/zone", "nova"),
        ] {
            l.insert(k.into(), json!(v));
        }
        nodes.push(NodeSpec {
            provider_id: Some(format!(
                "openstack:///{}-{}-{}-{}-{}",
                &uuid[..8],
                &uuid[8..12],
                &uuid[12..16],
                &uuid[16..20],
                &uuid[20..]
            )),
            name,
            labels: Value::Object(l),
            os_image: "Ubuntu 22.04.5 LTS".into(),
            kernel: "5.15.0-131-generic".into(),
            runtime: "containerd://1.7.24".into(),
            cpu: "2".into(),
            memory: "7935464Ki".into(),
        });
    }
    let mut objects = Vec::new();
    for (name, default, tier) in [
        ("csi-cinder-high-speed", true, "high-speed"),
        ("csi-cinder-classic", false, "classic"),
        ("csi-cinder-high-speed-gen2", false, "high-speed-gen2"),
    ] {
        objects.push(storage_class(
            name,
            "cinder.csi.openstack.org",
            json!({"type": tier, "fsType": "ext4"}),
            false,
            default,
        ));
    }
    Profile {
        id: "ovh-bhs5",
        description: "OVHcloud MKS, Beauharnois QC",
        nodes,
        objects,
    }
}

/// A self-managed cluster on Québec-owned infrastructure (kubeadm on the VMs of a Québec
/// provider): like many such clusters, its nodes show no provider signal, so its
/// SovereignCluster declares where it is and under whose law.
pub fn qc_sovereign(scale: usize) -> Profile {
    let nodes = (0..3 * scale)
        .map(|i| {
            let name = format!("qc-worker-{:02}", i + 1);
            NodeSpec {
                labels: Value::Object(base_labels(&name, None)),
                name,
                provider_id: None,
                os_image: "Rocky Linux 9.5 (Blue Onyx)".into(),
                kernel: "5.14.0-503.14.1.el9_5.x86_64".into(),
                runtime: "containerd://1.7.24".into(),
                cpu: "8".into(),
                memory: "32779340Ki".into(),
            }
        })
        .collect();
    Profile {
        id: "qc-sovereign",
        description: "self-managed, Québec-owned infrastructure",
        nodes,
        objects: vec![storage_class(
            "ceph-rbd",
            "rbd.csi.ceph.com",
            json!({"clusterID": "qc-ceph", "pool": "kubernetes"}),
            false,
            true,
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_scales_with_unique_node_names() {
        for id in IDS {
            let one = by_id(id, 1).expect("profile");
            let two = by_id(id, 2).expect("profile");
            assert_eq!(two.nodes.len(), 2 * one.nodes.len(), "{id}");
            let mut names: Vec<&str> = two.nodes.iter().map(|n| n.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), two.nodes.len(), "{id}");
            assert!(
                one.objects.iter().any(|o| o["kind"] == "StorageClass"),
                "{id}"
            );
        }
        let eks = by_id("eks-us-east-1", 1).expect("eks");
        assert_eq!(eks.nodes[0].name, "ip-10-0-1-23.ec2.internal");
        assert!(
            eks.nodes[0]
                .provider_id
                .as_deref()
                .is_some_and(|p| p.starts_with("aws:///us-east-1a/i-0"))
        );
    }
}
