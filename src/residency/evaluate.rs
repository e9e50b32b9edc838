//! Judging a cluster's objects against a `ResidencyPolicy`: where its compute and volumes are, under
//! whose law, which registries its images come from and which cloud endpoints its configuration names.
//! Every conclusion is a finding with its evidence; `Unknown` is never reported as compliant.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use regex::Regex;

use super::catalog::{Catalog, Provider, region_of_zone};
use super::inventory::Inventory;
use crate::api::cluster::SovereignClusterSpec;
use crate::api::policy::ResidencyPolicySpec;
use crate::api::{Finding, Location, Severity, Verdict};

pub const REGION_LABELS: [&str; 2] = [
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
pub const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
const AKS_CLUSTER_LABEL: &str = "kubernetes.azure.com/cluster";

/// The result of judging a cluster (or a workload's objects) against a policy.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Where the compute is (ISO 3166-2 codes, comma-separated when mixed).
    pub location: Option<String>,
    /// Under whose law (comma-separated when mixed).
    pub jurisdiction: Option<String>,
    pub provider: Option<String>,
    pub region: Option<String>,
    /// Whether the location and jurisdiction rest on the SovereignCluster's declaration.
    pub declared: bool,
    pub findings: Vec<Finding>,
}

/// A node pool: nodes with the same provider and region.
type PoolKey = (Option<String>, Option<String>);

/// Where one node is, and how we know.
#[derive(Clone, Debug)]
struct Placement<'c> {
    provider: Option<&'c Provider>,
    provider_evidence: String,
    region: Option<String>,
    region_evidence: String,
    location: Option<Location>,
}

struct Judge<'a> {
    catalog: &'a Catalog,
    policy: &'a ResidencyPolicySpec,
    findings: Vec<Finding>,
    unknown: bool,
}

impl Judge<'_> {
    fn finding(
        &mut self,
        object: &str,
        field: &str,
        evidence: &str,
        rule: &str,
        severity: Severity,
        remediation: &str,
    ) {
        self.findings.push(Finding {
            object: object.to_string(),
            field: field.to_string(),
            evidence: evidence.to_string(),
            rule: rule.to_string(),
            severity,
            remediation: remediation.to_string(),
        });
    }

    fn location_allowed(&self, loc: &Location) -> Option<bool> {
        let code = loc.code();
        let mut needs_province = false;
        for allowed in &self.policy.allowed_locations {
            if code == *allowed || code.starts_with(&format!("{allowed}-")) {
                return Some(true);
            }
            if allowed.starts_with(&format!("{}-", loc.country)) && loc.province.is_none() {
                needs_province = true;
            }
        }
        if needs_province { None } else { Some(false) }
    }

    fn jurisdiction_allowed(&self, j: &str) -> bool {
        self.policy.allow_foreign_controlled_providers
            || self.policy.allowed_jurisdictions.iter().any(|a| a == j)
    }

    /// Judges one place where something lives (compute, a volume, a registry, an endpoint).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        what: &str,
        object: &str,
        field: &str,
        evidence: &str,
        location: Option<&Location>,
        jurisdiction: Option<(&str, &str)>,
        remediation: &str,
    ) {
        match location.map(|l| (l, self.location_allowed(l))) {
            Some((l, Some(false))) => self.finding(
                object,
                field,
                evidence,
                &format!(
                    "{what} must be located in {}",
                    self.policy.allowed_locations.join(" or ")
                ),
                Severity::Error,
                &format!(
                    "{what} is in {}{}; {remediation}",
                    l.code(),
                    l.city
                        .as_ref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
            ),
            Some((l, None)) => {
                self.unknown = true;
                self.finding(
                    object,
                    field,
                    evidence,
                    &format!(
                        "{what} must be located in {}",
                        self.policy.allowed_locations.join(" or ")
                    ),
                    Severity::Warning,
                    &format!(
                        "only the country ({}) is known; declare or label the province",
                        l.country
                    ),
                );
            }
            Some((_, Some(true))) => {}
            None => {
                self.unknown = true;
                self.finding(
                    object,
                    field,
                    evidence,
                    &format!("{what} must have a known location"),
                    Severity::Warning,
                    "nothing shows where this is; label the nodes with topology.kubernetes.io/region or declare the location in the SovereignCluster",
                );
            }
        }
        if let Some((j, operator)) = jurisdiction
            && !self.jurisdiction_allowed(j)
        {
            let cloud_act = if j == "US" {
                " (US CLOUD Act: reachable by US authorities wherever the data sits)"
            } else {
                ""
            };
            self.finding(
                object,
                field,
                evidence,
                &format!(
                    "{what} must be operated under {} jurisdiction",
                    self.policy.allowed_jurisdictions.join(" or ")
                ),
                Severity::Error,
                &format!("{operator} is a {j} company{cloud_act}; {remediation}"),
            );
        }
    }
}

/// `Kind/namespace/name` of a typed object, as findings name it.
fn obj(kind: &str, meta: &ObjectMeta) -> String {
    format!(
        "{kind}/{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn label<'n>(node: &'n Node, key: &str) -> Option<&'n String> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// Judges `inv` against `policy`. `declared` is the cluster's SovereignCluster spec, if any.
pub fn evaluate(
    inv: &Inventory,
    declared: Option<&SovereignClusterSpec>,
    policy: &ResidencyPolicySpec,
    catalog: &Catalog,
) -> Evaluation {
    let mut judge = Judge {
        catalog,
        policy,
        findings: Vec::new(),
        unknown: false,
    };

    // Cluster-wide provider hints: the API server host, storage, load balancers.
    let mut hints: Vec<(&Provider, String)> = Vec::new();
    if let Some(host) = &inv.api_server_host
        && let Some(p) = catalog.provider_for_api_host(host)
    {
        hints.push((p, format!("API server host {host}")));
    }
    for sc in &inv.storage_classes {
        let name = sc.metadata.name.clone().unwrap_or_default();
        if let Some(p) = catalog
            .provider_for_provisioner(&sc.provisioner)
            .or_else(|| catalog.provider_for_storage_class(&name))
        {
            hints.push((
                p,
                format!("StorageClass {name} (provisioner {})", sc.provisioner),
            ));
        }
    }

    // Compute: where each node is.
    let placements: Vec<(String, Placement)> = inv
        .nodes
        .iter()
        .map(|n| {
            (
                n.metadata.name.clone().unwrap_or_default(),
                place_node(n, catalog, &hints),
            )
        })
        .collect();
    let observed_any = placements
        .iter()
        .any(|(_, p)| p.provider.is_some() || p.location.is_some());

    let mut locations = BTreeSet::new();
    let mut jurisdictions = BTreeSet::new();
    let mut providers = BTreeSet::new();
    let mut regions = BTreeSet::new();
    let mut declared_used = false;

    if observed_any {
        // One finding per node pool (same provider and region), not per node.
        let mut groups: BTreeMap<PoolKey, Vec<(String, Placement)>> = BTreeMap::new();
        for (name, p) in placements {
            groups
                .entry((p.provider.map(|p| p.id.clone()), p.region.clone()))
                .or_default()
                .push((name, p));
        }
        for ((provider, region), nodes) in &groups {
            let (first, p) = &nodes[0];
            let object = if nodes.len() == 1 {
                format!("Node/{first}")
            } else {
                format!("Node/{first} (and {} more like it)", nodes.len() - 1)
            };
            let evidence = [p.provider_evidence.as_str(), p.region_evidence.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            if let Some(l) = &p.location {
                locations.insert(l.code());
            }
            if let Some(id) = provider {
                providers.insert(id.clone());
            }
            if let Some(r) = region {
                regions.insert(r.clone());
            }
            let jurisdiction = p
                .provider
                .map(|pr| (pr.parent.country.clone(), pr.parent.name.clone()));
            if let Some((j, _)) = &jurisdiction {
                jurisdictions.insert(j.clone());
            } else {
                judge.unknown = true;
                judge.finding(&object, "spec.providerID", if evidence.is_empty() { "no provider signal" } else { &evidence }, "compute must have a known operator", Severity::Warning, "the provider cannot be told from the node; declare provider and jurisdiction in the SovereignCluster");
            }
            judge.place(
                "compute",
                &object,
                "metadata.labels",
                &evidence,
                p.location.as_ref(),
                jurisdiction.as_ref().map(|(j, n)| (j.as_str(), n.as_str())),
                "run this node pool in an allowed place, or move the workload off it",
            );
        }
    }

    // The declaration: the fallback when nothing is observed, and checked against what is.
    if let Some(d) = declared {
        let declared_loc = d.location.as_ref();
        let declared_j = d.jurisdiction.as_deref();
        if observed_any {
            let mut contradict = |field: &str, said: &str, seen: &BTreeSet<String>| {
                if !seen.is_empty() && !seen.contains(said) {
                    judge.unknown = true;
                    judge.finding(
                        "SovereignCluster",
                        field,
                        &format!("declared {said}, observed {}", seen.iter().cloned().collect::<Vec<_>>().join(", ")),
                        "declared facts must match what the cluster shows",
                        Severity::Warning,
                        &format!("correct {field} in the SovereignCluster, or find out why the nodes say otherwise"),
                    );
                }
            };
            if let Some(p) = &d.provider {
                contradict("spec.provider", p, &providers);
            }
            if let Some(r) = &d.region {
                contradict("spec.region", r, &regions);
            }
            if let Some(l) = declared_loc {
                contradict("spec.location", &l.code(), &locations);
            }
            if let Some(j) = declared_j {
                contradict("spec.jurisdiction", j, &jurisdictions);
            }
        } else if let (Some(p), Some(l), Some(j)) = (&d.provider, declared_loc, declared_j) {
            declared_used = true;
            providers.insert(p.clone());
            locations.insert(l.code());
            jurisdictions.insert(j.to_string());
            if let Some(r) = &d.region {
                regions.insert(r.clone());
            }
            let operator = catalog
                .provider(p)
                .map(|x| x.parent.name.clone())
                .unwrap_or_else(|| p.clone());
            judge.finding(
                "SovereignCluster",
                "spec",
                "declared",
                "no provider signal on the nodes: the verdict rests on the declaration",
                Severity::Info,
                "keep the declaration accurate; it is what this verdict is based on",
            );
            judge.place(
                "compute",
                "SovereignCluster",
                "spec.location",
                "declared",
                Some(l),
                Some((j, &operator)),
                "migrate to a cluster in an allowed place",
            );
        }
    }
    if !observed_any && !declared_used {
        judge.unknown = true;
        judge.finding(
            "Cluster",
            "",
            if inv.nodes.is_empty() { "no nodes visible" } else { "no provider signal on any node" },
            "the cluster's location and operator must be known",
            Severity::Warning,
            "declare provider, location and jurisdiction in the SovereignCluster (self-managed and Québec-hosted clusters often show no provider signal)",
        );
    }

    judge_volumes(&mut judge, inv);
    judge_images(&mut judge, inv);
    judge_endpoints(&mut judge, inv);
    judge_identities(&mut judge, inv);

    let verdict = if judge.findings.iter().any(|f| f.severity == Severity::Error) {
        Verdict::NonCompliant
    } else if judge.unknown {
        Verdict::Unknown
    } else {
        Verdict::Compliant
    };
    let mut findings = judge.findings;
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let join =
        |s: BTreeSet<String>| (!s.is_empty()).then(|| s.into_iter().collect::<Vec<_>>().join(","));
    Evaluation {
        verdict,
        location: join(locations),
        jurisdiction: join(jurisdictions),
        provider: join(providers),
        region: join(regions),
        declared: declared_used,
        findings,
    }
}

fn place_node<'c>(
    n: &Node,
    catalog: &'c Catalog,
    hints: &[(&'c Provider, String)],
) -> Placement<'c> {
    let provider_id = n
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .unwrap_or_default();
    let scheme = provider_id.split_once("://").map(|(s, _)| s).unwrap_or("");
    let by_label = n
        .metadata
        .labels
        .iter()
        .flatten()
        .find_map(|(k, _)| catalog.provider_for_label(k).map(|p| (p, k.clone())));
    let (provider, provider_evidence) = if let Some(p) = catalog.provider_for_scheme(scheme) {
        (Some(p), format!("spec.providerID {provider_id}"))
    } else if let Some((p, key)) = by_label {
        (Some(p), format!("label {key}"))
    } else if let Some((p, why)) = hints.first() {
        (Some(*p), why.clone())
    } else {
        (
            None,
            if provider_id.is_empty() {
                String::new()
            } else {
                format!("spec.providerID {provider_id}")
            },
        )
    };

    // Region: label, then zone label, then the providerID's zone, then AKS's resource-group name.
    let zone_from_id = || -> Option<String> {
        let rest = provider_id.split_once("://")?.1.trim_start_matches('/');
        match scheme {
            "aws" => rest.split('/').next().map(String::from),
            "gce" => rest.split('/').nth(1).map(String::from),
            _ => None,
        }
    };
    let mut region = None;
    let mut region_evidence = String::new();
    if let Some((k, r)) = REGION_LABELS
        .iter()
        .find_map(|k| label(n, k).map(|v| (*k, v.clone())))
    {
        region_evidence = format!("label {k}={r}");
        region = Some(r);
    } else if let Some((k, z)) = ZONE_LABELS
        .iter()
        .find_map(|k| label(n, k).map(|v| (*k, v.clone())))
    {
        region_evidence = format!("label {k}={z}");
        region = region_of_zone(&z).map(String::from).or(Some(z));
    } else if let Some(z) = zone_from_id() {
        region_evidence = format!("spec.providerID zone {z}");
        region = region_of_zone(&z).map(String::from);
    } else if let Some(rg) = label(n, AKS_CLUSTER_LABEL) {
        region_evidence = format!("label {AKS_CLUSTER_LABEL}={rg}");
        region = rg.rsplit('_').next().map(String::from);
    }

    let location = match (provider, &region) {
        (Some(p), Some(r)) => catalog.region(&p.id, r).map(|(_, e)| e.location()),
        (None, Some(r)) => match catalog.region_anywhere(r).as_slice() {
            [(_, e)] => Some(e.location()),
            _ => None,
        },
        _ => None,
    };
    Placement {
        provider,
        provider_evidence,
        region,
        region_evidence,
        location,
    }
}

/// Where volumes were provisioned: PV node affinity zones and the CSI driver.
fn judge_volumes(judge: &mut Judge<'_>, inv: &Inventory) {
    for pv in &inv.volumes {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let spec = pv.spec.as_ref();
        let driver = spec.and_then(|s| s.csi.as_ref()).map(|c| c.driver.clone());
        let provider = driver
            .as_deref()
            .and_then(|d| judge.catalog.provider_for_provisioner(d));
        let zones: Vec<String> = spec
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .map(|r| {
                r.node_selector_terms
                    .iter()
                    .flat_map(|t| t.match_expressions.iter().flatten())
                    .filter(|e| e.key.ends_with("/zone") || e.key.ends_with("/region"))
                    .flat_map(|e| e.values.iter().flatten().cloned())
                    .collect()
            })
            .unwrap_or_default();
        let Some(zone) = zones.first() else { continue };
        let region = region_of_zone(zone).unwrap_or(zone);
        let location = match provider {
            Some(p) => judge
                .catalog
                .region(&p.id, region)
                .map(|(_, e)| e.location()),
            None => match judge.catalog.region_anywhere(region).as_slice() {
                [(_, e)] => Some(e.location()),
                _ => None,
            },
        };
        let evidence = format!(
            "node affinity zone {zone}{}",
            driver
                .as_ref()
                .map(|d| format!(", CSI driver {d}"))
                .unwrap_or_default()
        );
        judge.place(
            "volume data",
            &format!("PersistentVolume/{name}"),
            "spec.nodeAffinity",
            &evidence,
            location.as_ref(),
            provider.map(|p| (p.parent.country.as_str(), p.parent.name.as_str())),
            "copy the data to a volume provisioned in an allowed place",
        );
    }
}

/// The registry host of an image reference (`nginx` → `docker.io`).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

fn pod_specs(inv: &Inventory) -> Vec<(String, String, &PodSpec)> {
    let mut out: Vec<(String, String, &PodSpec)> = inv
        .templates
        .iter()
        .map(|t| (t.object.clone(), t.field.clone(), &t.spec))
        .collect();
    for p in &inv.pods {
        // Pods owned by a template's controller repeat its findings.
        if p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty())
            && !inv.templates.is_empty()
        {
            continue;
        }
        if let Some(spec) = &p.spec {
            out.push((obj("Pod", &p.metadata), "spec".into(), spec));
        }
    }
    out
}

fn judge_images(judge: &mut Judge<'_>, inv: &Inventory) {
    let mut seen = BTreeSet::new();
    for (object, field, spec) in pod_specs(inv) {
        let containers = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c))
            .chain(spec.containers.iter().map(|c| ("containers", c)));
        for (i, (list, c)) in containers.enumerate() {
            let Some(image) = c.image.clone() else {
                continue;
            };
            if !seen.insert((object.clone(), image.clone())) {
                continue;
            }
            let host = registry_host(&image);
            let field = format!("{field}.{list}[{}].image", i);
            let allowed = judge.policy.allowed_registries.iter().any(|r| {
                image.starts_with(r.as_str())
                    && (image.len() == r.len() || image[r.len()..].starts_with(['/', ':', '@']))
            });
            if allowed {
                continue;
            }
            match judge.catalog.registry(host) {
                Some(m) => {
                    let loc = match (&m.provider, &m.region) {
                        (Some(p), Some(r)) => judge.catalog.region(p, r).map(|(_, e)| e.location()),
                        _ => None,
                    };
                    let remediation = format!(
                        "mirror the image to an allowed registry ({}) and rewrite it with spec.target.imageRewrites",
                        if judge.policy.allowed_registries.is_empty() {
                            "e.g. a Québec-hosted Harbor".to_string()
                        } else {
                            judge.policy.allowed_registries.join(", ")
                        }
                    );
                    let rule = format!(
                        "images must come from registries operated under {} jurisdiction",
                        judge.policy.allowed_jurisdictions.join(" or ")
                    );
                    if !judge.jurisdiction_allowed(&m.jurisdiction) {
                        let why = format!(
                            "{host} is operated by {} ({}); {remediation}",
                            m.operator, m.jurisdiction
                        );
                        judge.finding(&object, &field, &image, &rule, Severity::Error, &why);
                    } else if let Some(l) = loc.filter(|l| judge.location_allowed(l) == Some(false))
                    {
                        let rule = format!(
                            "images must come from registries located in {}",
                            judge.policy.allowed_locations.join(" or ")
                        );
                        let why = format!("{host} is in {}; {remediation}", l.code());
                        judge.finding(&object, &field, &image, &rule, Severity::Error, &why);
                    }
                }
                None => {
                    judge.unknown = true;
                    judge.finding(&object, &field, &image, "images must come from a registry known to satisfy the policy", Severity::Warning, &format!("{host} is not in the catalog: add it to the policy's allowedRegistries if it is hosted in an allowed place"));
                }
            }
        }
    }
}

fn host_pattern() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    // A constant pattern: it compiles or no test passes.
    RE.get_or_init(|| {
        Regex::new(r"(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b")
            .expect("host pattern")
    })
}

fn glob_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Cloud endpoints named in env values, ConfigMap data and Ingress hosts.
fn judge_endpoints(judge: &mut Judge<'_>, inv: &Inventory) {
    let mut texts: Vec<(String, String, String)> = Vec::new();
    for (object, field, spec) in pod_specs(inv) {
        for (ci, c) in spec.containers.iter().enumerate() {
            for (ei, e) in c.env.iter().flatten().enumerate() {
                if let Some(v) = &e.value {
                    texts.push((
                        object.clone(),
                        format!("{field}.containers[{ci}].env[{ei}] ({})", e.name),
                        v.clone(),
                    ));
                }
            }
        }
    }
    for cm in &inv.config_maps {
        let object = obj("ConfigMap", &cm.metadata);
        for (k, v) in cm.data.iter().flatten() {
            texts.push((object.clone(), format!("data.{k}"), v.clone()));
        }
    }
    for ing in &inv.ingresses {
        let object = obj("Ingress", &ing.metadata);
        for (i, r) in ing
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .enumerate()
        {
            if let Some(h) = &r.host {
                texts.push((object.clone(), format!("spec.rules[{i}].host"), h.clone()));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (object, field, text) in texts {
        for m in host_pattern().find_iter(&text) {
            let host = m.as_str().to_ascii_lowercase();
            if !seen.insert((object.clone(), host.clone())) {
                continue;
            }
            if let Some(pattern) = judge
                .policy
                .forbidden_endpoints
                .iter()
                .find(|p| glob_matches(p, &host))
            {
                judge.finding(
                    &object,
                    &field,
                    &host,
                    &format!("the policy forbids endpoints matching {pattern}"),
                    Severity::Error,
                    "point the workload at an endpoint the policy allows",
                );
                continue;
            }
            if let Some(e) = judge.catalog.endpoint(&host) {
                if judge.jurisdiction_allowed(&e.jurisdiction) {
                    continue;
                }
                let loc = match (&e.provider, &e.region) {
                    (Some(p), Some(r)) => judge.catalog.region(p, r).map(|(_, x)| x.location()),
                    _ => None,
                };
                let place = loc.map(|l| format!(" in {}", l.code())).unwrap_or_default();
                judge.finding(
                    &object,
                    &field,
                    &host,
                    &format!("the workload must not depend on cloud services operated under foreign jurisdiction ({} {}{place})", e.operator, e.kind),
                    Severity::Error,
                    &format!("move this {} to a service hosted in {} under {} jurisdiction and update the configuration", e.kind, judge.policy.allowed_locations.join("/"), judge.policy.allowed_jurisdictions.join("/")),
                );
            }
        }
    }
}

/// Service accounts bound to a foreign cloud's IAM, and load balancers of a foreign cloud.
fn judge_identities(judge: &mut Judge<'_>, inv: &Inventory) {
    for sa in &inv.service_accounts {
        let object = obj("ServiceAccount", &sa.metadata);
        for (k, v) in sa.metadata.annotations.iter().flatten() {
            if let Some(p) = judge.catalog.provider_for_identity_annotation(k)
                && !judge.jurisdiction_allowed(&p.parent.country)
            {
                judge.finding(&object, &format!("metadata.annotations[{k}]"), v, "workloads must not hold identities in a foreign cloud's IAM", Severity::Error, &format!("remove the {} identity binding and give the workload credentials issued in the target environment", p.name));
            }
        }
    }
    for svc in &inv.services {
        let object = obj("Service", &svc.metadata);
        for (k, v) in svc.metadata.annotations.iter().flatten() {
            if let Some(p) = judge.catalog.provider_for_service_annotation(k)
                && !judge.jurisdiction_allowed(&p.parent.country)
            {
                judge.finding(&object, &format!("metadata.annotations[{k}]"), v, "load balancers must not be provisioned by a foreign cloud", Severity::Error, &format!("this Service asks {} for its load balancer; remove the annotation for the target's own", p.name));
            }
        }
    }
}
