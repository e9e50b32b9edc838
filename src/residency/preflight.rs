//! The pre-flight of a migration: is the target cluster, as its SovereignCluster status shows it, a
//! place the workload's policy allows? Judged before anything moves.

use crate::api::cluster::SovereignClusterStatus;
use crate::api::policy::ResidencyPolicySpec;
use crate::api::{Finding, Location, Severity, Verdict};

/// The target's verdict under `policy`, with findings. Only what the cluster's classification
/// established counts: an unclassified target is `Unknown`.
pub fn target(
    cluster: &str,
    status: Option<&SovereignClusterStatus>,
    policy: &ResidencyPolicySpec,
) -> (Verdict, Vec<Finding>) {
    let object = format!("SovereignCluster/{cluster}");
    let mut findings = Vec::new();
    let mut unknown = false;
    let (locations, jurisdictions) = match status {
        Some(s) => (split(&s.location), split(&s.jurisdiction)),
        None => (vec![], vec![]),
    };
    if locations.is_empty() {
        unknown = true;
        findings.push(Finding {
            object: object.clone(),
            field: "status.location".into(),
            evidence: "not classified".into(),
            rule: "the target's location must be known before data moves".into(),
            severity: Severity::Warning,
            remediation: "wait for the cluster to be probed, or declare its provider, location and jurisdiction".into(),
        });
    }
    for code in &locations {
        let loc = parse_code(code);
        let allowed = policy
            .allowed_locations
            .iter()
            .any(|a| code == a || code.starts_with(&format!("{a}-")));
        let needs_province = loc.province.is_none()
            && policy
                .allowed_locations
                .iter()
                .any(|a| a.starts_with(&format!("{}-", loc.country)));
        if !allowed {
            if needs_province {
                unknown = true;
            }
            findings.push(Finding {
                object: object.clone(),
                field: "status.location".into(),
                evidence: code.clone(),
                rule: format!(
                    "the target must be located in {}",
                    policy.allowed_locations.join(" or ")
                ),
                severity: if needs_province {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                remediation: "choose a target cluster in an allowed location".into(),
            });
        }
    }
    if jurisdictions.is_empty() && !locations.is_empty() {
        unknown = true;
    }
    for j in &jurisdictions {
        if !policy.allow_foreign_controlled_providers
            && !policy.allowed_jurisdictions.iter().any(|a| a == j)
        {
            findings.push(Finding {
                object: object.clone(),
                field: "status.jurisdiction".into(),
                evidence: j.clone(),
                rule: format!("the target must be operated under {} jurisdiction", policy.allowed_jurisdictions.join(" or ")),
                severity: Severity::Error,
                remediation: format!(
                    "the target's operator answers to {j} law{}; choose a target operated under {} jurisdiction",
                    if j == "US" { " (US CLOUD Act)" } else { "" },
                    policy.allowed_jurisdictions.join(" or ")
                ),
            });
        }
    }
    // The cluster's own findings that speak of unknowns (contradicted declarations, unknown pools)
    // keep the verdict from being Compliant.
    if let Some(s) = status {
        if s.verdict == Some(Verdict::Unknown) && findings.is_empty() {
            unknown = true;
        }
        findings.extend(
            s.findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .cloned(),
        );
    }
    let verdict = if findings.iter().any(|f| f.severity == Severity::Error) {
        Verdict::NonCompliant
    } else if unknown {
        Verdict::Unknown
    } else {
        Verdict::Compliant
    };
    (verdict, findings)
}

fn split(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn parse_code(code: &str) -> Location {
    match code.split_once('-') {
        Some((c, p)) => Location {
            country: c.into(),
            province: Some(p.into()),
            city: None,
        },
        None => Location {
            country: code.into(),
            province: None,
            city: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::residency::policy::quebec_strict;

    fn status(location: &str, jurisdiction: &str) -> SovereignClusterStatus {
        SovereignClusterStatus {
            location: Some(location.into()),
            jurisdiction: Some(jurisdiction.into()),
            verdict: Some(Verdict::Compliant),
            ..Default::default()
        }
    }

    #[test]
    fn targets_are_judged_under_the_workloads_policy() {
        let p = quebec_strict();
        assert_eq!(
            target("t", Some(&status("CA-QC", "CA")), &p).0,
            Verdict::Compliant
        );
        let (v, f) = target("t", Some(&status("CA-QC", "US")), &p);
        assert_eq!(v, Verdict::NonCompliant);
        assert!(f[0].remediation.contains("CLOUD Act"));
        assert_eq!(
            target("t", Some(&status("CA-ON", "CA")), &p).0,
            Verdict::NonCompliant
        );
        assert_eq!(
            target("t", Some(&status("CA", "CA")), &p).0,
            Verdict::Unknown
        );
        assert_eq!(target("t", None, &p).0, Verdict::Unknown);
        assert_eq!(
            target("t", Some(&status("CA-QC,US-VA", "CA,US")), &p).0,
            Verdict::NonCompliant
        );
        let mut lenient = quebec_strict();
        lenient.allow_foreign_controlled_providers = true;
        assert_eq!(
            target("t", Some(&status("CA-QC", "US")), &lenient).0,
            Verdict::Compliant
        );
    }
}
