//! The scalable objects of a migration on either side: reading their replica counts and readiness,
//! scaling them, suspending CronJobs, holding DaemonSets (a node selector no node matches, the
//! way a DaemonSet is stopped without deleting it). Every write is a no-op when the object already
//! is as wanted, so a step repeated after a crash changes nothing.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::workload::{QuiescedObject, keys};

use super::MigrationError;

const SCALABLE: [&str; 2] = ["Deployment", "StatefulSet"];
/// Kinds whose pods must be gone before the source counts as quiesced.
const RUN_PODS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// A workload object as the migration sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    /// `spec.replicas` (Deployments, StatefulSets).
    pub replicas: Option<i32>,
    /// `spec.suspend` (CronJobs); held by the node selector `keys::HELD` (DaemonSets).
    pub suspended: Option<bool>,
    /// DaemonSets: the nodes that should run a pod (`status.desiredNumberScheduled`).
    pub desired: i32,
    /// Pods that exist (`status.replicas`); zero once a scale-down finished.
    pub running: i32,
    pub ready: i32,
    /// Whether the status describes the current spec (`observedGeneration`).
    pub observed: bool,
    /// On the target: the replica count / suspension to restore at cutover.
    pub wanted_replicas: Option<i32>,
    pub wanted_suspended: Option<bool>,
    /// The label selector of its pods, as `k=v,k=v`.
    pub selector: Option<String>,
}

fn selector_of(labels: Option<&std::collections::BTreeMap<String, String>>) -> Option<String> {
    labels.filter(|l| !l.is_empty()).map(|l| {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn annotation_i32(o: &impl ResourceExt, key: &str) -> Option<i32> {
    o.annotations().get(key).and_then(|v| v.parse().ok())
}

fn annotation_bool(o: &impl ResourceExt, key: &str) -> Option<bool> {
    o.annotations().get(key).and_then(|v| v.parse().ok())
}

fn read_err(what: &'static str, cluster: &str, ns: &str, source: kube::Error) -> MigrationError {
    MigrationError::Kube {
        what,
        cluster: cluster.to_string(),
        namespace: ns.to_string(),
        source,
    }
}

/// Lists the Deployments, StatefulSets and CronJobs of a namespace, optionally only those carrying a
/// label selector (the target side: the objects this workload created).
pub async fn list(
    client: &Client,
    cluster: &str,
    ns: &str,
    labels: Option<&str>,
) -> Result<Vec<Workload>, MigrationError> {
    let lp = match labels {
        Some(l) => ListParams::default().labels(l),
        None => ListParams::default(),
    };
    let mut out = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    for d in deployments
        .list(&lp)
        .await
        .map_err(|e| read_err("Deployments", cluster, ns, e))?
    {
        let st = d.status.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        out.push(Workload {
            kind: "Deployment".into(),
            name: d.name_any(),
            replicas: Some(spec.replicas.unwrap_or(1)),
            suspended: None,
            desired: 0,
            running: st.replicas.unwrap_or(0),
            ready: st.ready_replicas.unwrap_or(0),
            observed: st.observed_generation.is_some()
                && st.observed_generation >= d.metadata.generation,
            wanted_replicas: annotation_i32(&d, keys::REPLICAS),
            wanted_suspended: None,
            selector: selector_of(spec.selector.match_labels.as_ref()),
        });
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    for s in sets
        .list(&lp)
        .await
        .map_err(|e| read_err("StatefulSets", cluster, ns, e))?
    {
        let st = s.status.clone().unwrap_or_default();
        let spec = s.spec.clone().unwrap_or_default();
        out.push(Workload {
            kind: "StatefulSet".into(),
            name: s.name_any(),
            replicas: Some(spec.replicas.unwrap_or(1)),
            suspended: None,
            desired: 0,
            running: st.replicas,
            ready: st.ready_replicas.unwrap_or(0),
            observed: st.observed_generation.is_some()
                && st.observed_generation >= s.metadata.generation,
            wanted_replicas: annotation_i32(&s, keys::REPLICAS),
            wanted_suspended: None,
            selector: selector_of(spec.selector.match_labels.as_ref()),
        });
    }
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    for d in daemons
        .list(&lp)
        .await
        .map_err(|e| read_err("DaemonSets", cluster, ns, e))?
    {
        let st = d.status.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        let held = spec
            .template
            .spec
            .as_ref()
            .and_then(|p| p.node_selector.as_ref())
            .and_then(|n| n.get(keys::HELD))
            .is_some_and(|v| v == "true");
        out.push(Workload {
            kind: "DaemonSet".into(),
            name: d.name_any(),
            replicas: None,
            suspended: Some(held),
            desired: st.desired_number_scheduled,
            running: st.current_number_scheduled,
            ready: st.number_ready,
            observed: st.observed_generation.is_some()
                && st.observed_generation >= d.metadata.generation,
            wanted_replicas: None,
            wanted_suspended: annotation_bool(&d, keys::SUSPENDED),
            selector: selector_of(spec.selector.match_labels.as_ref()),
        });
    }
    let crons: Api<CronJob> = Api::namespaced(client.clone(), ns);
    for c in crons
        .list(&lp)
        .await
        .map_err(|e| read_err("CronJobs", cluster, ns, e))?
    {
        let spec = c.spec.clone().unwrap_or_default();
        out.push(Workload {
            kind: "CronJob".into(),
            name: c.name_any(),
            replicas: None,
            suspended: Some(spec.suspend.unwrap_or(false)),
            desired: 0,
            running: c
                .status
                .as_ref()
                .and_then(|s| s.active.as_ref())
                .map(|a| a.len() as i32)
                .unwrap_or(0),
            ready: 0,
            observed: true,
            wanted_replicas: None,
            wanted_suspended: annotation_bool(&c, keys::SUSPENDED),
            selector: None,
        });
    }
    Ok(out)
}

/// What the source looked like before quiescing, for the objects the target holds a copy of: the
/// record a rollback restores. Pure.
pub fn record(source: &[Workload], target: &[Workload]) -> Vec<QuiescedObject> {
    target
        .iter()
        .filter_map(|t| source.iter().find(|s| s.kind == t.kind && s.name == t.name))
        .map(|s| QuiescedObject {
            kind: s.kind.clone(),
            name: s.name.clone(),
            replicas: s.replicas,
            suspended: s.suspended,
        })
        .collect()
}

async fn set_replicas(
    client: &Client,
    cluster: &str,
    ns: &str,
    kind: &str,
    name: &str,
    replicas: i32,
) -> Result<(), MigrationError> {
    let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    // Named, so that the source objects' managedFields say who scaled or suspended them.
    let pp = PatchParams {
        field_manager: Some(crate::controller::context::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let result = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(name, &pp, &patch)
            .await
            .map(|_| ()),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .patch(name, &pp, &patch)
            .await
            .map(|_| ()),
        _ => Ok(()),
    };
    result.map_err(|e| read_err("a scale", cluster, ns, e))
}

async fn set_suspend(
    client: &Client,
    cluster: &str,
    ns: &str,
    kind: &str,
    name: &str,
    suspend: bool,
) -> Result<(), MigrationError> {
    // Named, so that the source objects' managedFields say who scaled or suspended them.
    let pp = PatchParams {
        field_manager: Some(crate::controller::context::FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match kind {
        "CronJob" => Api::<CronJob>::namespaced(client.clone(), ns)
            .patch(
                name,
                &pp,
                &Patch::Merge(json!({"spec": {"suspend": suspend}})),
            )
            .await
            .map(|_| ())
            .map_err(|e| read_err("a CronJob suspension", cluster, ns, e)),
        "DaemonSet" => {
            // A merge patch with null removes the key: the DaemonSet runs where it did before.
            let value = if suspend { json!("true") } else { json!(null) };
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(
                    name,
                    &pp,
                    &Patch::Merge(json!({"spec": {"template": {"spec": {"nodeSelector": {keys::HELD: value}}}}})),
                )
                .await
                .map(|_| ())
                .map_err(|e| read_err("a DaemonSet hold", cluster, ns, e))
        }
        _ => Ok(()),
    }
}

/// Brings each object to the wanted replica count / suspension; returns how many writes it made.
/// Objects already as wanted are not written.
pub async fn converge(
    client: &Client,
    cluster: &str,
    ns: &str,
    current: &[Workload],
    wanted: &[QuiescedObject],
) -> Result<usize, MigrationError> {
    let mut writes = 0;
    for w in wanted {
        let Some(now) = current
            .iter()
            .find(|c| c.kind == w.kind && c.name == w.name)
        else {
            continue;
        };
        if let Some(r) = w.replicas
            && SCALABLE.contains(&w.kind.as_str())
            && now.replicas != Some(r)
        {
            set_replicas(client, cluster, ns, &w.kind, &w.name, r).await?;
            writes += 1;
        }
        if let Some(s) = w.suspended
            && (w.kind == "CronJob" || w.kind == "DaemonSet")
            && now.suspended != Some(s)
        {
            set_suspend(client, cluster, ns, &w.kind, &w.name, s).await?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// The quiesced form of a record: every workload at zero, every CronJob suspended.
pub fn stopped(record: &[QuiescedObject]) -> Vec<QuiescedObject> {
    record
        .iter()
        .map(|q| QuiescedObject {
            kind: q.kind.clone(),
            name: q.name.clone(),
            replicas: q.replicas.map(|_| 0),
            suspended: q.suspended.map(|_| true),
        })
        .collect()
}

/// The started form of the target's objects: the replica counts and suspensions the annotations
/// carry from the source.
pub fn started(target: &[Workload]) -> Vec<QuiescedObject> {
    target
        .iter()
        .filter(|t| t.wanted_replicas.is_some() || t.wanted_suspended.is_some())
        .map(|t| QuiescedObject {
            kind: t.kind.clone(),
            name: t.name.clone(),
            replicas: t.wanted_replicas,
            suspended: t.wanted_suspended,
        })
        .collect()
}

/// Whether every object named in `record` that runs pods has none left. Pure.
pub fn drained(current: &[Workload], record: &[QuiescedObject]) -> Vec<String> {
    record
        .iter()
        .filter(|q| RUN_PODS.contains(&q.kind.as_str()))
        .filter_map(|q| {
            let c = current
                .iter()
                .find(|c| c.kind == q.kind && c.name == q.name)?;
            (c.running > 0 || !c.observed)
                .then(|| format!("{}/{} ({} pod(s))", c.kind, c.name, c.running))
        })
        .collect()
}

/// The target's workloads that are not yet serving as wanted. Pure.
pub fn unhealthy(target: &[Workload]) -> Vec<&Workload> {
    target
        .iter()
        .filter(|t| RUN_PODS.contains(&t.kind.as_str()))
        .filter(|t| {
            if t.kind == "DaemonSet" {
                // Released (unless it was held in the source too) and a ready pod on every node
                // it should run on.
                let held = t.wanted_suspended.unwrap_or(false);
                return !(t.observed
                    && t.suspended == Some(held)
                    && (held || t.ready >= t.desired));
            }
            let want = t.wanted_replicas.unwrap_or(t.replicas.unwrap_or(0));
            !(t.observed && t.replicas == Some(want) && t.ready >= want)
        })
        .collect()
}

/// Why a workload's pods are not ready, from the pods themselves (the scheduler's and kubelet's
/// words), for the condition a person reads.
pub async fn diagnose(client: &Client, ns: &str, w: &Workload) -> String {
    let want = w.wanted_replicas.unwrap_or(0);
    let head = format!("{}/{}: {}/{} ready", w.kind, w.name, w.ready, want);
    let Some(selector) = &w.selector else {
        return head;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods.list(&ListParams::default().labels(selector)).await else {
        return head;
    };
    for p in list {
        let st = p.status.clone().unwrap_or_default();
        for c in st.conditions.unwrap_or_default() {
            if c.status == "False"
                && let Some(m) = c.message.filter(|m| !m.is_empty())
            {
                return format!(
                    "{head}; pod {}: {} {}: {m}",
                    p.name_any(),
                    c.type_,
                    c.reason.unwrap_or_default()
                );
            }
        }
        for cs in st.container_statuses.unwrap_or_default() {
            if let Some(w) = cs.state.and_then(|s| s.waiting)
                && let Some(reason) = w.reason
            {
                return format!(
                    "{head}; pod {}: container {}: {reason}",
                    p.name_any(),
                    cs.name
                );
            }
        }
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: &str, name: &str, replicas: Option<i32>, running: i32, ready: i32) -> Workload {
        Workload {
            kind: kind.into(),
            name: name.into(),
            replicas,
            suspended: (kind == "CronJob").then_some(false),
            desired: 0,
            running,
            ready,
            observed: true,
            wanted_replicas: None,
            wanted_suspended: None,
            selector: None,
        }
    }

    #[test]
    fn the_record_names_only_what_the_target_holds_and_keeps_the_source_counts() {
        let source = vec![
            w("Deployment", "web", Some(3), 3, 3),
            w("StatefulSet", "db", Some(1), 1, 1),
            w("Deployment", "other", Some(2), 2, 2),
            w("CronJob", "backup", None, 0, 0),
        ];
        let target = vec![
            w("Deployment", "web", Some(0), 0, 0),
            w("StatefulSet", "db", Some(0), 0, 0),
            w("CronJob", "backup", None, 0, 0),
        ];
        let r = record(&source, &target);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].replicas, Some(3));
        assert_eq!(r[1].replicas, Some(1));
        assert_eq!(r[2].suspended, Some(false));
        let s = stopped(&r);
        assert!(s.iter().all(|q| q.replicas.unwrap_or(0) == 0));
        assert_eq!(s[2].suspended, Some(true));
    }

    #[test]
    fn drained_waits_for_pods_and_for_the_status_to_catch_up() {
        let record = vec![QuiescedObject {
            kind: "Deployment".into(),
            name: "web".into(),
            replicas: Some(3),
            suspended: None,
        }];
        assert_eq!(
            drained(&[w("Deployment", "web", Some(0), 2, 0)], &record).len(),
            1
        );
        let mut stale = w("Deployment", "web", Some(0), 0, 0);
        stale.observed = false;
        assert_eq!(drained(&[stale], &record).len(), 1);
        assert!(drained(&[w("Deployment", "web", Some(0), 0, 0)], &record).is_empty());
    }

    #[test]
    fn a_daemonset_is_held_and_released_through_its_suspension() {
        let mut src = w("DaemonSet", "agent", None, 3, 3);
        src.suspended = Some(false);
        src.desired = 3;
        let mut dst = src.clone();
        dst.suspended = Some(true);
        dst.wanted_suspended = Some(false);
        dst.running = 0;
        dst.ready = 0;
        let r = record(std::slice::from_ref(&src), std::slice::from_ref(&dst));
        assert_eq!(r[0].suspended, Some(false));
        assert_eq!(stopped(&r)[0].suspended, Some(true));
        // Its pods must be gone before the source counts as quiesced.
        assert_eq!(drained(std::slice::from_ref(&src), &stopped(&r)).len(), 1);
        src.running = 0;
        assert!(drained(&[src], &stopped(&r)).is_empty());
        // Still held in the target: not healthy; released with every pod ready: healthy.
        assert_eq!(
            started(std::slice::from_ref(&dst))[0].suspended,
            Some(false)
        );
        assert_eq!(unhealthy(std::slice::from_ref(&dst)).len(), 1);
        dst.suspended = Some(false);
        dst.ready = 2;
        assert_eq!(unhealthy(std::slice::from_ref(&dst)).len(), 1);
        dst.ready = 3;
        assert!(unhealthy(&[dst]).is_empty());
    }

    #[test]
    fn healthy_means_scaled_to_the_wanted_count_and_all_ready() {
        let mut t = w("Deployment", "web", Some(3), 3, 2);
        t.wanted_replicas = Some(3);
        assert_eq!(unhealthy(std::slice::from_ref(&t)).len(), 1);
        t.ready = 3;
        assert!(unhealthy(std::slice::from_ref(&t)).is_empty());
        // Not yet scaled up: not healthy even though nothing is unready.
        let mut z = w("StatefulSet", "db", Some(0), 0, 0);
        z.wanted_replicas = Some(1);
        assert_eq!(unhealthy(&[z]).len(), 1);
    }
}
