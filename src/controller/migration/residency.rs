//! Residency after cutover: the same evaluation as the pre-flight, but on what actually runs — the
//! nodes the workload's pods landed on, the volumes provisioned for it, the images pulled — and
//! again periodically, to catch drift (a pod rescheduled onto a foreign node pool).

use kube::Client;

use crate::api::cluster::SovereignClusterSpec;
use crate::api::conditions::{Desired, RESIDENCY_COMPLIANT, Status};
use crate::api::policy::ResidencyPolicySpec;
use crate::api::workload::ResidencyStatus;
use crate::api::{SovereignWorkload, Verdict};
use crate::residency::inventory::Inventory;
use crate::residency::{Catalog, collect, evaluate};

/// Findings kept in status.
const MAX_FINDINGS: usize = 20;

/// Keeps the nodes that host the namespace's pods (all nodes when none is scheduled yet): a workload
/// is where its pods run, not wherever the cluster has nodes. Pure.
pub fn narrow_to_workload(inv: &mut Inventory) {
    let used: Vec<String> = inv
        .pods
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    if !used.is_empty() {
        inv.nodes.retain(|n| {
            n.metadata
                .name
                .as_ref()
                .is_some_and(|name| used.contains(name))
        });
    }
}

/// Leaves out the migration's own data-mover objects (receiver pods and Services, labelled with
/// their VolumeTransfer): they are removed once the data is verified, but may still be there
/// when the workload is judged, and they are the operator's, not the workload's. Pure.
pub fn without_movers(inv: &mut Inventory) {
    let mover = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.is_some_and(|l| l.contains_key(crate::api::workload::keys::TRANSFER))
    };
    inv.pods.retain(|p| !mover(p.metadata.labels.as_ref()));
    inv.services.retain(|s| !mover(s.metadata.labels.as_ref()));
    inv.claims.retain(|c| !mover(c.metadata.labels.as_ref()));
}

/// Evaluates what runs in the target namespace. A cluster that cannot be read is `Unknown`, never
/// compliant.
pub async fn check(
    target: &Client,
    namespace: &str,
    w: &SovereignWorkload,
    declared: Option<&SovereignClusterSpec>,
    policy: Option<&ResidencyPolicySpec>,
    catalog: &Catalog,
) -> (String, ResidencyStatus) {
    let policy_name = w.spec.residency_policy.clone();
    let builtin;
    let policy = match policy {
        Some(p) => p,
        None => {
            builtin = crate::residency::policy::quebec_strict();
            &builtin
        }
    };
    match collect::collect(target, &[namespace.to_string()]).await {
        Ok(mut inv) => {
            without_movers(&mut inv);
            narrow_to_workload(&mut inv);
            let e = evaluate::evaluate(&inv, declared, policy, catalog);
            let mut findings = e.findings.clone();
            findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
            findings.truncate(MAX_FINDINGS);
            (
                format!("{:?}", e.verdict),
                ResidencyStatus {
                    verdict: e.verdict,
                    location: e.location,
                    jurisdiction: e.jurisdiction,
                    policy: Some(policy_name),
                    checked_at: None,
                    findings,
                },
            )
        }
        Err(err) => (
            "Unknown".into(),
            ResidencyStatus {
                verdict: Verdict::Unknown,
                location: None,
                jurisdiction: None,
                policy: Some(policy_name),
                checked_at: None,
                findings: vec![crate::api::Finding {
                    object: format!("Namespace/{namespace}"),
                    field: String::new(),
                    evidence: err.to_string(),
                    rule: "what runs in the target must be observable to be judged".into(),
                    severity: crate::api::Severity::Warning,
                    remediation:
                        "check the target cluster's reachability and the operator's permissions"
                            .into(),
                }],
            },
        ),
    }
}

/// The condition of a post-cutover check.
pub fn condition(r: &ResidencyStatus) -> Vec<Desired> {
    let head = r
        .findings
        .iter()
        .find(|f| f.severity != crate::api::Severity::Info)
        .map(|f| format!("{} ({}: {})", f.rule, f.object, f.evidence))
        .unwrap_or_default();
    vec![match r.verdict {
        Verdict::Compliant => Desired::new(
            RESIDENCY_COMPLIANT,
            true,
            "Compliant",
            format!(
                "what runs in the target is in {} under {} jurisdiction",
                r.location.as_deref().unwrap_or("?"),
                r.jurisdiction.as_deref().unwrap_or("?")
            ),
        ),
        Verdict::NonCompliant => Desired::new(RESIDENCY_COMPLIANT, false, "Drifted", head),
        Verdict::Unknown => Desired::new(RESIDENCY_COMPLIANT, Status::Unknown, "Unknown", head),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(name: &str, labels: &[(&str, &str)], node: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}
        }))
        .expect("pod")
    }

    #[test]
    fn the_movers_pods_are_not_the_workloads() {
        let mut inv = Inventory {
            pods: vec![
                pod("api-1", &[("app", "api")], "qc-1"),
                pod(
                    "t-recv",
                    &[(crate::api::workload::keys::TRANSFER, "t")],
                    "qc-2",
                ),
            ],
            ..Inventory::default()
        };
        without_movers(&mut inv);
        let names: Vec<_> = inv
            .pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert_eq!(names, ["api-1"]);
    }
}
