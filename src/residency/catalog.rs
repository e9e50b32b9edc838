//! The catalog of providers, regions, registries and cloud endpoints: embedded in the binary, and
//! overridable from a ConfigMap (same YAML shape).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::api::Location;

const EMBEDDED: &str = include_str!("catalog.yaml");

/// The whole catalog as written in YAML.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct CatalogFile {
    /// The date the facts were compiled.
    #[serde(default)]
    pub as_of: String,
    #[serde(default)]
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub registries: Vec<RegistryRule>,
    #[serde(default)]
    pub endpoints: Vec<EndpointRule>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub parent: Parent,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub confidence: String,
    #[serde(default)]
    pub detect: Detect,
    /// Region code as it appears in node labels → where it is.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Parent {
    pub name: String,
    /// ISO 3166-1 alpha-2 country of the parent company: the jurisdiction.
    pub country: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Detect {
    #[serde(default)]
    pub provider_id_schemes: Vec<String>,
    #[serde(default)]
    pub node_label_prefixes: Vec<String>,
    #[serde(default)]
    pub api_server_hosts: Vec<String>,
    #[serde(default)]
    pub provisioners: Vec<String>,
    #[serde(default)]
    pub storage_class_names: Vec<String>,
    #[serde(default)]
    pub service_annotation_prefixes: Vec<String>,
    #[serde(default)]
    pub identity_annotations: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RegionEntry {
    pub country: String,
    #[serde(default)]
    pub province: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub confidence: String,
}

impl RegionEntry {
    pub fn location(&self) -> Location {
        Location {
            country: self.country.clone(),
            province: self.province.clone(),
            city: self.city.clone(),
        }
    }
}

/// A registry host pattern: either a provider's (jurisdiction and region follow from it) or an
/// operator's with its jurisdiction.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RegistryRule {
    pub pattern: String,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub jurisdiction: Option<String>,
}

/// A cloud-service endpoint host pattern.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRule {
    pub pattern: String,
    pub provider: String,
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the residency catalog does not parse: {0}")]
    Parse(String),
    #[error("the residency catalog has a bad pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("the residency catalog's {what} names provider {provider:?}, which it does not define")]
    UnknownProvider { what: String, provider: String },
}

/// The catalog, with its patterns compiled.
#[derive(Debug)]
pub struct Catalog {
    pub file: CatalogFile,
    registries: Vec<(Regex, RegistryRule)>,
    endpoints: Vec<(Regex, EndpointRule)>,
    api_hosts: Vec<(Regex, String)>,
}

/// What a registry host or endpoint host was recognised as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMatch {
    pub provider: Option<String>,
    /// The operator's name (the provider's, or the registry operator's).
    pub operator: String,
    pub jurisdiction: String,
    pub region: Option<String>,
    pub kind: String,
}

impl Catalog {
    /// The catalog built into the binary.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| match Catalog::from_yaml(EMBEDDED) {
            Ok(c) => c,
            // The embedded catalog is checked by a unit test; an empty catalog (everything Unknown)
            // is the safe degradation should that ever be bypassed.
            Err(e) => {
                tracing::error!(error = %e, "the embedded residency catalog is invalid");
                Catalog::build(CatalogFile::default()).unwrap_or_else(|_| Catalog {
                    file: CatalogFile::default(),
                    registries: vec![],
                    endpoints: vec![],
                    api_hosts: vec![],
                })
            }
        })
    }

    pub fn from_yaml(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile =
            serde_yaml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        Catalog::build(file)
    }

    /// The embedded catalog with an override (a ConfigMap's `catalog.yaml`) laid over it: providers
    /// with the same id are replaced, new ones added; override registries and endpoints are tried first.
    pub fn with_override(text: &str) -> Result<Catalog, CatalogError> {
        let over: CatalogFile =
            serde_yaml::from_str(text).map_err(|e| CatalogError::Parse(e.to_string()))?;
        let mut file = Catalog::embedded().file.clone();
        for p in over.providers {
            match file.providers.iter_mut().find(|q| q.id == p.id) {
                Some(q) => *q = p,
                None => file.providers.push(p),
            }
        }
        file.registries = over.registries.into_iter().chain(file.registries).collect();
        file.endpoints = over.endpoints.into_iter().chain(file.endpoints).collect();
        if !over.as_of.is_empty() {
            file.as_of = format!("{} (override {})", file.as_of, over.as_of);
        }
        Catalog::build(file)
    }

    fn build(file: CatalogFile) -> Result<Catalog, CatalogError> {
        let compile = |p: &str| {
            Regex::new(p).map_err(|source| CatalogError::Pattern {
                pattern: p.to_string(),
                source,
            })
        };
        let known = |id: &str, what: &str| {
            if file.providers.iter().any(|p| p.id == id) {
                Ok(())
            } else {
                Err(CatalogError::UnknownProvider {
                    what: what.to_string(),
                    provider: id.to_string(),
                })
            }
        };
        let mut registries = Vec::new();
        for r in &file.registries {
            if let Some(p) = &r.provider {
                known(p, &format!("registry {}", r.pattern))?;
            }
            registries.push((compile(&r.pattern)?, r.clone()));
        }
        let mut endpoints = Vec::new();
        for e in &file.endpoints {
            known(&e.provider, &format!("endpoint {}", e.pattern))?;
            endpoints.push((compile(&e.pattern)?, e.clone()));
        }
        let mut api_hosts = Vec::new();
        for p in &file.providers {
            for h in &p.detect.api_server_hosts {
                api_hosts.push((compile(h)?, p.id.clone()));
            }
        }
        Ok(Catalog {
            file,
            registries,
            endpoints,
            api_hosts,
        })
    }

    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.file.providers.iter().find(|p| p.id == id)
    }

    /// The provider a providerID scheme names (`openstack` names none: it is many clouds).
    pub fn provider_for_scheme(&self, scheme: &str) -> Option<&Provider> {
        self.file
            .providers
            .iter()
            .find(|p| p.detect.provider_id_schemes.iter().any(|s| s == scheme))
    }

    pub fn provider_for_label(&self, key: &str) -> Option<&Provider> {
        self.file.providers.iter().find(|p| {
            p.detect
                .node_label_prefixes
                .iter()
                .any(|pre| key.starts_with(pre.as_str()))
        })
    }

    pub fn provider_for_provisioner(&self, provisioner: &str) -> Option<&Provider> {
        self.file
            .providers
            .iter()
            .find(|p| p.detect.provisioners.iter().any(|s| s == provisioner))
    }

    pub fn provider_for_storage_class(&self, name: &str) -> Option<&Provider> {
        self.file
            .providers
            .iter()
            .find(|p| p.detect.storage_class_names.iter().any(|s| s == name))
    }

    pub fn provider_for_service_annotation(&self, key: &str) -> Option<&Provider> {
        self.file.providers.iter().find(|p| {
            p.detect
                .service_annotation_prefixes
                .iter()
                .any(|pre| key.starts_with(pre.as_str()))
        })
    }

    pub fn provider_for_identity_annotation(&self, key: &str) -> Option<&Provider> {
        self.file
            .providers
            .iter()
            .find(|p| p.detect.identity_annotations.iter().any(|s| s == key))
    }

    pub fn provider_for_api_host(&self, host: &str) -> Option<&Provider> {
        self.api_hosts
            .iter()
            .find(|(re, _)| re.is_match(host))
            .and_then(|(_, id)| self.provider(id))
    }

    /// Where a provider's region is; zones (`us-east-1a`, `us-central1-b`) are accepted too. Labels
    /// are not consistent in case (OVHcloud shows `BHS5`, its API `bhs5`): matched without it.
    pub fn region(&self, provider: &str, region: &str) -> Option<(&str, &RegionEntry)> {
        let p = self.provider(provider)?;
        let find = |code: &str| {
            p.regions
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(code))
                .map(|(k, r)| (k.as_str(), r))
        };
        find(region).or_else(|| region_of_zone(region).and_then(find))
    }

    /// Finds a region code in any provider when the provider is not known (labels alone).
    pub fn region_anywhere(&self, region: &str) -> Vec<(&Provider, &RegionEntry)> {
        self.file
            .providers
            .iter()
            .filter_map(|p| {
                p.regions
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(region))
                    .map(|(_, r)| (p, r))
            })
            .collect()
    }

    pub fn registry(&self, host: &str) -> Option<HostMatch> {
        let (re, rule) = self.registries.iter().find(|(re, _)| re.is_match(host))?;
        let captured = re
            .captures(host)
            .and_then(|c| c.name("region"))
            .map(|m| m.as_str().to_string());
        let region = rule.region.clone().or(captured);
        match &rule.provider {
            Some(id) => {
                let p = self.provider(id)?;
                Some(HostMatch {
                    provider: Some(p.id.clone()),
                    operator: p.parent.name.clone(),
                    jurisdiction: p.parent.country.clone(),
                    region,
                    kind: "registry".into(),
                })
            }
            None => Some(HostMatch {
                provider: None,
                operator: rule.operator.clone().unwrap_or_else(|| host.to_string()),
                jurisdiction: rule.jurisdiction.clone().unwrap_or_default(),
                region,
                kind: "registry".into(),
            }),
        }
    }

    pub fn endpoint(&self, host: &str) -> Option<HostMatch> {
        let (re, rule) = self.endpoints.iter().find(|(re, _)| re.is_match(host))?;
        let p = self.provider(&rule.provider)?;
        Some(HostMatch {
            provider: Some(p.id.clone()),
            operator: p.parent.name.clone(),
            jurisdiction: p.parent.country.clone(),
            region: re
                .captures(host)
                .and_then(|c| c.name("region"))
                .map(|m| m.as_str().to_string()),
            kind: rule.kind.clone(),
        })
    }
}

/// `us-east-1a` → `us-east-1` (AWS), `us-central1-b` → `us-central1` (GCE), `eastus-2` → `eastus`
/// (AKS zonal pools).
pub fn region_of_zone(zone: &str) -> Option<&str> {
    let bytes = zone.as_bytes();
    let n = bytes.len();
    if n < 3 {
        return None;
    }
    let (last, before) = (bytes[n - 1], bytes[n - 2]);
    if last.is_ascii_lowercase() && before.is_ascii_digit() {
        return Some(&zone[..n - 1]);
    }
    let (head, tail) = zone.rsplit_once('-')?;
    let letter = tail.len() == 1 && tail.bytes().all(|b| b.is_ascii_lowercase());
    let number = !tail.is_empty() && tail.len() <= 2 && tail.bytes().all(|b| b.is_ascii_digit());
    if letter && head.ends_with(|c: char| c.is_ascii_digit()) {
        return Some(head);
    }
    if number && head.ends_with(|c: char| c.is_ascii_lowercase()) && !head.contains('-') {
        return Some(head);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_is_valid_and_dated() {
        let c = Catalog::from_yaml(EMBEDDED).expect("embedded catalog");
        assert_eq!(c.file.as_of, "2026-11-28");
        for p in &c.file.providers {
            assert!(p.parent.country.len() == 2, "{} has a country code", p.id);
            assert!(!p.source.is_empty(), "{} has a source", p.id);
        }
        assert_eq!(
            c.provider("aws").map(|p| p.parent.country.as_str()),
            Some("US")
        );
        assert_eq!(
            c.provider("ovhcloud").map(|p| p.parent.country.as_str()),
            Some("FR")
        );
    }

    #[test]
    fn zones_map_to_regions() {
        assert_eq!(region_of_zone("us-east-1a"), Some("us-east-1"));
        assert_eq!(region_of_zone("ca-central-1d"), Some("ca-central-1"));
        assert_eq!(region_of_zone("us-central1-b"), Some("us-central1"));
        assert_eq!(
            region_of_zone("northamerica-northeast1-a"),
            Some("northamerica-northeast1")
        );
        assert_eq!(region_of_zone("eastus-2"), Some("eastus"));
        assert_eq!(region_of_zone("bhs5"), None);
        let c = Catalog::embedded();
        assert_eq!(
            c.region("ovhcloud", "BHS5").map(|(k, _)| k),
            Some("bhs5"),
            "OVHcloud labels are upper case"
        );
    }

    #[test]
    fn registries_and_endpoints_are_recognised() {
        let c = Catalog::embedded();
        let ecr = c
            .registry("123456789012.dkr.ecr.us-east-1.amazonaws.com")
            .expect("ecr");
        assert_eq!(
            (
                ecr.provider.as_deref(),
                ecr.jurisdiction.as_str(),
                ecr.region.as_deref()
            ),
            (Some("aws"), "US", Some("us-east-1"))
        );
        assert_eq!(
            c.registry("docker.io").map(|m| m.jurisdiction),
            Some("US".into())
        );
        assert!(c.registry("registry.sante.gouv.qc.ca").is_none());
        let s3 = c
            .endpoint("dossiers.s3.us-east-1.amazonaws.com")
            .expect("s3");
        assert_eq!(
            (s3.provider.as_deref(), s3.region.as_deref()),
            (Some("aws"), Some("us-east-1"))
        );
        assert!(c.endpoint("api.sante.gouv.qc.ca").is_none());
    }

    #[test]
    fn an_override_replaces_and_adds() {
        let c = Catalog::with_override(
            "asOf: '2026-12-01'\nproviders:\n- id: ovhcloud\n  name: OVHcloud Canada\n  parent: {name: OVH Canada, country: CA}\n  source: contract 2026-12\n  regions: {bhs5: {country: CA, province: QC, city: Beauharnois}}\nregistries:\n- {pattern: '^registry\\.sante\\.gouv\\.qc\\.ca$', operator: MSSS, jurisdiction: CA}\n",
        )
        .expect("override");
        assert_eq!(
            c.provider("ovhcloud").map(|p| p.parent.country.as_str()),
            Some("CA")
        );
        assert!(c.provider("aws").is_some());
        assert_eq!(
            c.registry("registry.sante.gouv.qc.ca")
                .map(|m| m.jurisdiction),
            Some("CA".into())
        );
        assert!(Catalog::with_override("endpoints: [{pattern: 'x', provider: nope}]").is_err());
        assert!(Catalog::with_override("registries: [{pattern: '('}]").is_err());
    }
}
