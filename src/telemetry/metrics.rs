//! Prometheus metrics of the operator, in the text exposition format.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::api::workload::Phase;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ControllerName {
    SovereignCluster,
    SovereignWorkload,
    VolumeTransfer,
}

impl EncodeLabelValue for ControllerName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            ControllerName::SovereignCluster => "sovereigncluster",
            ControllerName::SovereignWorkload => "sovereignworkload",
            ControllerName::VolumeTransfer => "volumetransfer",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: ControllerName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: ControllerName,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// `Kind/name` or `Kind/namespace/name`.
    pub object: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub object: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    /// `namespace/name` of the SovereignWorkload.
    pub workload: String,
    /// `estimated` or `actual`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

/// Every metric the operator exports, registered once.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub workloads: Family<PhaseLabels, Gauge>,
    pub cluster_reachable: Family<ClusterLabels, Gauge>,
    pub residency_compliant: Family<ObjectLabels, Gauge>,
    pub residency_verdict: Family<VerdictLabels, Gauge>,
    pub migration_cost: Family<CostLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sovereign");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        let workloads = Family::<PhaseLabels, Gauge>::default();
        let cluster_reachable = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
        let migration_cost =
            Family::<CostLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "migration_cost",
            "One-time cost of a workload's migration in its report currency (estimated before, actual as it goes)",
            migration_cost.clone(),
        );
        let residency_compliant = Family::<ObjectLabels, Gauge>::default();
        let residency_verdict = Family::<VerdictLabels, Gauge>::default();
        registry.register(
            "residency_compliant",
            "1 when the object's residency verdict is Compliant, else 0 (NonCompliant or Unknown)",
            residency_compliant.clone(),
        );
        registry.register(
            "residency_verdict",
            "The object's current residency verdict (1 on the verdict's series)",
            residency_verdict.clone(),
        );
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error reason",
            failures.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time a reconciliation took",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "workloads",
            "SovereignWorkloads by phase",
            workloads.clone(),
        );
        registry.register(
            "cluster_reachable",
            "Whether the last probe of a SovereignCluster reached its API server (1) or not (0)",
            cluster_reachable.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica holds the leader Lease",
            leader.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        // Every phase is exported from the start, so that dashboards see zeros rather than gaps.
        for phase in Phase::ALL {
            workloads
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().to_string(),
                })
                .set(0);
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            workloads,
            cluster_reachable,
            residency_compliant,
            residency_verdict,
            migration_cost,
            leader,
        }
    }

    /// Starts timing a reconciliation; the duration is recorded when the guard drops.
    pub fn reconcile_started(self: &Arc<Self>, controller: ControllerName) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self.clone(),
            controller,
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, controller: ControllerName, reason: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller,
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Sets the per-phase gauges from a full count, zeroing phases with no workload.
    pub fn set_workload_phases(&self, counts: &std::collections::HashMap<Phase, i64>) {
        for phase in Phase::ALL {
            let n = counts.get(&phase).copied().unwrap_or(0);
            self.workloads
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().to_string(),
                })
                .set(n);
        }
    }

    /// Records an object's residency verdict (one-hot over the three verdicts).
    pub fn set_residency(&self, object: &str, verdict: crate::api::Verdict) {
        use crate::api::Verdict;
        self.residency_compliant
            .get_or_create(&ObjectLabels {
                object: object.to_string(),
            })
            .set(i64::from(verdict == Verdict::Compliant));
        for v in [Verdict::Compliant, Verdict::NonCompliant, Verdict::Unknown] {
            self.residency_verdict
                .get_or_create(&VerdictLabels {
                    object: object.to_string(),
                    verdict: format!("{v:?}"),
                })
                .set(i64::from(v == verdict));
        }
    }

    pub fn set_migration_cost(&self, workload: &str, kind: &str, amount: f64) {
        self.migration_cost
            .get_or_create(&CostLabels {
                workload: workload.to_string(),
                kind: kind.to_string(),
            })
            .set(amount);
    }

    /// Forgets a deleted object's residency series.
    pub fn forget_residency(&self, object: &str) {
        self.residency_compliant.remove(&ObjectLabels {
            object: object.to_string(),
        });
        for v in ["Compliant", "NonCompliant", "Unknown"] {
            self.residency_verdict.remove(&VerdictLabels {
                object: object.to_string(),
                verdict: v.to_string(),
            });
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    controller: ControllerName,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Arc::new(Metrics::new());
        drop(m.reconcile_started(ControllerName::SovereignCluster));
        m.reconcile_failed(ControllerName::SovereignWorkload, "SourceClusterNotFound");
        m.cluster_reachable
            .get_or_create(&ClusterLabels {
                cluster: "aws".into(),
            })
            .set(1);
        let text = m.encode().expect("encode");
        for needle in [
            "sovereign_reconciles_total{controller=\"sovereigncluster\"} 1",
            "sovereign_reconcile_errors_total{controller=\"sovereignworkload\",reason=\"SourceClusterNotFound\"} 1",
            "sovereign_reconcile_duration_seconds_count{controller=\"sovereigncluster\"} 1",
            "sovereign_workloads{phase=\"Completed\"} 0",
            "sovereign_cluster_reachable{cluster=\"aws\"} 1",
            "sovereign_leader 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
