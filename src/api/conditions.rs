//! Conditions in the standard `metav1.Condition` shape, so that Argo CD, Flux and `kubectl wait`
//! understand them (kstatus: `Ready`, `Reconciling`, `Stalled`, with `observedGeneration`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const RESIDENCY_COMPLIANT: &str = "ResidencyCompliant";
pub const DATA_SYNCED: &str = "DataSynced";
pub const WITHIN_BUDGET: &str = "WithinBudget";
pub const APPROVED: &str = "Approved";
/// On a VolumeTransfer: whether its senders keep their stat cache across passes (`transfer::cache`).
pub const SENDER_CACHE: &str = "SenderCache";

/// The status of a condition, as the API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// A condition as a reconcile wants it, before its transition time is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: impl Into<Status>,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Desired {
            type_,
            status: status.into(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Merges the desired conditions over the existing ones: `lastTransitionTime` moves only when the
/// status changes, so that re-writing an unchanged condition causes no status churn (and no
/// self-triggered reconcile). Conditions of other types are kept.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in desired {
        let previous = existing.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: d.type_.to_string(),
            status: d.status.as_str().to_string(),
            reason: d.reason.clone(),
            message: truncate(&d.message, 32 * 1024),
            observed_generation: generation,
            last_transition_time,
        });
    }
    // A stable order keeps status byte-identical between reconciles.
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition exists with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The API limits a condition message to 32 KiB.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let first = merge(
            &[],
            &[Desired::new(READY, false, "Probing", "probing")],
            Some(1),
            &t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(first[0].last_transition_time, t("2026-01-01T00:00:00Z"));
        let same = merge(
            &first,
            &[Desired::new(READY, false, "Still", "other message")],
            Some(2),
            &t("2026-01-02T00:00:00Z"),
        );
        assert_eq!(same[0].last_transition_time, t("2026-01-01T00:00:00Z"));
        assert_eq!(same[0].reason, "Still");
        assert_eq!(same[0].observed_generation, Some(2));
        let flipped = merge(
            &same,
            &[Desired::new(READY, true, "Reachable", "ok")],
            Some(2),
            &t("2026-01-03T00:00:00Z"),
        );
        assert_eq!(flipped[0].last_transition_time, t("2026-01-03T00:00:00Z"));
        assert!(is_true(&flipped, READY));
    }

    #[test]
    fn other_condition_types_are_kept_and_sorted() {
        let a = merge(
            &[],
            &[Desired::new(STALLED, false, "A", "")],
            None,
            &t("2026-01-01T00:00:00Z"),
        );
        let b = merge(
            &a,
            &[Desired::new(READY, true, "B", "")],
            None,
            &t("2026-01-01T00:00:00Z"),
        );
        let types: Vec<_> = b.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![READY, STALLED]);
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let msg = "é".repeat(40_000);
        let c = merge(
            &[],
            &[Desired::new(READY, false, "R", msg)],
            None,
            &t("2026-01-01T00:00:00Z"),
        );
        assert!(c[0].message.len() <= 32 * 1024);
        assert!(c[0].message.ends_with("..."));
    }
}
