//! `ResidencyPolicy`: where a workload and its data may live, and under whose law.

// Several `printcolumn(...)` share keys by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What happens when a migration would break the policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Enforcement {
    /// Nothing moves; the workload waits with the findings in status.
    #[default]
    Block,
    /// The migration proceeds; the findings are reported.
    Warn,
}

/// Where a workload and its data may live, and under whose law.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sovereign.dev",
    version = "v1alpha1",
    kind = "ResidencyPolicy",
    plural = "residencypolicies",
    shortname = "rp",
    category = "sovereign",
    status = "ResidencyPolicyStatus",
    derive = "PartialEq",
    doc = "Where a workload's compute, volumes and dependencies may be located, under which jurisdictions, from which registries images may come, and what happens when the policy is broken.",
    printcolumn(
        name = "Enforcement",
        type_ = "string",
        json_path = ".spec.enforcement"
    ),
    printcolumn(
        name = "Locations",
        type_ = "string",
        json_path = ".spec.allowedLocations"
    ),
    printcolumn(
        name = "Jurisdictions",
        type_ = "string",
        json_path = ".spec.allowedJurisdictions",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyPolicySpec {
    /// `Block` stops a migration that breaks the policy before anything moves; `Warn` reports and proceeds.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// ISO 3166 codes where compute and volumes may be: a country (`CA`) or a subdivision (`CA-QC`).
    #[schemars(length(min = 1, max = 64), inner(length(max = 16)))]
    #[x_kube(validation = Rule::new("self.all(l, l.matches('^[A-Z]{2}(-[A-Z0-9]{1,3})?$'))").message("allowedLocations entries must be ISO 3166 codes such as CA or CA-QC"))]
    pub allowed_locations: Vec<String>,
    /// ISO 3166-1 alpha-2 codes of the countries whose law may govern the cluster's operator.
    #[schemars(length(min = 1, max = 64), inner(length(max = 16)))]
    #[x_kube(validation = Rule::new("self.all(j, j.matches('^[A-Z]{2}$'))").message("allowedJurisdictions entries must be ISO 3166-1 alpha-2 country codes such as CA"))]
    pub allowed_jurisdictions: Vec<String>,
    /// Accept providers whose parent company is foreign even when they are located in an allowed
    /// place (e.g. a US cloud's Montréal region). Off by default: location is not jurisdiction.
    #[serde(default)]
    pub allow_foreign_controlled_providers: bool,
    /// Registry hosts images may come from, beyond those that pass the location/jurisdiction test.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 255)))]
    #[x_kube(validation = Rule::new("self.all(r, size(r) > 0 && !r.contains('://'))").message("allowedRegistries entries are registry hosts (optionally with a path), without a scheme"))]
    pub allowed_registries: Vec<String>,
    /// Host patterns (`*.example.com`) the workload's configuration must not name, beyond the
    /// catalog's foreign-cloud endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.all(h, size(h) > 0 && !h.contains('://'))").message("forbiddenEndpoints entries are host patterns such as *.s3.amazonaws.com, without a scheme"))]
    pub forbidden_endpoints: Vec<String>,
    /// Workloads under this policy must carry a privacy-impact-assessment reference (Québec Law 25).
    #[serde(default)]
    pub require_privacy_impact_assessment: bool,
    /// How often a completed workload is checked again for drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("recheckInterval must be at least 1m"))]
    pub recheck_interval: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidencyPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
