//! The built-in `quebec-strict` policy (the chart installs the same as a ResidencyPolicy object).

use crate::api::policy::{Enforcement, ResidencyPolicySpec};

pub const QUEBEC_STRICT: &str = "quebec-strict";

/// Compute and volumes in Québec, under Canadian jurisdiction only; a foreign parent company is not
/// acceptable even in a Québec region.
pub fn quebec_strict() -> ResidencyPolicySpec {
    ResidencyPolicySpec {
        enforcement: Enforcement::Block,
        allowed_locations: vec!["CA-QC".into()],
        allowed_jurisdictions: vec!["CA".into()],
        allow_foreign_controlled_providers: false,
        allowed_registries: vec![],
        forbidden_endpoints: vec![],
        require_privacy_impact_assessment: true,
        recheck_interval: None,
    }
}
