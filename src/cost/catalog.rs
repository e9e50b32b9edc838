//! The built-in price catalog (`catalog.yaml`, embedded) and the effective price list of a cluster:
//! its own `spec.pricing` wins field by field, the catalog fills the gaps, and every price keeps
//! where it came from. A price that neither gives stays absent, so estimates can say it is unpriced
//! instead of counting it as free.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::error::CostError;
use crate::api::SovereignCluster;
use crate::api::cluster::{EgressTier, Pricing};

const EMBEDDED: &str = include_str!("catalog.yaml");

/// The StorageClass key that prices any class not listed by name.
pub const ANY_CLASS: &str = "*";

/// One catalog price, with its date and source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntry {
    pub value: f64,
    pub as_of: String,
    pub source: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogTiers {
    pub tiers: Vec<EgressTier>,
    pub as_of: String,
    pub source: String,
}

/// A provider's known prices. Unknown ones are simply not there.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderPrices {
    /// Currency of every price of the provider; required when any price is given.
    #[serde(default)]
    pub currency: Option<String>,
    /// What is known to be missing or approximate, for the reader of a report.
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub free_egress_gi_b: Option<CatalogEntry>,
    #[serde(default)]
    pub egress_per_gi_b: Option<CatalogEntry>,
    #[serde(default)]
    pub egress_tiers: Option<CatalogTiers>,
    #[serde(default)]
    pub storage_per_gi_b_month: BTreeMap<String, CatalogEntry>,
    #[serde(default)]
    pub vcpu_hour: Option<CatalogEntry>,
    #[serde(default)]
    pub memory_gi_b_hour: Option<CatalogEntry>,
    #[serde(default)]
    pub load_balancer_hour: Option<CatalogEntry>,
    #[serde(default)]
    pub control_plane_hour: Option<CatalogEntry>,
}

/// The whole catalog.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    /// The date the catalog was compiled.
    pub as_of: String,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderPrices>,
}

/// A price in effect, its currency and where it came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    pub value: f64,
    pub currency: String,
    pub source: String,
}

/// Egress pricing: flat per GiB, or tiers (cumulative within the month; the last applies beyond
/// its bound).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum EgressRate {
    Flat(f64),
    Tiered(Vec<EgressTier>),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressPrice {
    pub rate: EgressRate,
    pub currency: String,
    pub source: String,
}

/// The monthly free egress allowance, in GiB.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allowance {
    pub gib: f64,
    pub source: String,
}

/// The prices in effect for one cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PriceList {
    /// The cluster's name, or empty when the list was built without one.
    pub cluster: String,
    pub provider: Option<String>,
    pub egress: Option<EgressPrice>,
    pub free_egress: Option<Allowance>,
    /// By StorageClass name; [`ANY_CLASS`] prices any class not listed.
    pub storage_per_gib_month: BTreeMap<String, Price>,
    pub vcpu_hour: Option<Price>,
    pub memory_gib_hour: Option<Price>,
    pub load_balancer_hour: Option<Price>,
    pub control_plane_hour: Option<Price>,
    /// The catalog's notes on the provider (what is unknown or approximate).
    pub notes: Vec<String>,
}

impl PriceList {
    /// The storage price of a class: by name, else the any-class price.
    pub fn storage(&self, class: &str) -> Option<&Price> {
        self.storage_per_gib_month
            .get(class)
            .or_else(|| self.storage_per_gib_month.get(ANY_CLASS))
    }

    /// `SovereignCluster NAME` or `the cluster`, for messages.
    pub fn cluster_label(&self) -> String {
        if self.cluster.is_empty() {
            "the cluster".to_string()
        } else {
            format!("SovereignCluster {}", self.cluster)
        }
    }

    /// Why a price is missing, for an "unpriced: …" source.
    pub fn missing(&self, field: &str) -> String {
        let provider = match &self.provider {
            Some(p) => format!("provider {p}"),
            None => "no provider declared".to_string(),
        };
        format!(
            "unpriced: no {field} in {} spec.pricing or the built-in catalog ({provider})",
            self.cluster_label()
        )
    }
}

impl Catalog {
    /// Parses and checks a catalog (the embedded one or an override of the same shape).
    pub fn from_yaml(yaml: &str) -> Result<Self, CostError> {
        let c: Catalog =
            serde_yaml::from_str(yaml).map_err(|e| CostError::Catalog(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The embedded catalog. It is parsed once; a broken embedded file (caught by the tests) gives
    /// an empty catalog rather than a panic, so every price then shows as unpriced.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| Catalog::from_yaml(EMBEDDED).unwrap_or_default())
    }

    fn validate(&self) -> Result<(), CostError> {
        for (id, p) in &self.providers {
            let bad = |what: &str| CostError::Catalog(format!("provider {id}: {what}"));
            let entries = [
                ("freeEgressGiB", &p.free_egress_gi_b),
                ("egressPerGiB", &p.egress_per_gi_b),
                ("vcpuHour", &p.vcpu_hour),
                ("memoryGiBHour", &p.memory_gi_b_hour),
                ("loadBalancerHour", &p.load_balancer_hour),
                ("controlPlaneHour", &p.control_plane_hour),
            ];
            let named = entries
                .iter()
                .filter_map(|(n, e)| e.as_ref().map(|e| (n.to_string(), e)))
                .chain(
                    p.storage_per_gi_b_month
                        .iter()
                        .map(|(k, e)| (format!("storagePerGiBMonth.{k}"), e)),
                );
            let mut priced = p.egress_tiers.is_some();
            for (name, e) in named {
                if !(e.value.is_finite() && e.value >= 0.0) {
                    return Err(bad(&format!("{name} is {}", e.value)));
                }
                if e.source.trim().is_empty() || e.as_of.trim().is_empty() {
                    return Err(bad(&format!("{name} needs asOf and source")));
                }
                priced |= name != "freeEgressGiB";
            }
            if let Some(t) = &p.egress_tiers {
                check_tiers(&t.tiers).map_err(|e| bad(&e))?;
            }
            if priced && p.currency.is_none() {
                return Err(bad("prices without a currency"));
            }
        }
        Ok(())
    }

    /// The effective price list of a cluster: `declared` (its `spec.pricing`) wins field by field
    /// (egress counts as one field, flat or tiered, as the CRD says tiers override the flat
    /// price); the catalog entry of `provider` fills the gaps.
    pub fn effective_pricing(
        &self,
        cluster: &str,
        provider: Option<&str>,
        declared: Option<&Pricing>,
    ) -> PriceList {
        let spec_source = {
            let who = if cluster.is_empty() {
                "SovereignCluster spec.pricing".to_string()
            } else {
                format!("SovereignCluster {cluster} spec.pricing")
            };
            match declared.and_then(|d| d.source.as_deref()) {
                Some(s) if !s.trim().is_empty() => format!("{who} ({s})"),
                _ => who,
            }
        };
        let cat = provider.and_then(|p| self.providers.get(p));
        let cat_currency = cat.and_then(|c| c.currency.clone()).unwrap_or_default();
        let cat_source = |as_of: &str, source: &str| {
            if as_of == self.as_of {
                format!("built-in catalog {}: {source}", self.as_of)
            } else {
                format!(
                    "built-in catalog {} (price as of {as_of}): {source}",
                    self.as_of
                )
            }
        };
        let from_cat = |e: &CatalogEntry| Price {
            value: e.value,
            currency: cat_currency.clone(),
            source: cat_source(&e.as_of, &e.source),
        };
        let from_spec = |v: f64, d: &Pricing| Price {
            value: v,
            currency: d.currency.clone(),
            source: spec_source.clone(),
        };
        // Field by field: the declaration's value, else the catalog's.
        let pick = |d: Option<f64>, c: Option<&CatalogEntry>| match (d, declared) {
            (Some(v), Some(p)) => Some(from_spec(v, p)),
            _ => c.map(from_cat),
        };

        let declared_egress = declared.and_then(|d| {
            let rate = match (&d.egress_tiers, d.egress_per_gi_b) {
                (Some(t), _) if !t.is_empty() => EgressRate::Tiered(t.clone()),
                (_, Some(flat)) => EgressRate::Flat(flat),
                _ => return None,
            };
            Some(EgressPrice {
                rate,
                currency: d.currency.clone(),
                source: spec_source.clone(),
            })
        });
        let catalog_egress = cat.and_then(|c| {
            if let Some(t) = &c.egress_tiers {
                Some(EgressPrice {
                    rate: EgressRate::Tiered(t.tiers.clone()),
                    currency: cat_currency.clone(),
                    source: cat_source(&t.as_of, &t.source),
                })
            } else {
                c.egress_per_gi_b.as_ref().map(|e| EgressPrice {
                    rate: EgressRate::Flat(e.value),
                    currency: cat_currency.clone(),
                    source: cat_source(&e.as_of, &e.source),
                })
            }
        });
        let free_egress = match declared.and_then(|d| d.free_egress_gi_b) {
            Some(gib) => Some(Allowance {
                gib,
                source: spec_source.clone(),
            }),
            None => cat
                .and_then(|c| c.free_egress_gi_b.as_ref())
                .map(|e| Allowance {
                    gib: e.value,
                    source: cat_source(&e.as_of, &e.source),
                }),
        };

        let mut storage: BTreeMap<String, Price> = cat
            .map(|c| {
                c.storage_per_gi_b_month
                    .iter()
                    .map(|(k, e)| (k.clone(), from_cat(e)))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(d) = declared {
            for (class, v) in &d.storage_per_gi_b_month {
                storage.insert(class.clone(), from_spec(*v, d));
            }
        }

        PriceList {
            cluster: cluster.to_string(),
            provider: provider.map(str::to_string),
            egress: declared_egress.or(catalog_egress),
            free_egress,
            storage_per_gib_month: storage,
            vcpu_hour: pick(
                declared.and_then(|d| d.vcpu_hour),
                cat.and_then(|c| c.vcpu_hour.as_ref()),
            ),
            memory_gib_hour: pick(
                declared.and_then(|d| d.memory_gi_b_hour),
                cat.and_then(|c| c.memory_gi_b_hour.as_ref()),
            ),
            load_balancer_hour: pick(
                declared.and_then(|d| d.load_balancer_hour),
                cat.and_then(|c| c.load_balancer_hour.as_ref()),
            ),
            control_plane_hour: pick(
                declared.and_then(|d| d.control_plane_hour),
                cat.and_then(|c| c.control_plane_hour.as_ref()),
            ),
            notes: cat.map(|c| c.notes.clone()).unwrap_or_default(),
        }
    }
}

/// Tiers must have finite, non-negative prices and strictly increasing bounds (as the CRD's rule
/// says); a list that breaks this would price some bytes twice or not at all.
pub fn check_tiers(tiers: &[EgressTier]) -> Result<(), String> {
    if tiers.is_empty() {
        return Err("egressTiers is empty".to_string());
    }
    let mut prev = 0.0_f64;
    for (i, t) in tiers.iter().enumerate() {
        if !(t.per_gi_b.is_finite() && t.per_gi_b >= 0.0) {
            return Err(format!("egress tier {} price is {}", i + 1, t.per_gi_b));
        }
        let increases = if i == 0 {
            t.up_to_gi_b >= 0.0
        } else {
            t.up_to_gi_b > prev
        };
        if !(t.up_to_gi_b.is_finite() && increases) {
            return Err(format!(
                "egress tier {} bound {} GiB does not increase",
                i + 1,
                t.up_to_gi_b
            ));
        }
        prev = t.up_to_gi_b;
    }
    Ok(())
}

/// The effective prices from the built-in catalog, without a cluster name (sources then read
/// "SovereignCluster spec.pricing").
pub fn effective_pricing(provider: Option<&str>, declared: Option<&Pricing>) -> PriceList {
    Catalog::builtin().effective_pricing("", provider, declared)
}

/// The effective prices of a `SovereignCluster`: the provider it was observed to run on (status),
/// else the one it declares, and its `spec.pricing`.
pub fn cluster_pricing(cluster: &SovereignCluster) -> PriceList {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let provider = cluster
        .status
        .as_ref()
        .and_then(|s| s.provider.as_deref())
        .or(cluster.spec.provider.as_deref());
    Catalog::builtin().effective_pricing(name, provider, cluster.spec.pricing.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses_and_validates() {
        let c = Catalog::from_yaml(EMBEDDED).expect("embedded catalog");
        for id in [
            "aws",
            "azure",
            "gcp",
            "oci",
            "ibm",
            "digitalocean",
            "ovhcloud",
            "micrologic",
        ] {
            assert!(c.providers.contains_key(id), "{id} missing");
        }
        assert_eq!(c.as_of, "2026-11-28");
        // Unknown stays absent, never 0.
        let ovh = &c.providers["ovhcloud"];
        assert!(ovh.egress_tiers.is_none() && ovh.egress_per_gi_b.is_none());
        assert!(ovh.vcpu_hour.is_none() && ovh.storage_per_gi_b_month.is_empty());
    }

    #[test]
    fn catalog_rejects_prices_without_currency_or_source_and_bad_tiers() {
        let no_currency =
            "asOf: x\nproviders:\n  p:\n    vcpuHour: {value: 1, asOf: x, source: s}\n";
        assert!(Catalog::from_yaml(no_currency).is_err());
        let no_source = "asOf: x\nproviders:\n  p:\n    currency: USD\n    vcpuHour: {value: 1, asOf: x, source: ''}\n";
        assert!(Catalog::from_yaml(no_source).is_err());
        let negative = "asOf: x\nproviders:\n  p:\n    currency: USD\n    vcpuHour: {value: -1, asOf: x, source: s}\n";
        assert!(Catalog::from_yaml(negative).is_err());
        let bad_tiers = "asOf: x\nproviders:\n  p:\n    currency: USD\n    egressTiers: {asOf: x, source: s, tiers: [{upToGiB: 10, perGiB: 1}, {upToGiB: 5, perGiB: 1}]}\n";
        assert!(Catalog::from_yaml(bad_tiers).is_err());
        assert!(Catalog::from_yaml("providers: [").is_err());
    }
}
