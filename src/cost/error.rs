//! Errors of the cost model. Every error names the input that caused it, so a CLI user or a status
//! message can say what to fix.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CostError {
    /// A `--fx` value that is not `FROM:TO=RATE`.
    #[error("invalid --fx {input:?}: {reason} (expected FROM:TO=RATE, e.g. USD:CAD=1.38)")]
    FxOverride { input: String, reason: String },
    /// A rate table (built-in or ConfigMap) that cannot be read or holds an invalid rate.
    #[error("invalid exchange-rate table: {0}")]
    FxTable(String),
    /// No rate, direct or through CAD, links the two currencies.
    #[error(
        "no exchange rate from {from} to {to} (add one with --fx {from}:{to}=RATE or the rate ConfigMap)"
    )]
    NoRate { from: String, to: String },
    /// The embedded or an overriding price catalog cannot be read.
    #[error("invalid price catalog: {0}")]
    Catalog(String),
    /// A quantity that cannot be priced: negative, NaN or infinite.
    #[error("invalid {what}: {value} (must be a finite number ≥ 0)")]
    InvalidQuantity { what: String, value: f64 },
    /// A ledger observation that contradicts itself (e.g. negative bytes).
    #[error("invalid ledger observation: {0}")]
    Observation(String),
}

/// Rejects NaN, infinities and negative numbers, which would otherwise poison every sum they enter.
pub(crate) fn check_quantity(what: &str, value: f64) -> Result<f64, CostError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(CostError::InvalidQuantity {
            what: what.to_string(),
            value,
        })
    }
}
