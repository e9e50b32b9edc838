//! The cost model (issue 7), pure: no API calls, no clock, no I/O.
//!
//! - [`catalog`]: the built-in, dated and sourced price catalog and a cluster's effective prices
//!   (its `spec.pricing` first, field by field).
//! - [`fx`]: the dated rate table (built-in placeholder rates, `--fx` and ConfigMap overrides).
//! - [`egress`]: egress through a free allowance and tiers.
//! - [`estimate`]: the one-time cost and the monthly run-rates before and after, as line items.
//! - [`ledger`]: the actual cost from observations, never double-counted.
//! - [`budget`]: a cost against `spec.cost.budget`.
//!
//! Money is `f64` (as in the API types), kept at full precision in every sum and rounded to cents,
//! half away from zero, only when presented ([`money::round_cents`]). A price that is not known is
//! never 0: its line says "unpriced: …" and the result lists it. A month is 730 hours.

pub mod budget;
pub mod catalog;
pub mod egress;
pub mod error;
pub mod estimate;
pub mod fx;
pub mod ledger;
pub mod lines;
pub mod money;
pub mod plan;

pub use budget::{BudgetCheck, CostKind, check, check_actual, check_estimate};
pub use catalog::{Catalog, EgressRate, PriceList, cluster_pricing, effective_pricing};
pub use egress::{AllowanceUse, EgressCharge, allowance_use, egress_charge};
pub use error::CostError;
pub use estimate::{
    Estimate, EstimateInput, Footprint, HOURS_PER_MONTH, MoverUse, PodHours, Side, VolumeUse,
    estimate,
};
pub use fx::{FxTable, Rate, parse_override};
pub use ledger::{Actual, Facts, LedgerInput, MoverRole, Observation, actual};
pub use lines::Section;
pub use money::{display, format_money, round_cents};
pub use plan::{Moved, actual_of, estimate_plan};

use crate::api::workload::CostStatus;

/// `status.cost`: the estimate's breakdown and figures, the actual cost once data moves, and the
/// COST column's text (the actual once there is one, else the estimate marked "(est.)").
pub fn cost_status(
    currency: &str,
    estimate: Option<&Estimate>,
    actual: Option<&Actual>,
) -> CostStatus {
    let display = match (actual, estimate) {
        (Some(a), _) => Some(a.display()),
        (None, Some(e)) => Some(e.display()),
        (None, None) => None,
    };
    CostStatus {
        currency: currency.to_string(),
        estimated: estimate.map(Estimate::to_cost_estimate),
        actual: actual.map(Actual::to_cost_actual),
        display,
        items: estimate.map(Estimate::status_items).unwrap_or_default(),
    }
}
