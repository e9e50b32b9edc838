//! The budget check: a cost (estimated or actual) against `spec.cost.budget`, compared in the
//! cost's currency (the report currency), at cents, with a message that gives the numbers.

use serde::{Deserialize, Serialize};

use super::error::{CostError, check_quantity};
use super::estimate::Estimate;
use super::fx::FxTable;
use super::ledger::Actual;
use super::money::{format_money, round_cents};
use crate::api::workload::Money;

/// Whether the cost is an estimate or what was actually spent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostKind {
    Estimated,
    Actual,
}

impl CostKind {
    fn words(self) -> &'static str {
        match self {
            CostKind::Estimated => "estimated one-time cost",
            CostKind::Actual => "actual cost so far",
        }
    }
}

/// The outcome, with both figures in the cost's currency, rounded to cents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetCheck {
    pub within: bool,
    pub kind: CostKind,
    pub cost: f64,
    pub budget: f64,
    pub currency: String,
    /// For the `WithinBudget` condition and `status.message`.
    pub message: String,
}

/// Checks `cost` (in `currency`) against `budget`, converting the budget into `currency`.
/// Equal is within. `unpriced` is the number of lines without a price: the message then says the
/// cost is a lower bound, since an incomplete estimate under budget may not really be.
pub fn check(
    kind: CostKind,
    cost: f64,
    currency: &str,
    unpriced: usize,
    budget: &Money,
    fx: &FxTable,
) -> Result<BudgetCheck, CostError> {
    check_quantity("budget amount", budget.amount)?;
    check_quantity("cost", cost)?;
    let conv = fx.conversion(&budget.currency, currency)?;
    // Compared at cents, as shown: the message never says "exceeds by 0.00".
    let budget_here = round_cents(budget.amount * conv.factor);
    let cost = round_cents(cost);
    let budget_text = if conv.rates.is_empty() {
        format_money(budget_here, currency)
    } else {
        let rates: Vec<String> = conv.rates.iter().map(|r| r.citation()).collect();
        format!(
            "{} ({} at {})",
            format_money(budget_here, currency),
            format_money(budget.amount, &budget.currency),
            rates.join(" and ")
        )
    };
    let within = cost <= budget_here;
    let mut message = if within {
        format!(
            "{} {} is within the budget of {}, {} left",
            kind.words(),
            format_money(cost, currency),
            budget_text,
            format_money(budget_here - cost, currency)
        )
    } else {
        format!(
            "{} {} exceeds the budget of {} by {}",
            kind.words(),
            format_money(cost, currency),
            budget_text,
            format_money(cost - budget_here, currency)
        )
    };
    if unpriced > 0 {
        message.push_str(&format!(
            " (incomplete: {unpriced} line item{} unpriced, so the cost is a lower bound)",
            if unpriced == 1 { "" } else { "s" }
        ));
    }
    Ok(BudgetCheck {
        within,
        kind,
        cost,
        budget: budget_here,
        currency: currency.to_string(),
        message,
    })
}

/// The estimate's one-time cost against the budget.
pub fn check_estimate(
    estimate: &Estimate,
    budget: &Money,
    fx: &FxTable,
) -> Result<BudgetCheck, CostError> {
    check(
        CostKind::Estimated,
        estimate.one_time.total,
        &estimate.currency,
        estimate.unpriced.len(),
        budget,
        fx,
    )
}

/// The actual cost so far against the budget.
pub fn check_actual(
    actual: &Actual,
    budget: &Money,
    fx: &FxTable,
) -> Result<BudgetCheck, CostError> {
    check(
        CostKind::Actual,
        actual.one_time.total,
        &actual.currency,
        actual.unpriced.len(),
        budget,
        fx,
    )
}
