//! The `sovereign.dev/v1alpha1` API: the four custom resources and the shapes they share.
//!
//! Field names follow the "API sketch" of DESIGN.md. Everything that can be judged from the manifest
//! alone is validated in the schema (types, enums, bounds, patterns, CEL rules) so that `kubectl apply`
//! refuses a bad manifest with a clear message; what only the operator can judge becomes a condition.

pub mod cluster;
pub mod common;
pub mod conditions;
pub mod duration;
pub mod policy;
pub mod transfer;
pub mod workload;

pub use cluster::{SovereignCluster, SovereignClusterSpec, SovereignClusterStatus};
pub use common::*;
pub use policy::{ResidencyPolicy, ResidencyPolicySpec, ResidencyPolicyStatus};
pub use transfer::{VolumeTransfer, VolumeTransferSpec, VolumeTransferStatus};
pub use workload::{SovereignWorkload, SovereignWorkloadSpec, SovereignWorkloadStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind this operator owns.
pub const GROUP: &str = "sovereign.dev";
/// The only served (and stored) version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD the operator owns, in the order they are installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        SovereignCluster::crd(),
        ResidencyPolicy::crd(),
        SovereignWorkload::crd(),
        VolumeTransfer::crd(),
    ]
}

/// The file name a CRD is kept under in `crds/` and in the chart.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// A CRD as the YAML document written to `crds/` (and printed by `sovereign crd`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in src/api by `sovereign crd --out crds/`. Do not edit.\n{body}"
    ))
}
