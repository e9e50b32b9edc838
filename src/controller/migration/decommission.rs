//! Decommissioning the source once the retention has passed and the spec asks for it: every source
//! object the target holds a verified copy of is deleted — and only those, recognised by the uid the
//! copy recorded, so an object recreated under the same name since is never touched. A PV whose
//! reclaim policy is `Retain` keeps its disk: that is said in the evidence, not hidden.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};

use crate::api::workload::keys;

use super::{MigrationError, Sides};

fn err(what: &'static str, cluster: &str, ns: &str, source: kube::Error) -> MigrationError {
    MigrationError::Kube {
        what,
        cluster: cluster.to_string(),
        namespace: ns.to_string(),
        source,
    }
}

/// Deletes the source's copies; returns the evidence lines (`Kind/name (uid …) deleted`, and what
/// stays behind).
pub async fn run(sides: &Sides) -> Result<Vec<String>, MigrationError> {
    let discovery = Discovery::new(sides.target.clone())
        .run_aggregated()
        .await
        .map_err(|e| {
            err(
                "the API discovery",
                &sides.target_cluster,
                &sides.target_ns,
                e,
            )
        })?;
    let selector = sides.selector();
    let mut evidence = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced || !caps.supports_operation(verbs::LIST) {
                continue;
            }
            let target: Api<DynamicObject> =
                Api::namespaced_with(sides.target.clone(), &sides.target_ns, &ar);
            let Ok(copies) = target.list(&ListParams::default().labels(&selector)).await else {
                continue;
            };
            let source: Api<DynamicObject> =
                Api::namespaced_with(sides.source.clone(), &sides.source_ns, &ar);
            for copy in copies {
                let Some(uid) = copy.annotations().get(keys::SOURCE_UID).cloned() else {
                    continue;
                };
                let name = copy.name_any();
                let Some(original) = source.get_opt(&name).await.map_err(|e| {
                    err(
                        "a source object",
                        &sides.source_cluster,
                        &sides.source_ns,
                        e,
                    )
                })?
                else {
                    continue;
                };
                if original.uid().as_deref() != Some(uid.as_str()) {
                    evidence.push(format!("{}/{name}: kept, it was recreated in the source after the move (uid differs)", ar.kind));
                    continue;
                }
                if ar.kind == "PersistentVolumeClaim" {
                    evidence.extend(retained_disk(sides, &name).await);
                }
                source
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map_err(|e| {
                        err(
                            "a source object",
                            &sides.source_cluster,
                            &sides.source_ns,
                            e,
                        )
                    })?;
                evidence.push(format!(
                    "{}/{name} (uid {uid}) deleted from the source",
                    ar.kind
                ));
            }
        }
    }
    evidence.sort();
    Ok(evidence)
}

/// The line that says a deleted claim's disk stays, when its PV is `Retain`.
async fn retained_disk(sides: &Sides, claim: &str) -> Option<String> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(sides.source.clone(), &sides.source_ns);
    let pv_name = pvcs.get_opt(claim).await.ok()??.spec?.volume_name?;
    let pv = Api::<PersistentVolume>::all(sides.source.clone())
        .get_opt(&pv_name)
        .await
        .ok()??;
    let policy = pv
        .spec?
        .persistent_volume_reclaim_policy
        .unwrap_or_default();
    (policy == "Retain").then(|| {
        format!(
            "PersistentVolume/{pv_name} (claim {claim}) has reclaimPolicy Retain: its disk stays in the source cluster until someone deletes it"
        )
    })
}
