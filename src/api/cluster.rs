//! `SovereignCluster`: how to reach a cluster, what it claims to be, its prices; and, in status,
//! what the operator observed and the verdict it derived.

// Several `printcolumn(...)` share keys by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Finding, Location, SecretKeyRef, Verdict};

/// A cluster the operator can migrate from or to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sovereign.dev",
    version = "v1alpha1",
    kind = "SovereignCluster",
    plural = "sovereignclusters",
    shortname = "sovc",
    category = "sovereign",
    status = "SovereignClusterStatus",
    derive = "PartialEq",
    doc = "A Kubernetes cluster that workloads are migrated from or to: how to reach it, what it claims to be (provider, region, location, jurisdiction) and its prices. Status holds what the operator observed and the verdict it derived.",
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".status.provider",
        description = "Provider derived from what the cluster shows"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".status.region",
        description = "Region derived from node labels and providerIDs"
    ),
    printcolumn(
        name = "Location",
        type_ = "string",
        json_path = ".status.location",
        description = "ISO 3166-2 location (e.g. CA-QC)"
    ),
    printcolumn(
        name = "Jurisdiction",
        type_ = "string",
        json_path = ".status.jurisdiction",
        description = "Country whose law governs the operator of the cluster"
    ),
    printcolumn(name = "Reachable", type_ = "boolean", json_path = ".status.reachable"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.kubernetesVersion",
        priority = 1
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.nodes.count",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.kubeconfigSecretRef) != (has(self.inCluster) && self.inCluster)").message("set exactly one of kubeconfigSecretRef or inCluster: true").reason(Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct SovereignClusterSpec {
    /// The Secret key holding a kubeconfig for this cluster. Its content never appears in logs,
    /// Events or status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
    /// Use the operator's own service account: this is the cluster the operator runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_cluster: Option<bool>,
    /// The provider this cluster claims to run on: a catalog id (aws, azure, gcp, oci, ibm,
    /// digitalocean, ovhcloud, micrologic, self-managed, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub provider: Option<String>,
    /// The provider's region code as it appears in node labels (e.g. `us-east-1`, `ca-east-bhs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub region: Option<String>,
    /// Where the cluster claims to be. Status shows what was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// ISO 3166-1 alpha-2 code of the country of the operator's parent company (whose law reaches
    /// the data: a US parent means the US CLOUD Act applies wherever the region is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub jurisdiction: Option<String>,
    /// The cluster's price list. Missing prices default to the built-in catalog of the provider's
    /// public list prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Pricing>,
    /// How often the cluster is probed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10s') && duration(self) <= duration('24h')").message("probeInterval must be between 10s and 24h"))]
    pub probe_interval: Option<String>,
}

/// A provider's price list, in one currency.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// ISO 4217 currency code of every price in this list.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Internet egress, per GiB (used when no tiers are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub egress_per_gi_b: Option<f64>,
    /// Monthly free egress allowance, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub free_egress_gi_b: Option<f64>,
    /// Tiered egress prices; the last tier applies beyond its bound. Overrides egressPerGiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.map(t, t.upToGiB).isSorted() && self.all(t, self.filter(u, u.upToGiB == t.upToGiB).size() == 1)").message("egressTiers must be sorted by strictly increasing upToGiB"))]
    pub egress_tiers: Option<Vec<EgressTier>>,
    /// Storage per GiB-month, by StorageClass name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, size(k) > 0 && self[k] >= 0.0)").message("storagePerGiBMonth keys must be StorageClass names and prices must not be negative"))]
    pub storage_per_gi_b_month: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub vcpu_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub memory_gi_b_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub load_balancer_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub control_plane_hour: Option<f64>,
    /// Where these prices come from (a URL or a contract reference), reported with every cost line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub source: Option<String>,
}

/// One egress tier: the price per GiB for traffic up to `upToGiB` in the month.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressTier {
    #[schemars(range(min = 0.0))]
    pub up_to_gi_b: f64,
    #[schemars(range(min = 0.0))]
    pub per_gi_b: f64,
}

/// What the operator observed of the cluster and what it derived from it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SovereignClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the last probe reached the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// `gitVersion` the API server reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// When the cluster was last probed successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Provider derived from observation (or from the declaration when nothing is observed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// ISO 3166-2 code, e.g. `CA-QC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jurisdiction: Option<String>,
    /// `Sovereign` (located and governed in allowed places), `ForeignControlled`, or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sovereignty: Option<Sovereignty>,
    /// The verdict against the default policy, and the evidence behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeSummary>,
    /// Distinct StorageClass provisioners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_provisioners: Vec<String>,
    /// StorageClass names, default first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_classes: Vec<String>,
    /// Residency findings about the cluster itself (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// The sovereignty class derived for a cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Sovereignty {
    /// Located and governed inside Canada (or as the policy allows).
    Sovereign,
    /// Run by a company whose parent is subject to foreign law, wherever it is located.
    ForeignControlled,
    Unknown,
}

/// What the nodes show.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub count: i64,
    /// Distinct `topology.kubernetes.io/region` values (or the deprecated label's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Distinct `topology.kubernetes.io/zone` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Distinct `spec.providerID` schemes (`aws`, `azure`, `gce`, `openstack`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_id_schemes: Vec<String>,
    /// A few `spec.providerID` values, as evidence (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_id_samples: Vec<String>,
}
