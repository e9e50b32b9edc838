//! Egress cost of a transfer within the month: a free allowance first, then tiers.
//!
//! Semantics (documented because providers word it differently):
//! - GiB = 2³⁰ bytes.
//! - The month's traffic is one running total. The transfer occupies `[already, already + size)`
//!   of it, `already` being the GiB the source already sent this month (0 by default).
//! - The free allowance is the first `free` GiB of the month's total.
//! - Tier bounds are month totals too, counting the free GiB: tier *i* prices the GiB between the
//!   previous tier's bound and its own; the last tier prices everything beyond the previous bound,
//!   whatever its own bound says.
//! - Without tiers, a flat price per GiB applies beyond the allowance.
//! - Without any price, the GiB beyond the allowance are reported unpriced, never free.
//!
//! A transfer that spans a month boundary restarts the tiers in reality; this model keeps one
//! month, which over-estimates slightly when tiers decrease.

use serde::{Deserialize, Serialize};

use super::catalog::EgressRate;

/// Bytes per GiB.
pub const GIB: f64 = (1u64 << 30) as f64;

/// Bytes to GiB.
pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB
}

/// How much of the monthly free allowance is used before and by the transfer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllowanceUse {
    pub free_gib: f64,
    /// Already used by traffic sent earlier in the month.
    pub used_before_gib: f64,
    /// Used by this transfer.
    pub used_by_transfer_gib: f64,
    /// Left after the transfer.
    pub remaining_gib: f64,
}

/// Which portion of the allowance is used: `free_gib` a month, `already_sent_gib` already sent,
/// `transfer_gib` now.
pub fn allowance_use(free_gib: f64, already_sent_gib: f64, transfer_gib: f64) -> AllowanceUse {
    let free = nonneg(free_gib);
    let a = nonneg(already_sent_gib);
    let b = a + nonneg(transfer_gib);
    let before = a.min(free);
    let by_transfer = b.min(free) - before;
    AllowanceUse {
        free_gib: free,
        used_before_gib: before,
        used_by_transfer_gib: by_transfer,
        remaining_gib: free - before - by_transfer,
    }
}

/// The GiB of a transfer priced at one tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TierCharge {
    /// 1-based tier number (1 for a flat price).
    pub tier: usize,
    /// The tier's range in the month's total: `from_gib` to `to_gib` (`None`: no upper bound).
    pub from_gib: f64,
    pub to_gib: Option<f64>,
    pub gib: f64,
    pub per_gib: f64,
    pub amount: f64,
}

/// The egress charge of a transfer, in the price list's currency.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressCharge {
    pub gib: f64,
    pub allowance: AllowanceUse,
    pub tiers: Vec<TierCharge>,
    /// GiB beyond the allowance that no price covers.
    pub unpriced_gib: f64,
    /// Sum of the tiers' amounts (full precision).
    pub amount: f64,
}

/// The egress charge of `bytes` leaving a cluster whose egress is priced by `rate` (None: unknown),
/// with a monthly allowance of `free_gib` of which `already_sent_gib` is taken by earlier traffic.
pub fn egress_charge(
    bytes: u64,
    rate: Option<&EgressRate>,
    free_gib: f64,
    already_sent_gib: f64,
) -> EgressCharge {
    let size = gib(bytes);
    let allowance = allowance_use(free_gib, already_sent_gib, size);
    let start = nonneg(already_sent_gib);
    let end = start + size;
    // The paid part of the transfer starts where the allowance ends.
    let paid_from = start.max(allowance.free_gib).min(end);
    let mut tiers = Vec::new();
    let mut unpriced_gib = 0.0;
    match rate {
        None => unpriced_gib = end - paid_from,
        Some(EgressRate::Flat(p)) => {
            if end > paid_from {
                tiers.push(charge(1, 0.0, None, end - paid_from, nonneg(*p)));
            }
        }
        Some(EgressRate::Tiered(list)) if list.is_empty() => unpriced_gib = end - paid_from,
        Some(EgressRate::Tiered(list)) => {
            let mut lo = 0.0_f64;
            for (i, t) in list.iter().enumerate() {
                let last = i + 1 == list.len();
                // A bound that does not increase (rejected by the CRD, but input all the same)
                // gives an empty tier rather than a negative quantity.
                let hi = if last {
                    f64::INFINITY
                } else {
                    nonneg(t.up_to_gi_b).max(lo)
                };
                let qty = end.min(hi) - paid_from.max(lo);
                if qty > 0.0 {
                    let to = (!last).then_some(hi);
                    tiers.push(charge(i + 1, lo, to, qty, nonneg(t.per_gi_b)));
                }
                lo = hi;
            }
        }
    }
    let amount = tiers.iter().map(|t| t.amount).sum();
    EgressCharge {
        gib: size,
        allowance,
        tiers,
        unpriced_gib,
        amount,
    }
}

fn charge(tier: usize, from: f64, to: Option<f64>, gib: f64, per_gib: f64) -> TierCharge {
    TierCharge {
        tier,
        from_gib: from,
        to_gib: to,
        gib,
        per_gib,
        amount: gib * per_gib,
    }
}

/// Negative or NaN inputs count as 0: a quantity of traffic cannot be negative, and a NaN would
/// poison every sum.
fn nonneg(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 { 0.0 } else { x }
}
