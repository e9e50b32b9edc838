//! The estimate of a planned migration: the workload's usage from the plan, priced on both sides.

use serde_json::Value;

use super::{
    CostError, Estimate, EstimateInput, Footprint, FxTable, Side, VolumeUse, cluster_pricing,
    estimate,
};
use crate::api::SovereignCluster;
use crate::migrate::Plan;
use crate::migrate::footprint::usage;

const GIB: f64 = (1u64 << 30) as f64;

/// Prices `plan` moving from `source` to `target`, in `currency`. `bytes_are_capacity` says that
/// the bytes are the claims' capacity (offline, or before the mover has measured the trees).
pub fn estimate_plan(
    plan: &Plan,
    source: &SovereignCluster,
    target: &SovereignCluster,
    currency: &str,
    fx: &FxTable,
    bytes_are_capacity: bool,
) -> Result<Estimate, CostError> {
    let planned: Vec<Value> = plan.objects.iter().map(|o| o.object.clone()).collect();
    let u = usage(&planned, "default");
    let footprint = |target_side: bool| Footprint {
        cpu_cores: u.cpu_cores,
        memory_gib: u.memory_gib,
        volumes: plan
            .volumes
            .iter()
            .map(|v| VolumeUse {
                storage_class: if target_side {
                    v.target_storage_class.clone()
                } else {
                    v.source_storage_class.clone()
                }
                .unwrap_or_else(|| "default".into()),
                gib: v.capacity_bytes as f64 / GIB,
            })
            .collect(),
        load_balancers: u.load_balancers,
    };
    let (before, after) = (footprint(false), footprint(true));
    let (source_prices, target_prices) = (cluster_pricing(source), cluster_pricing(target));
    let (source_name, target_name) = (
        source.metadata.name.clone().unwrap_or_default(),
        target.metadata.name.clone().unwrap_or_default(),
    );
    let mut input = EstimateInput::new(
        Side {
            cluster: &source_name,
            prices: &source_prices,
            footprint: &before,
        },
        Side {
            cluster: &target_name,
            prices: &target_prices,
            footprint: &after,
        },
        plan.bytes(),
        fx,
    );
    input.bytes_are_capacity = bytes_are_capacity;
    input.report_currency = currency;
    estimate(&input)
}

/// What a migration's volumes and objects occupy on each side: the planned objects (or, after the
/// plan is frozen, the target's copies of them, which carry the same specs) and the claims.
pub struct Moved<'a> {
    pub objects: &'a [Value],
    /// (source storage class, target storage class, capacity bytes) per claim.
    pub volumes: Vec<(Option<String>, Option<String>, u64)>,
}

fn footprints(m: &Moved<'_>) -> (Footprint, Footprint) {
    let u = usage(m.objects, "default");
    let side = |target_side: bool| Footprint {
        cpu_cores: u.cpu_cores,
        memory_gib: u.memory_gib,
        volumes: m
            .volumes
            .iter()
            .map(|(s, t, bytes)| VolumeUse {
                storage_class: if target_side { t.clone() } else { s.clone() }
                    .unwrap_or_else(|| "default".into()),
                gib: *bytes as f64 / GIB,
            })
            .collect(),
        load_balancers: u.load_balancers,
    };
    (side(false), side(true))
}

/// The actual one-time cost so far, from the ledger's facts: the wire bytes the movers reported per
/// pass (through the source's egress tiers), both sides' run-rate over the time both held the
/// workload (replication start to completion, or `now`), in `currency`.
#[allow(clippy::too_many_arguments)]
pub fn actual_of(
    moved: &Moved<'_>,
    source: &SovereignCluster,
    target: &SovereignCluster,
    currency: &str,
    fx: &FxTable,
    transfers: &[(String, crate::api::transfer::VolumeTransferStatus)],
    started: Option<jiff::Timestamp>,
    ended: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<super::Actual, CostError> {
    let (before, after) = footprints(moved);
    let (source_prices, target_prices) = (cluster_pricing(source), cluster_pricing(target));
    let (source_name, target_name) = (
        source.metadata.name.clone().unwrap_or_default(),
        target.metadata.name.clone().unwrap_or_default(),
    );
    let mut obs: Vec<super::Observation> = transfers
        .iter()
        .map(|(name, s)| super::Observation::from_transfer(name, s))
        .collect();
    if let Some(started) = started {
        obs.push(super::Observation::Parallel { started, ended });
    }
    let facts = super::Facts::from_observations(&obs)?;
    let input = super::LedgerInput {
        source: Side {
            cluster: &source_name,
            prices: &source_prices,
            footprint: &before,
        },
        target: Side {
            cluster: &target_name,
            prices: &target_prices,
            footprint: &after,
        },
        report_currency: currency,
        fx,
        control_plane_share: EstimateInput::new(
            Side {
                cluster: &source_name,
                prices: &source_prices,
                footprint: &before,
            },
            Side {
                cluster: &target_name,
                prices: &target_prices,
                footprint: &after,
            },
            0,
            fx,
        )
        .control_plane_share,
        egress_already_sent_gib: 0.0,
    };
    super::actual(&facts, &input, now)
}
