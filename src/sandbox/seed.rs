//! What a fresh simulated cluster holds: the system namespaces, and for the sandbox's two clusters
//! nodes and storage classes that look like the providers' own.

use serde_json::{Value, json};

use super::api::Cluster;
use super::errors::ApiError;

/// Namespaces every cluster has.
pub fn base(c: &Cluster) -> Result<(), ApiError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        c.seed_object(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }))?;
    }
    c.seed_object(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"}}))?;
    c.seed_object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "sessionAffinity": "None"},
        "status": {"loadBalancer": {}}
    }))?;
    Ok(())
}

/// A stable 32-hex identifier derived from a name (machine-id style).
fn machine_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(name.as_bytes())[..16])
}

#[allow(clippy::too_many_arguments)]
fn node(
    name: &str,
    labels: Value,
    provider_id: &str,
    internal_ip: &str,
    hostname: &str,
    os_image: &str,
    kernel: &str,
    runtime: &str,
    cpu: &str,
    memory: &str,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"providerID": provider_id},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "83873772Ki"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "77299011866"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": super::meta::now(), "lastTransitionTime": super::meta::now()},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": super::meta::now(), "lastTransitionTime": super::meta::now()},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": super::meta::now(), "lastTransitionTime": super::meta::now()},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": super::meta::now(), "lastTransitionTime": super::meta::now()}
            ],
            "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": hostname}],
            // Every NodeSystemInfo field is required by the API schema (clients check it).
            "nodeInfo": {"machineID": machine_id(name), "systemUUID": machine_id(&format!("uuid-{name}")), "bootID": machine_id(&format!("boot-{name}")),
                         "kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0", "osImage": os_image, "kernelVersion": kernel, "containerRuntimeVersion": runtime, "operatingSystem": "linux", "architecture": "amd64"}
        }
    })
}

/// An EKS cluster in us-east-1 (the sandbox's `source`).
pub fn eks_us_east_1(c: &Cluster) -> Result<(), ApiError> {
    let nodes = [
        (
            "ip-10-0-1-23.ec2.internal",
            "us-east-1a",
            "i-0a1b2c3d4e5f60718",
            "10.0.1.23",
        ),
        (
            "ip-10-0-2-57.ec2.internal",
            "us-east-1b",
            "i-0b2c3d4e5f6071829",
            "10.0.2.57",
        ),
        (
            "ip-10-0-3-91.ec2.internal",
            "us-east-1c",
            "i-0c3d4e5f607182930",
            "10.0.3.91",
        ),
    ];
    for (name, zone, instance, ip) in nodes {
        let labels = json!({
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "m5.xlarge",
            "node.kubernetes.io/instance-type": "m5.xlarge",
            "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": zone,
            "failure-domain.beta.kubernetes.io/region": "us-east-1", "failure-domain.beta.kubernetes.io/zone": zone,
            "eks.amazonaws.com/nodegroup": "general-purpose", "eks.amazonaws.com/capacityType": "ON_DEMAND",
            "eks.amazonaws.com/nodegroup-image": "ami-0f1e2d3c4b5a69788",
            "topology.ebs.csi.aws.com/zone": zone
        });
        c.seed_object(node(
            name,
            labels,
            &format!("aws:///{zone}/{instance}"),
            ip,
            name,
            "Amazon Linux 2023.6.20250203",
            "6.1.127-135.201.amzn2023.x86_64",
            "containerd://1.7.25",
            "4",
            "15896804Ki",
        ))?;
    }
    c.seed_object(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp3", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp3", "fsType": "ext4"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true
    }))?;
    c.seed_object(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "gp2"},
        "provisioner": "kubernetes.io/aws-ebs", "parameters": {"type": "gp2", "fsType": "ext4"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true
    }))?;
    // The EKS snapshot-controller add-on installs the CRDs and the controller, not a class: this is
    // the class a platform team creates for the EBS CSI driver (AWS's documented example). The
    // other profiles have none, as a fresh cluster of theirs has none.
    c.seed_object(json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": EBS_SNAPSHOT_CLASS, "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": "ebs.csi.aws.com", "deletionPolicy": "Delete"
    }))?;
    Ok(())
}

/// The VolumeSnapshotClass of the EKS profile (driver `ebs.csi.aws.com`).
pub const EBS_SNAPSHOT_CLASS: &str = "ebs-csi-snapclass";

/// An AKS cluster in eastus (Virginia): the `kubernetes.azure.com/*` labels AKS reserves, VMSS
/// providerIDs (no region in them: the labels and the `MC_<rg>_<cluster>_<region>` resource group
/// tell), the Azure disk CSI classes.
pub fn aks_eastus(c: &Cluster) -> Result<(), ApiError> {
    for i in 0..3 {
        let name = format!("aks-nodepool1-38412709-vmss00000{i}");
        let zone = format!("eastus-{}", i + 1);
        let labels = json!({
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "Standard_D4s_v5",
            "node.kubernetes.io/instance-type": "Standard_D4s_v5",
            "topology.kubernetes.io/region": "eastus", "topology.kubernetes.io/zone": zone,
            "failure-domain.beta.kubernetes.io/region": "eastus", "failure-domain.beta.kubernetes.io/zone": zone,
            "topology.disk.csi.azure.com/zone": zone,
            "kubernetes.azure.com/agentpool": "nodepool1", "kubernetes.azure.com/cluster": "MC_rg-sante_aks-sante_eastus",
            "kubernetes.azure.com/managedby": "aks", "kubernetes.azure.com/mode": "system", "kubernetes.azure.com/role": "agent",
            "kubernetes.azure.com/os-sku": "Ubuntu", "kubernetes.azure.com/node-image-version": "AKSUbuntu-2204gen2containerd-202411.12.0",
            "agentpool": "nodepool1"
        });
        c.seed_object(node(
            &name,
            labels,
            &format!("azure:///subscriptions/5f1c2b9a-0d3e-4c7b-9a61-2e8f4d6b7c10/resourceGroups/mc_rg-sante_aks-sante_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-38412709-vmss/virtualMachines/{i}"),
            &format!("10.224.0.{}", 4 + i),
            &name,
            "Ubuntu 22.04.5 LTS",
            "5.15.0-1074-azure",
            "containerd://1.7.23-1",
            "4",
            "16374584Ki",
        ))?;
    }
    for (name, sku, default) in [
        ("managed-csi", "StandardSSD_LRS", true),
        ("managed-csi-premium", "Premium_LRS", false),
    ] {
        let mut sc = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "disk.csi.azure.com", "parameters": {"skuname": sku},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true
        });
        if default {
            sc["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        c.seed_object(sc)?;
    }
    Ok(())
}

/// A GKE cluster in us-central1 (Iowa): `cloud.google.com/gke-*` labels, `gce://` providerIDs
/// (project/zone/instance), the persistent-disk CSI classes.
pub fn gke_us_central1(c: &Cluster) -> Result<(), ApiError> {
    for (i, zone) in ["us-central1-a", "us-central1-b", "us-central1-c"]
        .iter()
        .enumerate()
    {
        let name = format!(
            "gke-sante-default-pool-7c1d9e2a-{}",
            ["x4kp", "m9qz", "b2wt"][i]
        );
        let labels = json!({
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "e2-standard-4",
            "node.kubernetes.io/instance-type": "e2-standard-4",
            "topology.kubernetes.io/region": "us-central1", "topology.kubernetes.io/zone": zone,
            "failure-domain.beta.kubernetes.io/region": "us-central1", "failure-domain.beta.kubernetes.io/zone": zone,
            "topology.gke.io/zone": zone,
            "cloud.google.com/gke-nodepool": "default-pool", "cloud.google.com/gke-os-distribution": "cos",
            "cloud.google.com/machine-family": "e2", "cloud.google.com/gke-boot-disk": "pd-balanced",
            "cloud.google.com/gke-container-runtime": "containerd"
        });
        c.seed_object(node(
            &name,
            labels,
            &format!("gce://sante-prod-412019/{zone}/{name}"),
            &format!("10.128.0.{}", 10 + i),
            &name,
            "Container-Optimized OS from Google",
            "6.1.100+",
            "containerd://1.7.24",
            "4",
            "16393304Ki",
        ))?;
    }
    for (name, kind, default) in [
        ("standard-rwo", "pd-balanced", true),
        ("premium-rwo", "pd-ssd", false),
    ] {
        let mut sc = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "pd.csi.storage.gke.io", "parameters": {"type": kind},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true
        });
        if default {
            sc["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        c.seed_object(sc)?;
    }
    Ok(())
}

/// An OVHcloud Managed Kubernetes cluster in Beauharnois, QC (the sandbox's `target`).
/// The BHS5 node label values are not documented publicly: region `BHS5` and zone `nova` follow the
/// OpenStack cloud controller's convention (the region name and the Nova availability zone).
pub fn ovh_bhs5(c: &Cluster) -> Result<(), ApiError> {
    let pool = "5d6f2a1c-8b3e-4c7d-9e0f-1a2b3c4d5e6f";
    let nodes = [
        (
            "nodepool-b3-8-node-7f3a21",
            "2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3c4d",
            "10.1.0.11",
        ),
        (
            "nodepool-b3-8-node-9c4d52",
            "3d5f7b9c-2e4a-4b6c-9d8e-0f1a2b3c4d5e",
            "10.1.0.12",
        ),
        (
            "nodepool-b3-8-node-b1e683",
            "4e6a8c0d-3f5b-4c7d-8e9f-1a2b3c4d5e6f",
            "10.1.0.13",
        ),
    ];
    for (name, uuid, ip) in nodes {
        let labels = json!({
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "b3-8",
            "node.kubernetes.io/instance-type": "b3-8",
            "topology.kubernetes.io/region": "BHS5", "topology.kubernetes.io/zone": "nova",
            "failure-domain.beta.kubernetes.io/region": "BHS5", "failure-domain.beta.kubernetes.io/zone": "nova",
            "k8s.ovh.net/nodepool": pool, "nodepool": "nodepool-b3-8",
            "topology.cinder.csi.openstack.org/zone": "nova"
        });
        c.seed_object(node(
            name,
            labels,
            &format!("openstack:///{uuid}"),
            ip,
            name,
            "Ubuntu 22.04.5 LTS",
            "5.15.0-131-generic",
            "containerd://1.7.24",
            "2",
            "7935464Ki",
        ))?;
    }
    for (name, default, tier) in [
        ("csi-cinder-high-speed", true, "high-speed"),
        ("csi-cinder-classic", false, "classic"),
        ("csi-cinder-high-speed-gen2", false, "high-speed-gen2"),
    ] {
        let mut sc = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "cinder.csi.openstack.org", "parameters": {"type": tier, "fsType": "ext4"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate", "allowVolumeExpansion": true
        });
        if default {
            sc["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        c.seed_object(sc)?;
    }
    Ok(())
}

/// A self-managed cluster on Québec-owned infrastructure (kubeadm on the VMs of a Québec provider):
/// like many such clusters, its nodes show no provider signal, so its SovereignCluster declares
/// where it is and under whose law.
pub fn qc_sovereign(c: &Cluster) -> Result<(), ApiError> {
    for (i, ip) in ["10.20.0.11", "10.20.0.12", "10.20.0.13"]
        .iter()
        .enumerate()
    {
        let name = format!("qc-worker-0{}", i + 1);
        let labels = json!({
            "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"
        });
        let mut n = node(
            &name,
            labels,
            "",
            ip,
            &name,
            "Rocky Linux 9.5 (Blue Onyx)",
            "5.14.0-503.14.1.el9_5.x86_64",
            "containerd://1.7.24",
            "8",
            "32779340Ki",
        );
        if let Some(spec) = n.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("providerID");
        }
        c.seed_object(n)?;
    }
    c.seed_object(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "ceph-rbd", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rbd.csi.ceph.com", "parameters": {"clusterID": "qc-ceph", "pool": "kubernetes"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate", "allowVolumeExpansion": true
    }))?;
    Ok(())
}

/// The CSI snapshot CRDs (snapshot.storage.k8s.io/v1), installed as CRDs as on a real cluster.
pub fn snapshot_crds(c: &Cluster) -> Result<(), ApiError> {
    let open = json!({"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    }});
    let open_class = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
        "driver": {"type": "string"}, "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"}}
    }, "required": ["deletionPolicy", "driver"]});
    let defs = [
        (
            "volumesnapshots",
            "VolumeSnapshot",
            "volumesnapshot",
            "Namespaced",
            vec!["vs"],
            open.clone(),
            true,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
                   {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"},
                   {"name": "RestoreSize", "type": "string", "jsonPath": ".status.restoreSize"},
                   {"name": "SnapshotClass", "type": "string", "jsonPath": ".spec.volumeSnapshotClassName"},
                   {"name": "SnapshotContent", "type": "string", "jsonPath": ".status.boundVolumeSnapshotContentName"},
                   {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        (
            "volumesnapshotclasses",
            "VolumeSnapshotClass",
            "volumesnapshotclass",
            "Cluster",
            vec!["vsclass", "vsclasses"],
            open_class,
            false,
            json!([{"name": "Driver", "type": "string", "jsonPath": ".driver"},
                   {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"},
                   {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        (
            "volumesnapshotcontents",
            "VolumeSnapshotContent",
            "volumesnapshotcontent",
            "Cluster",
            vec!["vsc", "vscs"],
            open,
            true,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"},
                   {"name": "RestoreSize", "type": "integer", "jsonPath": ".status.restoreSize"},
                   {"name": "DeletionPolicy", "type": "string", "jsonPath": ".spec.deletionPolicy"},
                   {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"},
                   {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
    ];
    for (plural, kind, singular, scope, short, schema, status, cols) in defs {
        let mut version = json!({"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}, "additionalPrinterColumns": cols});
        if status {
            version["subresources"] = json!({"status": {}});
        }
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.snapshot.storage.k8s.io"), "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/814"}},
            "spec": {"group": "snapshot.storage.k8s.io", "scope": scope, "names": {"plural": plural, "singular": singular, "kind": kind, "listKind": format!("{kind}List"), "shortNames": short}, "versions": [version]},
        });
        c.create_object(crd, &Default::default())?;
    }
    Ok(())
}
