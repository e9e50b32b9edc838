//! The sender's stat cache across passes. The sender (`sovereign mover send --cache`) skips reading
//! and hashing the files whose inode, size, mtime and ctime are unchanged since its last verified
//! pass; but each pass runs in a new pod, so the cache lives in a claim of its own in the source
//! namespace, `<transfer>-cache`, that every sender of the transfer mounts at `/cache`. Without it
//! the final pass of a `Move` — the application's downtime — would read the whole volume again,
//! and take time in proportion to its size instead of to what changed since the last pre-copy
//! (which is what the workload's predicted downtime assumes).
//!
//! The claim: ReadWriteOnce, in the source claim's StorageClass (so that it is provisioned in the
//! same topology as the volume the sender reads, and a sender pinned to the live claim's node can
//! mount both; no class on the source claim means the cluster's default), requesting
//! [`objects::cache_request`] — max(1 GiB, capacity/256): the cache holds ~40 bytes per 16 KiB
//! chunk and ~200 per file. It carries the mover labels (found and deleted with the transfer's
//! other mover objects, never migrated) and a `kubernetes.io/description` saying what it is. The
//! sender writes the cache only after a verified pass, to a file of its own that it then renames,
//! so a failed attempt leaves the previous cache intact.
//!
//! Not priced: a claim of a GiB or so for the migration's duration is noise next to the mover's
//! pod time and the egress, which the estimate and the ledger do price (`cost::estimate`).
//!
//! A cache is an optimisation, never a reason to stop a migration: when the claim cannot be had (a
//! claim of that name that this transfer did not create — never touched —, a quota, no default
//! StorageClass, no right to create claims), the pass runs without it and the transfer's
//! `SenderCache` condition says why (its message and a Warning Event say it once, when it becomes
//! so). And should a sender that mounts it stay unschedulable for a volume reason (a class with
//! `Immediate` binding that provisioned the cache in another zone than the pinned node, a
//! provisioning that fails), that attempt is replaced by one without the cache, and so are all
//! the transfer's later senders.
//!
//! Not with `consistency: Snapshot`: there each pass reads a different volume, restored from a new
//! VolumeSnapshot. Where the restore is a file-level copy (the sandbox's, and some CSI drivers'),
//! every file has a new inode and ctime in every pass, so the cache could never hit and the claim
//! would be pure cost. (Where it is a block-level image of the filesystem, as with EBS, inodes and
//! times of unchanged files do survive and a cache would hit; not done yet: no cache claim is
//! created with Snapshot at all.)

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use tracing::warn;

use super::objects;
use crate::api::conditions;
use crate::api::transfer::VolumeTransfer;
use crate::api::workload::keys;

/// Whether the sender of the next pass gets its cache.
#[derive(Debug, PartialEq, Eq)]
pub enum Cache {
    /// The claim to mount (this transfer's).
    Ready(String),
    /// Why the pass runs without one.
    Unavailable(String),
    /// A sender that mounted it could not be scheduled (the scheduler's words): no more cache for
    /// this transfer.
    Unschedulable(String),
}

/// The `SenderCache` condition's reason once a sender could not be scheduled with the cache.
pub const UNSCHEDULABLE: &str = "Unschedulable";

/// How long a sender that mounts the cache may stay unschedulable for a volume reason before it
/// is replaced by one without (an `Immediate` claim is unbound, and the pod unschedulable, for
/// the few seconds its provisioning takes).
pub const UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(60);

/// Whether the transfer gave its cache up (see [`Cache::Unschedulable`]).
pub fn given_up(conditions: &[Condition]) -> bool {
    conditions::find(conditions, conditions::SENDER_CACHE)
        .is_some_and(|c| c.reason == UNSCHEDULABLE)
}

/// The scheduler's reason when `pod` mounts the cache claim and has been unschedulable for a
/// volume reason for longer than [`UNSCHEDULABLE_GRACE`] at `now`. Pure.
pub fn unschedulable(pod: &Pod, now: Timestamp) -> Option<String> {
    let mounts_cache = pod
        .spec
        .as_ref()?
        .volumes
        .as_ref()?
        .iter()
        .any(|v| v.name == "cache" && v.persistent_volume_claim.is_some());
    if !mounts_cache {
        return None;
    }
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
    let message = c.message.clone().unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    let volumes = lower.contains("volume") || lower.contains("persistentvolumeclaim");
    let since = c.last_transition_time.as_ref()?.0;
    let waited = now.as_second() - since.as_second();
    (volumes && waited >= UNSCHEDULABLE_GRACE.as_secs() as i64).then_some(message)
}

/// What an existing claim of the cache's name means. Pure.
pub fn judge(vt: &VolumeTransfer, existing: &PersistentVolumeClaim) -> Cache {
    let name = objects::cache_name(vt);
    let ns = &vt.spec.source.namespace;
    if existing.labels().get(keys::TRANSFER) != Some(&vt.name_any()) {
        return Cache::Unavailable(format!(
            "a PersistentVolumeClaim {name} that this transfer did not create exists in namespace \
             {ns:?}: left alone, and the sender reads every file in every pass (rename or delete \
             that claim to give it its stat cache)"
        ));
    }
    if existing.metadata.deletion_timestamp.is_some() {
        return Cache::Unavailable(format!(
            "the sender's cache claim {name} is being deleted; the next pass creates it again"
        ));
    }
    Cache::Ready(name)
}

/// Finds or creates the cache claim (idempotent: found again by name after a restart).
pub async fn prepare(vt: &VolumeTransfer, client: &Client) -> Cache {
    let ns = vt.spec.source.namespace.as_str();
    let name = objects::cache_name(vt);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    match claims.get_opt(&name).await {
        Ok(Some(c)) => return judge(vt, &c),
        Ok(None) => {}
        Err(e) => {
            return Cache::Unavailable(format!("cannot read the sender's cache claim {name}: {e}"));
        }
    }
    let class = match claims.get_opt(&vt.spec.source.pvc).await {
        Ok(Some(c)) => c.spec.and_then(|s| s.storage_class_name),
        Ok(None) => {
            return Cache::Unavailable(format!(
                "the source claim {:?} does not exist",
                vt.spec.source.pvc
            ));
        }
        Err(e) => {
            return Cache::Unavailable(format!(
                "cannot read the source claim {:?} for its StorageClass: {e}",
                vt.spec.source.pvc
            ));
        }
    };
    let claim = objects::cache_claim(vt, class.as_deref());
    match claims.create(&PostParams::default(), &claim).await {
        Ok(_) => Cache::Ready(name),
        // Created by a reconcile that did not live to use it, or by someone else: look again.
        Err(kube::Error::Api(s)) if s.is_already_exists() => match claims.get_opt(&name).await {
            Ok(Some(c)) => judge(vt, &c),
            _ => Cache::Unavailable(format!(
                "the sender's cache claim {name} was created and deleted meanwhile"
            )),
        },
        Err(e) => Cache::Unavailable(format!(
            "cannot create the sender's cache claim {name}: {e}"
        )),
    }
}

/// Deletes this transfer's cache claim (by its labels: a claim of the same name that the transfer
/// did not create is never touched). Best effort: a failure is retried by the next call.
pub async fn remove(vt: &VolumeTransfer, client: &Client) {
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &vt.spec.source.namespace);
    let sel = format!(
        "{},app.kubernetes.io/component=cache",
        objects::selector(vt)
    );
    match claims.list(&ListParams::default().labels(&sel)).await {
        Ok(list) => {
            for c in list {
                if let Err(e) = claims
                    .delete(&c.name_any(), &DeleteParams::background())
                    .await
                    && !matches!(&e, kube::Error::Api(s) if s.is_not_found())
                {
                    warn!(transfer = %vt.name_any(), claim = %c.name_any(), error = %e, "cannot delete the sender's cache claim");
                }
            }
        }
        Err(e) => {
            warn!(transfer = %vt.name_any(), error = %e, "cannot list the sender's cache claim")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::transfer::{VolumeEnd, VolumeTransferSpec};
    use crate::api::workload::Consistency;

    fn vt() -> VolumeTransfer {
        let end = |ns: &str| VolumeEnd {
            cluster: "c".into(),
            namespace: ns.into(),
            pvc: "data-db-0".into(),
            storage_class: None,
        };
        VolumeTransfer::new(
            "dossier-data-db-0",
            VolumeTransferSpec {
                workload: "dossier".into(),
                source: end("sante"),
                target: end("sante"),
                consistency: Consistency::Quiesce,
                capacity: Some("10Gi".into()),
            },
        )
    }

    fn pending(with_cache: bool, message: &str, since: i64) -> Pod {
        let mut p = objects::sender_pod(
            &vt(),
            "img",
            "a:1",
            1,
            false,
            1,
            "data-db-0",
            Some("node-a"),
            with_cache.then_some("dossier-data-db-0-cache"),
        );
        p.status = serde_json::from_value(serde_json::json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message,
                            "lastTransitionTime": Timestamp::from_second(since).expect("time").to_string()}]
        }))
        .expect("status");
        p
    }

    #[test]
    fn a_sender_kept_off_every_node_by_a_volume_goes_on_without_the_cache() {
        let now = Timestamp::from_second(1_000_000).expect("time");
        let conflict = "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector.";
        assert_eq!(
            unschedulable(&pending(true, conflict, 1_000_000 - 61), now).as_deref(),
            Some(conflict)
        );
        // Not yet: an Immediate claim is unbound while it is provisioned.
        let unbound = "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.";
        assert_eq!(
            unschedulable(&pending(true, unbound, 1_000_000 - 5), now),
            None
        );
        assert!(unschedulable(&pending(true, unbound, 1_000_000 - 600), now).is_some());
        // Not for a reason a cache cannot cause, nor for a sender without one.
        let cpu = "0/3 nodes are available: 3 Insufficient cpu.";
        assert_eq!(unschedulable(&pending(true, cpu, 0), now), None);
        assert_eq!(unschedulable(&pending(false, conflict, 0), now), None);
        // Scheduled: nothing to say.
        let mut p = pending(true, conflict, 0);
        p.status = None;
        assert_eq!(unschedulable(&p, now), None);

        let gave_up = conditions::merge(
            &[],
            &[conditions::Desired::new(
                conditions::SENDER_CACHE,
                false,
                UNSCHEDULABLE,
                "x",
            )],
            None,
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        );
        assert!(given_up(&gave_up));
        let unavailable = conditions::merge(
            &[],
            &[conditions::Desired::new(
                conditions::SENDER_CACHE,
                false,
                "Unavailable",
                "x",
            )],
            None,
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        );
        assert!(
            !given_up(&unavailable),
            "a claim that could not be had is tried again"
        );
    }

    #[test]
    fn the_transfers_own_claim_is_used_and_anyone_elses_is_left_alone() {
        let v = vt();
        let ours = objects::cache_claim(&v, Some("gp3"));
        assert_eq!(
            judge(&v, &ours),
            Cache::Ready("dossier-data-db-0-cache".into())
        );

        let mut theirs = ours.clone();
        theirs.metadata.labels = Some([("app".to_string(), "reports".to_string())].into());
        let Cache::Unavailable(why) = judge(&v, &theirs) else {
            panic!("a claim the transfer did not create is used");
        };
        assert!(why.contains("dossier-data-db-0-cache"), "{why}");
        assert!(why.contains("did not create"), "{why}");

        // Another transfer's claim is not ours either.
        let mut other = ours.clone();
        other
            .metadata
            .labels
            .get_or_insert_default()
            .insert(keys::TRANSFER.into(), "other".into());
        assert!(matches!(judge(&v, &other), Cache::Unavailable(_)));

        let mut going = ours;
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert!(matches!(judge(&v, &going), Cache::Unavailable(_)));
    }
}
