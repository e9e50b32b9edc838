//! The workload's side of its volumes: one `VolumeTransfer` per planned PVC, owned by the workload,
//! and the roll-up of their states into the workload's status. The transfers' own controller runs
//! the movers; this side only creates them, asks for the final pass, and reads their progress.

use std::time::Duration;

use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::SovereignWorkload;
use crate::api::duration;
use crate::api::transfer::{TransferPhase, VolumeEnd, VolumeTransfer, VolumeTransferSpec};
use crate::api::workload::{Consistency, VolumeSummary, keys};
use crate::migrate::PlannedVolume;

use super::MigrationError;

/// A name for the transfer of one PVC that fits the 63 characters a Service name allows once the
/// mover's suffixes are added: `<workload>-<pvc>`, shortened with a hash when too long.
pub fn transfer_name(workload: &str, pvc: &str) -> String {
    let full = format!("{workload}-{pvc}");
    if full.len() <= 48 {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(full.as_bytes())[..4]);
    let mut head: String = full.chars().take(39).collect();
    while head.ends_with('-') || head.ends_with('.') {
        head.pop();
    }
    format!("{head}-{hash}")
}

/// The transfers a plan needs. Pure.
pub fn desired(w: &SovereignWorkload, volumes: &[PlannedVolume]) -> Vec<VolumeTransfer> {
    let name = w.name_any();
    let target_ns = w
        .spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| w.spec.source.namespace.clone());
    let consistency = w
        .spec
        .data
        .as_ref()
        .map(|d| d.consistency)
        .unwrap_or(Consistency::Quiesce);
    volumes
        .iter()
        .map(|v| {
            let mut vt = VolumeTransfer::new(
                &transfer_name(&name, &v.pvc),
                VolumeTransferSpec {
                    workload: name.clone(),
                    source: VolumeEnd {
                        cluster: w.spec.source.cluster.clone(),
                        namespace: w.spec.source.namespace.clone(),
                        pvc: v.pvc.clone(),
                        storage_class: v.source_storage_class.clone(),
                    },
                    target: VolumeEnd {
                        cluster: w.spec.target.cluster.clone(),
                        namespace: target_ns.clone(),
                        pvc: v.pvc.clone(),
                        storage_class: v.target_storage_class.clone(),
                    },
                    consistency,
                    capacity: Some(v.capacity_bytes.to_string()),
                },
            );
            vt.metadata.namespace = w.namespace();
            vt.metadata.owner_references = w.controller_owner_ref(&()).map(|o| vec![o]);
            // The workload's own labels too: an operator serving a label selector (a shard)
            // sees the transfers of the workloads it serves.
            let mut labels = w.labels().clone();
            labels.insert(keys::MANAGED_BY.to_string(), keys::MANAGER.to_string());
            labels.insert(keys::WORKLOAD.to_string(), name.clone());
            vt.metadata.labels = Some(labels);
            vt
        })
        .collect()
}

fn err(what: &'static str, ns: &str, source: kube::Error) -> MigrationError {
    MigrationError::Kube {
        what,
        cluster: "operator".into(),
        namespace: ns.to_string(),
        source,
    }
}

/// The transfers of a workload as they are.
pub async fn observe(
    client: &Client,
    w: &SovereignWorkload,
) -> Result<Vec<VolumeTransfer>, MigrationError> {
    let ns = w.namespace().unwrap_or_default();
    let api: Api<VolumeTransfer> = Api::namespaced(client.clone(), &ns);
    let uid = w.uid().unwrap_or_default();
    let list = api
        .list(&ListParams::default().labels(&format!("{}={}", keys::WORKLOAD, w.name_any())))
        .await
        .map_err(|e| err("VolumeTransfers", &ns, e))?;
    // Only those this workload owns: a label alone could be copied onto anything.
    Ok(list
        .items
        .into_iter()
        .filter(|vt| vt.owner_references().iter().any(|o| o.uid == uid))
        .collect())
}

/// Creates the missing transfers and deletes those the plan no longer has. A transfer's spec is
/// immutable: one whose spec differs (the plan changed a storage class) is replaced.
pub async fn ensure(
    client: &Client,
    w: &SovereignWorkload,
    existing: &[VolumeTransfer],
    wanted: &[VolumeTransfer],
) -> Result<usize, MigrationError> {
    let ns = w.namespace().unwrap_or_default();
    let api: Api<VolumeTransfer> = Api::namespaced(client.clone(), &ns);
    let mut changes = 0;
    for e in existing {
        let keep = wanted
            .iter()
            .any(|d| d.name_any() == e.name_any() && d.spec == e.spec);
        if !keep && e.metadata.deletion_timestamp.is_none() {
            match api.delete(&e.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => return Err(err("a stale VolumeTransfer", &ns, source)),
            }
            changes += 1;
        }
    }
    for d in wanted {
        if existing.iter().any(|e| e.name_any() == d.name_any()) {
            continue;
        }
        match api.create(&PostParams::default(), d).await {
            Ok(_) => changes += 1,
            // Created by a reconcile that died before recording it: already there is fine.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => return Err(err("a VolumeTransfer", &ns, source)),
        }
    }
    Ok(changes)
}

/// Asks each transfer for its final pass (idempotent: an annotation).
pub async fn request_final(
    client: &Client,
    transfers: &[VolumeTransfer],
) -> Result<usize, MigrationError> {
    let mut asked = 0;
    for vt in transfers {
        if vt.annotations().get(keys::FINAL_PASS).map(String::as_str) == Some("true") {
            continue;
        }
        let ns = vt.namespace().unwrap_or_default();
        let api: Api<VolumeTransfer> = Api::namespaced(client.clone(), &ns);
        api.patch(
            &vt.name_any(),
            &PatchParams {
                field_manager: Some(crate::controller::context::FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"metadata": {"annotations": {keys::FINAL_PASS: "true"}}})),
        )
        .await
        .map_err(|e| err("a final-pass request", &ns, e))?;
        asked += 1;
    }
    Ok(asked)
}

/// The volumes' state, rolled up. Pure.
#[derive(Debug, Default, PartialEq)]
pub struct Rollup {
    pub volumes: Vec<VolumeSummary>,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub bytes_per_second: i64,
    pub eta: Option<String>,
    pub predicted_downtime: Option<String>,
    pub wire_bytes: i64,
    /// Every transfer finished its pre-copy passes (or its final pass).
    pub precopied: bool,
    /// Every transfer finished its final pass with matching root hashes.
    pub completed: bool,
    /// The first transfer that failed, with its reason.
    pub failed: Option<String>,
}

pub fn rollup(transfers: &[VolumeTransfer], planned: usize, pre_copy_passes: i32) -> Rollup {
    let mut r = Rollup {
        precopied: transfers.len() >= planned,
        completed: transfers.len() >= planned,
        ..Rollup::default()
    };
    let mut downtime_secs = 0f64;
    let mut remaining_secs = 0f64;
    for vt in transfers {
        let s = vt.status.clone().unwrap_or_default();
        let phase = s.phase.unwrap_or_default();
        r.bytes_done += s.bytes_done;
        r.bytes_total += s.bytes_total;
        r.bytes_per_second += s.bytes_per_second;
        r.wire_bytes += s.wire_bytes;
        let verified = s.source_root_hash.is_some() && s.source_root_hash == s.target_root_hash;
        let done_final = phase == TransferPhase::Completed && s.final_pass && verified;
        let done_pre = done_final
            || (phase == TransferPhase::Synced && verified && s.pass >= pre_copy_passes.max(1));
        r.precopied &= done_pre;
        r.completed &= done_final;
        if phase == TransferPhase::Failed && r.failed.is_none() {
            r.failed = Some(format!(
                "VolumeTransfer {} (PVC {}): {}",
                vt.name_any(),
                vt.spec.source.pvc,
                s.message.clone().unwrap_or_else(|| "failed".into())
            ));
        }
        if s.bytes_per_second > 0 && s.bytes_total > s.bytes_done {
            remaining_secs = remaining_secs
                .max((s.bytes_total - s.bytes_done) as f64 / s.bytes_per_second as f64);
        }
        // The final pass sends what changed in the last pre-copy, at the rate that pass reached.
        if let Some(delta) = s.last_delta_bytes
            && s.bytes_per_second > 0
        {
            downtime_secs = downtime_secs.max(delta as f64 / s.bytes_per_second as f64);
        } else if let (Some(delta), true) = (s.last_delta_bytes, s.duration_seconds > 0) {
            let rate = s.bytes_total.max(1) as f64 / s.duration_seconds as f64;
            downtime_secs = downtime_secs.max(delta as f64 / rate);
        }
        r.volumes.push(VolumeSummary {
            pvc: vt.spec.source.pvc.clone(),
            transfer: vt.name_any(),
            phase: s.phase.map(|p| format!("{p:?}")),
            pass: s.pass,
            bytes_done: s.bytes_done,
            bytes_total: s.bytes_total,
            root_hash: if verified {
                s.target_root_hash.clone()
            } else {
                None
            },
        });
    }
    r.volumes.sort_by(|a, b| a.pvc.cmp(&b.pvc));
    if remaining_secs > 0.0 {
        r.eta = Some(duration::format(Duration::from_secs_f64(
            remaining_secs.ceil(),
        )));
    }
    if transfers.iter().any(|t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.last_delta_bytes.is_some())
    }) {
        r.predicted_downtime = Some(duration::format(Duration::from_secs_f64(
            downtime_secs.ceil(),
        )));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::transfer::VolumeTransferStatus;

    fn vt(pvc: &str, status: VolumeTransferStatus) -> VolumeTransfer {
        let end = |c: &str| VolumeEnd {
            cluster: c.into(),
            namespace: "app".into(),
            pvc: pvc.into(),
            storage_class: None,
        };
        let mut v = VolumeTransfer::new(
            &transfer_name("w", pvc),
            VolumeTransferSpec {
                workload: "w".into(),
                source: end("a"),
                target: end("b"),
                consistency: Consistency::Quiesce,
                capacity: None,
            },
        );
        v.status = Some(status);
        v
    }

    #[test]
    fn names_fit_a_service_name_and_stay_distinct() {
        assert_eq!(transfer_name("dossier", "data-db-0"), "dossier-data-db-0");
        let a = transfer_name(&"w".repeat(60), "data-db-0");
        let b = transfer_name(&"w".repeat(60), "data-db-1");
        assert!(a.len() <= 48 && b.len() <= 48);
        assert_ne!(a, b);
    }

    #[test]
    fn a_volume_counts_as_copied_only_with_matching_root_hashes() {
        let synced = |hash_b: &str| VolumeTransferStatus {
            phase: Some(TransferPhase::Synced),
            pass: 1,
            bytes_done: 100,
            bytes_total: 100,
            source_root_hash: Some("aa".into()),
            target_root_hash: Some(hash_b.into()),
            ..Default::default()
        };
        let r = rollup(&[vt("p", synced("aa"))], 1, 1);
        assert!(r.precopied && !r.completed);
        assert_eq!(r.volumes[0].root_hash.as_deref(), Some("aa"));
        let r = rollup(&[vt("p", synced("bb"))], 1, 1);
        assert!(!r.precopied);
        // Two pre-copy passes wanted, one done.
        assert!(!rollup(&[vt("p", synced("aa"))], 1, 2).precopied);
        // A planned volume without its transfer yet is not copied.
        assert!(!rollup(&[vt("p", synced("aa"))], 2, 1).precopied);
    }

    #[test]
    fn the_predicted_downtime_is_the_slowest_volumes_delta_over_its_rate() {
        let s = |delta: i64, rate: i64| VolumeTransferStatus {
            phase: Some(TransferPhase::Synced),
            pass: 1,
            bytes_per_second: rate,
            last_delta_bytes: Some(delta),
            ..Default::default()
        };
        let r = rollup(
            &[
                vt("a", s(100 << 20, 10 << 20)),
                vt("b", s(30 << 20, 10 << 20)),
            ],
            2,
            1,
        );
        assert_eq!(r.predicted_downtime.as_deref(), Some("10s"));
    }
}
