//! Shapes shared by several kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where something is, as ISO 3166 codes (country, then subdivision) and a city for people.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code, e.g. `CA`.
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: String,
    /// ISO 3166-2 subdivision code without the country prefix, e.g. `QC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z0-9]{1,3}$"))]
    pub province: Option<String>,
    /// City, for people reading the status (not used for decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub city: Option<String>,
}

impl Location {
    /// The ISO 3166-2 style code policies are written in: `CA-QC`, or `CA` when the province is unknown.
    pub fn code(&self) -> String {
        match &self.province {
            Some(p) => format!("{}-{}", self.country, p),
            None => self.country.clone(),
        }
    }
}

/// The residency verdict for a cluster or a workload.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Verdict {
    /// Every signal is inside the policy.
    Compliant,
    /// At least one signal breaks the policy.
    NonCompliant,
    /// Not enough evidence to decide; never treated as compliant.
    #[default]
    Unknown,
}

/// How serious a finding is.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// One specific observation that a person can act on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The object the finding is about, as `Kind/namespace/name` (or `Kind/name` when cluster-scoped).
    pub object: String,
    /// The field of that object, as a JSON path (e.g. `spec.template.spec.containers[0].image`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
    /// What was seen, verbatim (a label value, a providerID, an image reference, `declared` …).
    pub evidence: String,
    /// The rule that this evidence was judged against.
    pub rule: String,
    pub severity: Severity,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remediation: String,
}

/// A reference to a key of a Secret in a named namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The key holding the kubeconfig.
    #[serde(default = "default_kubeconfig_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_kubeconfig_key() -> String {
    "kubeconfig".to_string()
}

/// The JSON Schema of an arbitrary JSON value, which Kubernetes accepts only when it says so.
pub fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
