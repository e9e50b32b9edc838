//! The sandbox's migration: a sample government application in the source cluster, the clusters,
//! policy and workload registered in the target, the operator running in-process, and its progress
//! shown until the migration completes or stops.

use std::time::Duration;

use indicatif::BinaryBytes;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::api::WriteOptions;
use super::progress::{Board, short_hash};
use super::{SandboxError, SimCluster};
use crate::api::{SovereignWorkload, SovereignWorkloadStatus, Verdict, VolumeTransfer};
use crate::controller::{RunArgs, run_with};
use crate::telemetry::logging::LogFormat;

pub const WORKLOAD: &str = "dossier-sante";
pub const WORKLOAD_NAMESPACE: &str = "migrations";

fn create(c: &SimCluster, obj: Value) -> Result<(), SandboxError> {
    c.api().create_object(obj, &WriteOptions::default())?;
    Ok(())
}

/// A small application of a health ministry, as it runs on EKS: what a real one uses.
pub fn seed_application(source: &SimCluster) -> Result<(), SandboxError> {
    let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let labels = json!({"app.kubernetes.io/part-of": "dossier"});
    for obj in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sante"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dossier-config", "namespace": "sante", "labels": labels},
               "data": {"LOG_LEVEL": "info", "SSO_URL": "https://auth.sante.gouv.qc.ca/realms/dossier"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dossier-db", "namespace": "sante", "labels": labels},
               "type": "Opaque", "stringData": {"password": "sandbox-only"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "dossier-api", "namespace": "sante", "labels": labels,
               "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/dossier-api"}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "dossier-reader", "namespace": "sante", "labels": labels},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "dossier-reader", "namespace": "sante", "labels": labels},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dossier-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "dossier-api", "namespace": "sante"}]}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-dossier-db-0", "namespace": "sante", "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "20Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "wal-dossier-db-0", "namespace": "sante", "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "5Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "dossier-documents", "namespace": "sante", "labels": labels},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "50Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dossier-api", "namespace": "sante", "labels": labels,
               "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
               "spec": {"type": "LoadBalancer", "selector": {"app": "dossier-api"}, "ports": [{"port": 443, "targetPort": 8443}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dossier-db", "namespace": "sante", "labels": labels},
               "spec": {"clusterIP": "None", "selector": {"app": "dossier-db"}, "ports": [{"port": 5432}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dossier-api", "namespace": "sante", "labels": labels},
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
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "dossier-db", "namespace": "sante", "labels": labels},
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
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "dossier-log-agent", "namespace": "sante", "labels": labels},
               "spec": {"selector": {"matchLabels": {"app": "dossier-log-agent"}},
                        "template": {"metadata": {"labels": {"app": "dossier-log-agent"}}, "spec": {
                            "containers": [{"name": "fluent-bit", "image": format!("{ecr}/mirror/fluent-bit:3.1"),
                                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "dossier-purge", "namespace": "sante", "labels": labels},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                        "containers": [{"name": "purge", "image": format!("{ecr}/dossier/purge:1.0")}]}}}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "dossier", "namespace": "sante", "labels": labels},
               "spec": {"rules": [{"host": "dossier.sante.gouv.qc.ca", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "dossier-api", "port": {"number": 443}}}}]}}]}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "dossier-api", "namespace": "sante", "labels": labels},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "dossier-api"}, "minReplicas": 3, "maxReplicas": 10}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "dossier-api", "namespace": "sante", "labels": labels},
               "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "dossier-api"}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "dossier-db", "namespace": "sante", "labels": labels},
               "spec": {"podSelector": {"matchLabels": {"app": "dossier-db"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "dossier-api"}}}]}]}}),
    ] {
        create(source, obj)?;
    }
    Ok(())
}

/// Installs the CRDs and registers the clusters, the policy and the workload in the target.
pub fn register(
    source: &SimCluster,
    target: &SimCluster,
    target_profile: &str,
) -> Result<(), SandboxError> {
    register_clusters(source, target, target_profile)?;
    let class = if target_profile == "ovh-bhs5" {
        "csi-cinder-high-speed"
    } else {
        "ceph-rbd"
    };
    create(
        target,
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": WORKLOAD, "namespace": WORKLOAD_NAMESPACE},
        "spec": {"source": {"cluster": "aws-us-east-1", "namespace": "sante", "selector": {"matchLabels": {"app.kubernetes.io/part-of": "dossier"}}},
                 "target": {"cluster": "quebec", "namespace": "sante", "storageClassMap": {"gp3": class},
                            "imageRewrites": [{"from": "123456789012.dkr.ecr.us-east-1.amazonaws.com", "to": "registry.sante.gouv.qc.ca"}]},
                 "mode": "Move", "cutover": {"strategy": "Automatic"}, "residencyPolicy": "quebec-strict",
                 "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0412"},
                 "cost": {"currency": "CAD", "budget": {"amount": 5000, "currency": "CAD"}}}}),
    )
}

/// Installs the CRDs in the target and registers both clusters (`aws-us-east-1`, `quebec`) and the
/// `quebec-strict` policy there, with the namespace `migrations` for workloads: everything a
/// SovereignWorkload needs but the workload itself.
pub fn register_clusters(
    source: &SimCluster,
    target: &SimCluster,
    target_profile: &str,
) -> Result<(), SandboxError> {
    for crd in crate::api::crds() {
        create(
            target,
            serde_json::to_value(crd).map_err(|e| SandboxError::InvalidObject(e.to_string()))?,
        )?;
    }
    for ns in ["sovereign-system", WORKLOAD_NAMESPACE] {
        create(
            target,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
    }
    create(
        target,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws-us-east-1", "namespace": "sovereign-system"},
        "type": "Opaque", "stringData": {"kubeconfig": source.kubeconfig_yaml("source")}}),
    )?;
    create(
        target,
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": "aws-us-east-1"},
        "spec": {"kubeconfigSecretRef": {"namespace": "sovereign-system", "name": "aws-us-east-1", "key": "kubeconfig"},
                 "provider": "aws", "region": "us-east-1", "location": {"country": "US", "province": "VA", "city": "Ashburn"}, "jurisdiction": "US",
                 "probeInterval": "30s",
                 "pricing": {"currency": "USD", "egressTiers": [{"upToGiB": 10240, "perGiB": 0.09}, {"upToGiB": 51200, "perGiB": 0.085}],
                             "freeEgressGiB": 100, "storagePerGiBMonth": {"gp3": 0.08}, "vcpuHour": 0.04, "memoryGiBHour": 0.005,
                             "loadBalancerHour": 0.0225, "controlPlaneHour": 0.10}}}),
    )?;
    let target_cluster = if target_profile == "ovh-bhs5" {
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": "quebec"},
            "spec": {"inCluster": true, "provider": "ovhcloud", "region": "bhs5", "location": {"country": "CA", "province": "QC", "city": "Beauharnois"},
                     "jurisdiction": "FR", "probeInterval": "30s"}})
    } else {
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster", "metadata": {"name": "quebec"},
            "spec": {"inCluster": true, "provider": "micrologic", "region": "qc-quebec", "location": {"country": "CA", "province": "QC", "city": "Québec"},
                     "jurisdiction": "CA", "probeInterval": "30s",
                     "pricing": {"currency": "CAD", "egressPerGiB": 0, "storagePerGiBMonth": {"ceph-rbd": 0.11}, "vcpuHour": 0.035,
                                 "memoryGiBHour": 0.0045, "loadBalancerHour": 0.015, "controlPlaneHour": 0}}})
    };
    create(target, target_cluster)?;
    create(
        target,
        json!({"apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy", "metadata": {"name": "quebec-strict"},
        "spec": {"enforcement": "Block", "allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"],
                 "allowedRegistries": ["registry.sante.gouv.qc.ca"], "requirePrivacyImpactAssessment": true}}),
    )?;
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
    /// The operator, still running.
    pub operator: tokio::task::JoinHandle<()>,
}

/// How long nothing visible may change before `follow` gives up. Longer than the default health
/// timeout of the target (10m), so that the operator's own verdict on a slow start comes first; a
/// long pass is not a stall as long as its bytes move.
const STALL: Duration = Duration::from_secs(15 * 60);

/// Runs the operator against the target and follows the workload and its VolumeTransfers on the
/// board until the migration settles (completed, or stopped with a reason).
pub async fn follow(target: &SimCluster, board: &mut Board) -> Result<Followed, SandboxError> {
    let client = target.client().await?;
    let args = RunArgs {
        metrics_addr: "127.0.0.1:0"
            .parse()
            .map_err(|e: std::net::AddrParseError| SandboxError::InvalidObject(e.to_string()))?,
        log_format: LogFormat::Text,
        leader_elect: true,
        lease_name: "sovereign-operator".into(),
        namespace: "sovereign-system".into(),
        identity: Some("sandbox-operator".into()),
        secret_namespaces: vec![],
        cluster_policy: "quebec-strict".into(),
        catalog_configmap: None,
        concurrency: 4,
        mover_image: crate::controller::context::DEFAULT_MOVER_IMAGE.into(),
        fx_configmap: None,
        residency_recheck: std::time::Duration::from_secs(300),
    };
    let operator_client = client.clone();
    let operator = tokio::spawn(async move {
        if let Err(e) = run_with(operator_client, args, std::future::pending()).await {
            eprintln!("operator stopped: {e}");
        }
    });
    board.restart_clock();
    let api: Api<SovereignWorkload> = Api::namespaced(client.clone(), WORKLOAD_NAMESPACE);
    let vts: Api<VolumeTransfer> = Api::namespaced(client, WORKLOAD_NAMESPACE);
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
                .filter(|vt| vt.spec.workload == WORKLOAD)
                .collect();
            transfers.sort_by_key(|vt| vt.spec.source.pvc.clone());
            for vt in &transfers {
                board.transfer(vt);
            }
        }
        if let Ok(w) = api.get(WORKLOAD).await
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
                    operator,
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
                operator,
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
