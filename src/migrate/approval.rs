//! Approval of a plan: with `cutover.strategy: Manual`, nothing is cut over until the spec carries the
//! hash of the current plan (a GitOps commit); a hash of an older plan is refused.

use crate::api::workload::{CutoverStrategy, SovereignWorkloadSpec};

#[derive(Debug, PartialEq, Eq)]
pub enum Approval {
    /// `Automatic`: no approval needed.
    NotRequired,
    /// `Manual` and the spec names the current plan.
    Approved { by: Option<String> },
    /// `Manual` and no hash yet.
    Awaiting,
    /// `Manual` and the hash names another plan: the plan changed since it was approved.
    Stale { approved: String },
}

pub fn check(spec: &SovereignWorkloadSpec, plan_hash: &str) -> Approval {
    let cutover = spec.cutover.clone().unwrap_or_default();
    if cutover.strategy == CutoverStrategy::Automatic {
        return Approval::NotRequired;
    }
    match cutover
        .approved_plan_hash
        .as_deref()
        .filter(|h| !h.is_empty())
    {
        None => Approval::Awaiting,
        Some(h) if h == plan_hash => Approval::Approved {
            by: cutover.approved_by,
        },
        Some(h) => Approval::Stale {
            approved: h.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SovereignWorkloadSpec {
        serde_yaml::from_str(&format!(
            "source: {{cluster: a, namespace: n}}\ntarget: {{cluster: b}}\n{yaml}"
        ))
        .expect("spec")
    }

    #[test]
    fn approvals() {
        let h = "a".repeat(64);
        assert_eq!(
            check(&spec(""), &h),
            Approval::Awaiting,
            "Manual is the default"
        );
        assert_eq!(
            check(&spec("cutover: {strategy: Automatic}"), &h),
            Approval::NotRequired
        );
        assert_eq!(
            check(
                &spec(&format!(
                    "cutover: {{approvedPlanHash: '{h}', approvedBy: alice}}"
                )),
                &h
            ),
            Approval::Approved {
                by: Some("alice".into())
            }
        );
        let old = "b".repeat(64);
        assert_eq!(
            check(
                &spec(&format!("cutover: {{approvedPlanHash: '{old}'}}")),
                &h
            ),
            Approval::Stale { approved: old }
        );
    }
}
