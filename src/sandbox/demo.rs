//! The sandbox's migration: a sample government application in the source cluster, the clusters,
//! policy and workload registered in the target, and the operator's progress shown until the migration completes or stops. Every name is a parameter (`Names`), so that
//! the tests can run many such migrations side by side on the same two clusters.

use std::time::Duration;

use indicatif::BinaryBytes;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::SandboxError;
use super::objects;
use super::progress::{Board, short_hash};
use crate::api::{SovereignWorkload, SovereignWorkloadStatus, Verdict, VolumeTransfer};

/// The field manager of everything the demo puts into the clusters.
const MANAGER: &str = "sovereign-sandbox";
/// The label an operator serving one shard selects on (`--watch-label-selector`).
pub const SHARD_LABEL: &str = "sovereign.dev/shard";

/// The names of one migration's objects.
#[derive(Clone, Debug)]
pub struct Names {
    /// The application's namespace in the source.
    pub app: String,
    /// Its namespace in the target.
    pub target_app: String,
    /// Where the SovereignWorkload lives (target).
    pub workloads: String,
    /// The operator's namespace (target): the source's kubeconfig Secret is there.
    pub operator: String,
    pub source_cluster: String,
    pub target_cluster: String,
    pub policy: String,
    pub workload: String,
    /// The shard label put on this migration's SovereignClusters and workload.
    pub shard: Option<String>,
}

impl Names {
    /// The sandbox's own names (`sovereign sandbox`).
    pub fn sandbox() -> Names {
        Names {
            app: "sante".into(),
            target_app: "sante".into(),
            workloads: WORKLOAD_NAMESPACE.into(),
            operator: "sovereign-system".into(),
            source_cluster: "aws-us-east-1".into(),
            target_cluster: "quebec".into(),
            policy: "quebec-strict".into(),
            workload: WORKLOAD.into(),
            shard: None,
        }
    }

    /// Names of their own for a test called `id` (a DNS label prefix), in shard `id`.
    pub fn for_test(id: &str) -> Names {
        Names {
            app: format!("{id}-sante"),
            target_app: format!("{id}-sante"),
            workloads: format!("{id}-migrations"),
            operator: format!("{id}-system"),
            source_cluster: format!("{id}-aws"),
            target_cluster: format!("{id}-quebec"),
            policy: "quebec-strict".into(),
            workload: WORKLOAD.into(),
            shard: Some(id.to_string()),
        }
    }

    /// The shard's label selector, for the operator serving this migration.
    pub fn selector(&self) -> Option<String> {
        self.shard.as_ref().map(|s| format!("{SHARD_LABEL}={s}"))
    }

    fn shard_labels(&self) -> Value {
        match &self.shard {
            Some(s) => json!({SHARD_LABEL: s}),
            None => json!({}),
        }
    }
}

pub const WORKLOAD: &str = "dossier-sante";
pub const WORKLOAD_NAMESPACE: &str = "migrations";

/// The sample application's objects in namespace `ns`: a small application of a health ministry,
/// as it runs on EKS, using what a real one uses.
pub fn application(ns: &str) -> Vec<Value> {
    let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let labels = json!({"app.kubernetes.io/part-of": "dossier"});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dossier-config", "namespace": ns, "labels": labels},
               "data": {"LOG_LEVEL": "info", "SSO_URL": "https://auth.sante.gouv.qc.ca/realms/dossier"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dossier-db", "namespace": ns, "labels": labels},
               "type": "Opaque", "stringData": {"password": "sandbox-only"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dossier-api", "namespace": ns, "labels": labels,
               "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/dossier-api"}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "dossier-reader", "namespace": ns, "labels": labels},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "dossier-reader", "namespace": ns, "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dossier-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "dossier-api", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-dossier-db-0", "namespace": ns, "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "20Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "wal-dossier-db-0", "namespace": ns, "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "5Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "dossier-documents", "namespace": ns, "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "50Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dossier-api", "namespace": ns, "labels": labels,
               "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
               "spec": {"type": "LoadBalancer", "selector": {"app": "dossier-api"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dossier-db", "namespace": ns, "labels": labels},
               "spec": {"clusterIP": "None", "selector": {"app": "dossier-db"}, "ports": [{"port": 5432}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dossier-api", "namespace": ns, "labels": labels},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "dossier-api"}},
                        "template": {"metadata": {"labels": {"app": "dossier-api"}}, "spec": {
                            "serviceAccountName": "dossier-api",
                            "nodeSelector": {"topology.kubernetes.io/region": "us-east-1"},
                            "containers": [{"name": "api", "image": format!("{ecr}/dossier/api:2.4.1"),
                                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                                            "envFrom": [{"configMapRef": {"name": "dossier-config"}}],
                                            "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "dossier-db", "key": "password"}}}],
                                            "volumeMounts": [{"name": "documents", "mountPath": "/srv/documents"}]}],
                            "volumes": [{"name": "documents", "persistentVolumeClaim": {"claimName": "dossier-documents"}}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "dossier-db", "namespace": ns, "labels": labels},
               "spec": {"replicas": 1, "serviceName": "dossier-db", "selector": {"matchLabels": {"app": "dossier-db"}},
                        "template": {"metadata": {"labels": {"app": "dossier-db"}}, "spec": {
                            "containers": [{"name": "postgres", "image": format!("{ecr}/mirror/postgres:16.4"),
                                            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                                            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                                             {"name": "wal", "mountPath": "/var/lib/postgresql/wal"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "20Gi"}}}},
                                                 {"metadata": {"name": "wal"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "5Gi"}}}}]}}),
        // A node agent shipping the application's logs: stopped with the source at cutover (a
        // DaemonSet has no replica count; it is held by a node selector no node matches).
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "dossier-log-agent", "namespace": ns, "labels": labels},
               "spec": {"selector": {"matchLabels": {"app": "dossier-log-agent"}},
                        "template": {"metadata": {"labels": {"app": "dossier-log-agent"}}, "spec": {
                            "containers": [{"name": "fluent-bit", "image": format!("{ecr}/mirror/fluent-bit:3.1"),
                                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "dossier-purge", "namespace": ns, "labels": labels},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                        "containers": [{"name": "purge", "image": format!("{ecr}/dossier/purge:1.0")}]}}}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "dossier", "namespace": ns, "labels": labels},
               "spec": {"rules": [{"host": "dossier.sante.gouv.qc.ca", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "dossier-api", "port": {"number": 443}}}}]}}]}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "dossier-api", "namespace": ns, "labels": labels},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dossier-api"}, "minReplicas": 3, "maxReplicas": 10}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "dossier-api", "namespace": ns, "labels": labels},
               "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "dossier-api"}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "dossier-db", "namespace": ns, "labels": labels},
               "spec": {"podSelector": {"matchLabels": {"app": "dossier-db"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "dossier-api"}}}]}]}}),
    ]
}

/// Puts the application into the source.
pub async fn seed_application(source: &Client, names: &Names) -> Result<(), SandboxError> {
    objects::apply_all(source, &application(&names.app), MANAGER).await?;
    Ok(())
}

/// The SovereignWorkload of the demo, in `names`, for the target profile's storage class.
pub fn workload(names: &Names, target_profile: &str) -> Value {
    let class = if target_profile == "ovh-bhs5" {
        "csi-cinder-high-speed"
    } else {
        "ceph-rbd"
    };
    json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": names.workload, "namespace": names.workloads, "labels": names.shard_labels()},
        "spec": {"source": {"cluster": names.source_cluster, "namespace": names.app, "selector": {"matchLabels": {"app.kubernetes.io/part-of": "dossier"}}},
                 "target": {"cluster": names.target_cluster, "namespace": names.target_app, "storageClassMap": {"gp3": class},
                            "imageRewrites": [{"from": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "to": "registry.sante.gouv.qc.ca"}]},
                 "mode": "Move", "cutover": {"strategy": "Automatic"}, "residencyPolicy": names.policy,
                 "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0412"},
                 "cost": {"currency": "CAD", "budget": {"amount": 5000, "currency": "CAD"}}}})
}

/// Registers everything, then the workload with `patch` merged over its spec. `source_kubeconfig`
/// is what the operator reaches the source with.
pub async fn register(
    source_kubeconfig: &str,
    target: &Client,
    names: &Names,
    target_profile: &str,
    patch: &Value,
) -> Result<(), SandboxError> {
    register_clusters(source_kubeconfig, target, names, target_profile).await?;
    let mut w = workload(names, target_profile);
    merge(&mut w["spec"], patch);
    objects::apply(target, &w, MANAGER).await?;
    Ok(())
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Installs the CRDs in the target and registers both clusters and the policy there, with the
/// namespace for workloads: everything a SovereignWorkload needs but the workload itself.
pub async fn register_clusters(
    source_kubeconfig: &str,
    target: &Client,
    names: &Names,
    target_profile: &str,
) -> Result<(), SandboxError> {
    install_crds(target).await?;
    let mut objs = cluster_objects(source_kubeconfig, names, target_profile);
    objs.push(json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy", "metadata": {"name": names.policy},
        "spec": {"enforcement": "Block", "allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"],
                 "allowedRegistries": [SANTE_REGISTRY], "requirePrivacyImpactAssessment": true}}));
    objects::apply_all(target, &objs, MANAGER).await?;
    Ok(())
}

/// The registry of the sample application's images, beyond the policy's location test.
pub const SANTE_REGISTRY: &str = "registry.sante.gouv.qc.ca";

/// Registers both clusters and the workload in a target where the chart installed the CRDs and
/// the policy.
pub async fn register_with_chart(
    source_kubeconfig: &str,
    target: &Client,
    names: &Names,
    target_profile: &str,
) -> Result<(), SandboxError> {
    let mut objs = cluster_objects(source_kubeconfig, names, target_profile);
    objs.push(workload(names, target_profile));
    objects::apply_all(target, &objs, MANAGER).await?;
    Ok(())
}

/// The namespaces, the source's kubeconfig Secret and both SovereignClusters.
fn cluster_objects(source_kubeconfig: &str, names: &Names, target_profile: &str) -> Vec<Value> {
    let mut objs = Vec::new();
    for ns in [&names.operator, &names.workloads] {
        objs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    objs.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": names.source_cluster, "namespace": names.operator},
        "type": "Opaque", "stringData": {"kubeconfig": source_kubeconfig}}));
    objs.push(json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
        "metadata": {"name": names.source_cluster, "labels": names.shard_labels()},
        "spec": {"kubeconfigSecretRef": {"namespace": names.operator, "name": names.source_cluster, "key": "kubeconfig"},
                 "provider": "aws", "region": "us-east-1", "location": {"country": "US", "province": "VA", "city": "Ashburn"}, "jurisdiction": "US",
                 "probeInterval": "30s",
                 "pricing": {"currency": "USD", "egressTiers": [{"upToGiB": 10240, "perGiB": 0.09}, {"upToGiB": 51200, "perGiB": 0.085}],
                             "freeEgressGiB": 100, "storagePerGiBMonth": {"gp3": 0.08}, "vcpuHour": 0.04, "memoryGiBHour": 0.005,
                             "loadBalancerHour": 0.0225, "controlPlaneHour": 0.10}}}));
    objs.push(target_cluster(names, target_profile));
    objs
}

fn target_cluster(names: &Names, target_profile: &str) -> Value {
    let meta = json!({"name": names.target_cluster, "labels": names.shard_labels()});
    if target_profile == "ovh-bhs5" {
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": meta,
            "spec": {"inCluster": true, "provider": "ovhcloud", "region": "bhs5", "location": {"country": "CA", "province": "QC", "city": "Beauharnois"},
                     "jurisdiction": "FR", "probeInterval": "30s"}})
    } else {
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": meta,
            "spec": {"inCluster": true, "provider": "micrologic", "region": "qc-quebec", "location": {"country": "CA", "province": "QC", "city": "Québec"},
                     "jurisdiction": "CA", "probeInterval": "30s",
                     "pricing": {"currency": "CAD", "egressPerGiB": 0, "storagePerGiBMonth": {"ceph-rbd": 0.11}, "vcpuHour": 0.035,
                                 "memoryGiBHour": 0.0045, "loadBalancerHour": 0.015, "controlPlaneHour": 0}}})
    }
}

/// The operator's CRDs, applied and established (served) before anything uses them.
pub async fn install_crds(client: &Client) -> Result<(), SandboxError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::api::crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(SandboxError::api(format!("applying the CRD {name}")))?;
    }
    let names: Vec<String> = crate::api::crds().iter().map(|c| c.name_any()).collect();
    objects::wait_established(client, &names, Duration::from_secs(60))
        .await
        .map_err(SandboxError::Demo)?;
    Ok(())
}

/// How far the migration went.
pub enum Outcome {
    Completed,
    /// Rolled back, failed, paused, blocked or stalled: the reason.
    Stopped(String),
}

/// What `follow` saw last: how it ended, the workload's status and its volumes' transfers.
pub struct Followed {
    pub outcome: Outcome,
    pub status: Option<SovereignWorkloadStatus>,
    pub transfers: Vec<VolumeTransfer>,
}

/// How long nothing visible may change before `follow` gives up. Longer than the default health
/// timeout of the target (10m), so that the operator's own verdict on a slow start comes first; a
/// long pass is not a stall as long as its bytes move.
const STALL: Duration = Duration::from_secs(15 * 60);

/// Follows the workload and its VolumeTransfers in the target on the board until the migration
/// settles (completed, or stopped with a reason).
pub async fn follow(
    target: &Client,
    names: &Names,
    board: &mut Board,
) -> Result<Followed, SandboxError> {
    let client = target.clone();
    board.restart_clock();
    let api: Api<SovereignWorkload> = Api::namespaced(client.clone(), &names.workloads);
    let vts: Api<VolumeTransfer> = Api::namespaced(client, &names.workloads);
    let mut transfers: Vec<VolumeTransfer> = Vec::new();
    let mut status = None;
    // What the board shows, as one comparable value: when it has not changed for STALL, give up.
    let mut seen = String::new();
    let mut changed_at = tokio::time::Instant::now();
    loop {
        // A failed read (the API server busy) is retried at the next tick; the stall deadline
        // bounds how long that may go on.
        if let Ok(list) = vts.list(&ListParams::default()).await {
            transfers = list
                .items
                .into_iter()
                .filter(|vt| vt.spec.workload == names.workload)
                .collect();
            transfers.sort_by_key(|vt| vt.spec.source.pvc.clone());
            for vt in &transfers {
                board.transfer(vt);
            }
        }
        if let Ok(w) = api.get(&names.workload).await
            && let Some(s) = w.status
        {
            board.workload(&s);
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
            let reason = ready.map(|c| c.reason.clone()).unwrap_or_default();
            let phase = s.phase.map(|p| p.as_str()).unwrap_or("Pending");
            let stalled = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True");
            let outcome = if phase == "Completed" && ready.is_some_and(|c| c.status == "True") {
                Some(Outcome::Completed)
            } else if stalled || ["Paused", "RolledBack", "Failed"].contains(&phase) {
                Some(Outcome::Stopped(format!(
                    "{phase}, {reason}: {}",
                    s.message.clone().unwrap_or_default()
                )))
            } else {
                None
            };
            let now = format!(
                "{phase} {reason} {:?} {:?}",
                s.message,
                transfers
                    .iter()
                    .map(|t| t.status.as_ref().map(|s| (s.pass, s.bytes_done, s.phase)))
                    .collect::<Vec<_>>()
            );
            if now != seen {
                seen = now;
                changed_at = tokio::time::Instant::now();
            }
            status = Some(s);
            if let Some(outcome) = outcome {
                board.finish();
                return Ok(Followed {
                    outcome,
                    status,
                    transfers,
                });
            }
        }
        if changed_at.elapsed() > STALL {
            board.finish();
            let last = status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default();
            return Ok(Followed {
                outcome: Outcome::Stopped(format!(
                    "nothing changed for {}s (last: {last})",
                    STALL.as_secs()
                )),
                status,
                transfers,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What was planned: the plan's size and transforms, the first findings.
pub fn print_plan(s: &SovereignWorkloadStatus) {
    if let Some(p) = &s.plan {
        println!(
            "  plan       {}  {} objects, {} volumes, {:.1} GiB to move",
            short_hash(&p.hash),
            p.objects,
            p.volumes,
            p.bytes as f64 / (1u64 << 30) as f64
        );
        println!("  transforms {}", p.transforms.join(", "));
        for f in p.findings.iter().take(8) {
            println!(
                "  finding    {:?} {} {}: {}",
                f.severity, f.object, f.evidence, f.remediation
            );
        }
    }
}

/// What moved and what it proves: objects, volumes with their root hashes, the residency verdict
/// and the cost. Parts the workload never reached are left out.
pub fn print_result(f: &Followed) {
    let Some(s) = &f.status else { return };
    if let Some(p) = &s.progress
        && p.objects_total > 0
    {
        println!(
            "  objects    {} of {} applied in the target",
            p.objects_done, p.objects_total
        );
    }
    for v in &s.volumes {
        let vt = f.transfers.iter().find(|t| t.name_any() == v.transfer);
        let st = vt.and_then(|t| t.status.clone()).unwrap_or_default();
        let bytes = BinaryBytes(u64::try_from(v.bytes_total).unwrap_or(0));
        let wire = BinaryBytes(u64::try_from(st.wire_bytes).unwrap_or(0));
        let verified = st.source_root_hash.is_some() && st.source_root_hash == st.target_root_hash;
        let root = v
            .root_hash
            .as_deref()
            .or(st.target_root_hash.as_deref())
            .unwrap_or("-");
        println!(
            "  volume     {:<22} {bytes}, {} pass(es), {wire} on the wire, root {root}{}",
            v.pvc,
            v.pass,
            if verified { " (source = target)" } else { "" }
        );
    }
    if let Some(r) = &s.residency {
        let verdict = match r.verdict {
            Verdict::Compliant => "Compliant",
            Verdict::NonCompliant => "NonCompliant",
            Verdict::Unknown => "Unknown",
        };
        println!(
            "  residency  {verdict} (location {}, jurisdiction {})",
            r.location.as_deref().unwrap_or("?"),
            r.jurisdiction.as_deref().unwrap_or("?")
        );
    }
    if let Some(c) = &s.cost {
        let monthly = c
            .estimated
            .as_ref()
            .map(|e| {
                format!(
                    "; monthly {:.2} → {:.2} {}",
                    e.monthly_before, e.monthly_after, c.currency
                )
            })
            .unwrap_or_default();
        println!(
            "  cost       {} one-time{monthly}",
            c.display.as_deref().unwrap_or("-")
        );
    }
    if let (Some(cut), Some(done)) = (&s.cutover_at, &s.completed_at) {
        let secs = done.0.duration_since(cut.0).as_secs_f64();
        println!("  cutover    {secs:.1}s from quiescing the source to the target serving");
    }
}
