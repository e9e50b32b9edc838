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
