//! The order objects are applied in, so that each finds what it needs: namespaces, CRDs, identities
//! and RBAC, configuration, claims, services, workloads, then what routes to or scales them.

use serde_json::Value;

use super::kind;

/// The apply rank of a kind (lower first). Custom resources come after the workloads: their
/// controllers usually act on the workload's objects.
pub fn rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" | "Role" | "ClusterRole" => 2,
        "RoleBinding" | "ClusterRoleBinding" => 3,
        "ConfigMap" | "Secret" => 4,
        "PersistentVolumeClaim" => 5,
        "Service" => 6,
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" | "Pod" => 7,
        "Ingress" | "HorizontalPodAutoscaler" | "PodDisruptionBudget" | "NetworkPolicy" => 8,
        _ => 9,
    }
}

/// Sorts objects by rank, then kind, then name: a stable order, so that the plan's hash is too.
pub fn sort(objects: &mut [Value]) {
    objects.sort_by(|a, b| {
        (rank(kind(a)), kind(a), super::name(a)).cmp(&(rank(kind(b)), kind(b), super::name(b)))
    });
}
