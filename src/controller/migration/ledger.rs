//! The actual cost as the migration goes: the movers' wire bytes per pass (from the
//! VolumeTransfers) and the time both sides held the workload, priced as the estimate was. Rebuilt
//! from those observations at every reconcile, so a restart or a retried pass never counts twice.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::api::workload::SovereignWorkloadStatus;
use crate::api::{SovereignCluster, SovereignWorkload, VolumeTransfer};
use crate::cost::{self, Actual, FxTable, Moved};
use crate::migrate::plan::quantity_bytes;

use super::Sides;

fn volumes(transfers: &[VolumeTransfer]) -> Vec<(Option<String>, Option<String>, u64)> {
    transfers
        .iter()
        .map(|t| {
            (
                t.spec.source.storage_class.clone(),
                t.spec.target.storage_class.clone(),
                t.spec
                    .capacity
                    .as_deref()
                    .and_then(quantity_bytes)
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// The target's copies of the workload's objects, which carry the planned specs (and the source's
/// replica counts in an annotation): what the footprint is computed from once the plan is frozen.
pub async fn target_objects(sides: &Sides) -> Vec<Value> {
    let lp = ListParams::default().labels(&sides.selector());
    let mut out = Vec::new();
    let ns = &sides.target_ns;
    if let Ok(l) = Api::<Deployment>::namespaced(sides.target.clone(), ns)
        .list(&lp)
        .await
    {
        out.extend(l.items.iter().filter_map(|o| serde_json::to_value(o).ok()));
    }
    if let Ok(l) = Api::<StatefulSet>::namespaced(sides.target.clone(), ns)
        .list(&lp)
        .await
    {
        out.extend(l.items.iter().filter_map(|o| serde_json::to_value(o).ok()));
    }
    if let Ok(l) = Api::<Service>::namespaced(sides.target.clone(), ns)
        .list(&lp)
        .await
    {
        out.extend(l.items.iter().filter_map(|o| serde_json::to_value(o).ok()));
    }
    out
}

/// The actual cost so far; `None` (with a log line) when it cannot be priced.
pub fn actual(
    w: &SovereignWorkload,
    status: &SovereignWorkloadStatus,
    objects: &[Value],
    transfers: &[VolumeTransfer],
    source: &SovereignCluster,
    target: &SovereignCluster,
    fx: &FxTable,
) -> Option<Actual> {
    let currency = w
        .spec
        .cost
        .as_ref()
        .map(|c| c.currency.clone())
        .unwrap_or_else(|| "CAD".into());
    let moved = Moved {
        objects,
        volumes: volumes(transfers),
    };
    let passes: Vec<(String, crate::api::VolumeTransferStatus)> = transfers
        .iter()
        .map(|t| (t.name_any(), t.status.clone().unwrap_or_default()))
        .collect();
    let started = status.started_at.as_ref().map(|t| t.0);
    let ended = status.completed_at.as_ref().map(|t| t.0);
    match cost::actual_of(
        &moved,
        source,
        target,
        &currency,
        fx,
        &passes,
        started,
        ended,
        Timestamp::now(),
    ) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "cannot price the migration's actual cost");
            None
        }
    }
}
