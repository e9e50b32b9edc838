//! Currency conversion from a dated rate table.
//!
//! The built-in table holds **placeholder** rates: the compiled facts (shared/data, §4.5) found no
//! exchange rate, and the Bank of Canada says its published rates are indicative only. Real reports
//! must override them, with `--fx USD:CAD=RATE` (repeatable) on the CLI or with a ConfigMap holding
//! `rates: [{from, to, rate, asOf, source}]`. Every rate carries its date and source, and estimates
//! list the rates they used, so a reader can tell a placeholder from a real rate.
//!
//! Conversion goes through CAD, the report currency by default: a table only needs each currency's
//! rate to or from CAD. A direct pair, if one is given, is used first.

use serde::{Deserialize, Serialize};

use super::error::CostError;

/// The pivot currency of the table.
pub const PIVOT: &str = "CAD";

/// The date the built-in placeholder rates are labelled with: the day the facts were compiled.
pub const BUILTIN_AS_OF: &str = "2026-11-28";

/// Built-in rates: (from, to, rate). Placeholders, not market rates; see the module doc.
const BUILTIN: &[(&str, &str, f64)] = &[("USD", "CAD", 1.38), ("EUR", "CAD", 1.50)];

const BUILTIN_SOURCE: &str = "built-in PLACEHOLDER rate, not a market rate (no rate in the compiled facts); \
     override with --fx or the rate ConfigMap, e.g. from the Bank of Canada Valet API (indicative rates)";

/// One exchange rate: 1 `from` = `rate` `to`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub from: String,
    pub to: String,
    pub rate: f64,
    /// The date the rate applies to (absent for a `--fx` given without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    #[serde(default)]
    pub source: String,
    /// A built-in placeholder: a report that used it must say it is indicative.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub placeholder: bool,
}

impl Rate {
    /// How the rate is cited in a cost line's source: `1.38 USD→CAD (2026-11-28, placeholder)`.
    pub fn citation(&self) -> String {
        let mut s = format!("{} {}→{}", self.rate, self.from, self.to);
        let mut tags = Vec::new();
        if let Some(d) = &self.as_of {
            tags.push(d.clone());
        }
        if self.placeholder {
            tags.push("placeholder".to_string());
        } else if !self.source.is_empty() {
            tags.push(self.source.clone());
        }
        if !tags.is_empty() {
            s.push_str(&format!(" ({})", tags.join(", ")));
        }
        s
    }

    fn validate(self) -> Result<Self, CostError> {
        let from = currency_code(&self.from).map_err(CostError::FxTable)?;
        let to = currency_code(&self.to).map_err(CostError::FxTable)?;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(CostError::FxTable(format!(
                "rate {from}→{to} is {}; it must be a positive number",
                self.rate
            )));
        }
        Ok(Rate { from, to, ..self })
    }
}

/// A conversion and the rates it used (none when the currencies are the same).
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub factor: f64,
    pub rates: Vec<Rate>,
}

impl Conversion {
    /// ` × 1.38 USD→CAD (…)` to append to a source, or nothing when no rate was needed.
    pub fn citation(&self) -> String {
        self.rates
            .iter()
            // A rate used backwards (CAD→USD with a USD→CAD rate) is cited as stored: the reader
            // divides, as the code did.
            .map(|r| format!("; converted at {}", r.citation()))
            .collect()
    }
}

/// The rate table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FxTable {
    #[serde(default)]
    pub rates: Vec<Rate>,
}

impl FxTable {
    /// The built-in placeholder rates (see the module doc).
    pub fn builtin() -> Self {
        FxTable {
            rates: BUILTIN
                .iter()
                .map(|(from, to, rate)| Rate {
                    from: from.to_string(),
                    to: to.to_string(),
                    rate: *rate,
                    as_of: Some(BUILTIN_AS_OF.to_string()),
                    source: BUILTIN_SOURCE.to_string(),
                    placeholder: true,
                })
                .collect(),
        }
    }

    /// Lays rates over the table: a rate for the same pair (in either direction) replaces the old one.
    pub fn with_overrides(mut self, overrides: impl IntoIterator<Item = Rate>) -> Self {
        for r in overrides {
            self.rates.retain(|old| {
                !((old.from == r.from && old.to == r.to) || (old.from == r.to && old.to == r.from))
            });
            self.rates.push(r);
        }
        self
    }

    /// The rates of a ConfigMap-shaped YAML document: `rates: [{from, to, rate, asOf, source}]`
    /// (the value of the ConfigMap's data key).
    pub fn parse_config_map(yaml: &str) -> Result<Vec<Rate>, CostError> {
        let table: FxTable =
            serde_yaml::from_str(yaml).map_err(|e| CostError::FxTable(e.to_string()))?;
        table.rates.into_iter().map(Rate::validate).collect()
    }

    /// Currencies the table can convert between.
    pub fn currencies(&self) -> Vec<String> {
        let mut c: Vec<String> = std::iter::once(PIVOT.to_string())
            .chain(
                self.rates
                    .iter()
                    .flat_map(|r| [r.from.clone(), r.to.clone()]),
            )
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// A direct rate for the pair, or its inverse.
    fn direct(&self, from: &str, to: &str) -> Option<(f64, Rate)> {
        // The last matching rate wins, so that later overrides beat earlier entries.
        self.rates.iter().rev().find_map(|r| {
            if r.from == from && r.to == to {
                Some((r.rate, r.clone()))
            } else if r.from == to && r.to == from {
                Some((1.0 / r.rate, r.clone()))
            } else {
                None
            }
        })
    }

    /// The factor that turns an amount in `from` into `to`: direct, or through CAD.
    pub fn conversion(&self, from: &str, to: &str) -> Result<Conversion, CostError> {
        if from == to {
            return Ok(Conversion {
                factor: 1.0,
                rates: Vec::new(),
            });
        }
        if let Some((f, r)) = self.direct(from, to) {
            return Ok(Conversion {
                factor: f,
                rates: vec![r],
            });
        }
        let no_rate = || CostError::NoRate {
            from: from.to_string(),
            to: to.to_string(),
        };
        let (a, ra) = self.direct(from, PIVOT).ok_or_else(no_rate)?;
        let (b, rb) = self.direct(PIVOT, to).ok_or_else(no_rate)?;
        Ok(Conversion {
            factor: a * b,
            rates: vec![ra, rb],
        })
    }

    /// `amount` in `from`, expressed in `to`.
    pub fn convert(&self, amount: f64, from: &str, to: &str) -> Result<f64, CostError> {
        Ok(amount * self.conversion(from, to)?.factor)
    }
}

/// Upper-cases and checks an ISO 4217-shaped code (three ASCII letters).
fn currency_code(code: &str) -> Result<String, String> {
    let c = code.trim();
    if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) {
        Ok(c.to_ascii_uppercase())
    } else {
        Err(format!(
            "{c:?} is not a currency code (three letters, e.g. USD)"
        ))
    }
}

/// Parses one `--fx FROM:TO=RATE` value (e.g. `USD:CAD=1.38`). The rate is labelled as given on
/// the command line; it has no date unless the caller adds one.
pub fn parse_override(input: &str) -> Result<Rate, CostError> {
    let err = |reason: String| CostError::FxOverride {
        input: input.to_string(),
        reason,
    };
    let (pair, rate) = input
        .split_once('=')
        .ok_or_else(|| err("missing '=' before the rate".to_string()))?;
    let (from, to) = pair
        .split_once(':')
        .ok_or_else(|| err("missing ':' between the two currencies".to_string()))?;
    let from = currency_code(from).map_err(err)?;
    let to = currency_code(to).map_err(err)?;
    let rate_text = rate.trim();
    if rate_text.is_empty() {
        return Err(err("the rate is empty".to_string()));
    }
    let rate: f64 = rate_text
        .parse()
        .map_err(|_| err(format!("{rate_text:?} is not a number")))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(err(format!(
            "the rate must be a positive number, not {rate_text}"
        )));
    }
    if from == to {
        return Err(err(format!("{from} to itself needs no rate")));
    }
    Ok(Rate {
        from,
        to,
        rate,
        as_of: None,
        source: format!("--fx {}", input.trim()),
        placeholder: false,
    })
}
