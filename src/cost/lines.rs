//! Priced line items in the report currency, shared by the estimate and the ledger: a line is
//! `quantity × unit price` converted at the table's rate, or an unpriced line (amount 0, the reason
//! in `source`) when the price or the rate is unknown.

use serde::{Deserialize, Serialize};

use super::catalog::Price;
use super::fx::{FxTable, Rate};
use crate::api::workload::CostItem;

/// Prefix of the `source` of a line whose price is unknown.
pub const UNPRICED: &str = "unpriced: ";

/// A list of line items and their total (full precision; rounded only at presentation).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Section {
    pub total: f64,
    pub items: Vec<CostItem>,
}

impl Section {
    /// Whether a line is unpriced.
    pub fn is_unpriced(item: &CostItem) -> bool {
        item.source.starts_with(UNPRICED)
    }

    /// The names of the unpriced lines.
    pub fn unpriced(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| Self::is_unpriced(i))
            .map(|i| i.name.clone())
            .collect()
    }

    /// The same section with every amount, and the total, rounded to cents. The total is the
    /// rounded full-precision sum, not the sum of rounded lines, so the lines may differ from it by
    /// a cent or so; unit prices are kept as they are (they are often fractions of a cent).
    pub fn rounded(&self) -> Section {
        Section {
            total: super::money::round_cents(self.total),
            items: self
                .items
                .iter()
                .map(|i| CostItem {
                    amount: super::money::round_cents(i.amount),
                    ..i.clone()
                })
                .collect(),
        }
    }
}

/// Builds lines in one report currency and remembers the rates used.
pub(crate) struct LineBuilder<'a> {
    pub currency: &'a str,
    pub fx: &'a FxTable,
    pub rates: Vec<Rate>,
}

impl<'a> LineBuilder<'a> {
    pub fn new(currency: &'a str, fx: &'a FxTable) -> Self {
        LineBuilder {
            currency,
            fx,
            rates: Vec::new(),
        }
    }

    /// A line for `quantity` `unit` at `price` (in its own currency), or an unpriced line with
    /// `missing` as the reason. A zero quantity gives no line: nothing is used, nothing to say.
    pub fn line(
        &mut self,
        section: &mut Section,
        name: String,
        quantity: f64,
        unit: &str,
        price: Option<(f64, &str, &str)>,
        missing: impl FnOnce() -> String,
    ) {
        if quantity <= 0.0 || quantity.is_nan() {
            return;
        }
        let item = match price {
            None => unpriced(name, quantity, unit, missing()),
            // A negative or NaN price (the CRD forbids it, but input is input) would make a line
            // subtract from the total or poison it: the line is unpriced instead.
            Some((value, _, source)) if !(value.is_finite() && value >= 0.0) => unpriced(
                name,
                quantity,
                unit,
                format!("invalid price {value} ({source})"),
            ),
            Some((value, currency, source)) => match self.fx.conversion(currency, self.currency) {
                Ok(conv) => {
                    let unit_price = value * conv.factor;
                    let citation = conv.citation();
                    for r in conv.rates {
                        if !self.rates.contains(&r) {
                            self.rates.push(r);
                        }
                    }
                    CostItem {
                        name,
                        quantity,
                        unit: unit.to_string(),
                        unit_price,
                        amount: quantity * unit_price,
                        source: format!("{source}{citation}"),
                    }
                }
                Err(e) => unpriced(name, quantity, unit, format!("{UNPRICED}{e} ({source})")),
            },
        };
        section.total += item.amount;
        section.items.push(item);
    }

    /// [`Self::line`] with a catalog price.
    pub fn priced(
        &mut self,
        section: &mut Section,
        name: String,
        quantity: f64,
        unit: &str,
        price: Option<&Price>,
        missing: impl FnOnce() -> String,
    ) {
        let p = price.map(|p| (p.value, p.currency.as_str(), p.source.as_str()));
        self.line(section, name, quantity, unit, p, missing);
    }
}

fn unpriced(name: String, quantity: f64, unit: &str, reason: String) -> CostItem {
    let source = if reason.starts_with(UNPRICED) {
        reason
    } else {
        format!("{UNPRICED}{reason}")
    };
    CostItem {
        name,
        quantity,
        unit: unit.to_string(),
        unit_price: 0.0,
        amount: 0.0,
        source,
    }
}
