//! The `SovereignCluster` controller: reach the cluster through its kubeconfig Secret (or in-cluster),
//! probe what it shows, and report it in status with conditions and Events.
//!
//! observe (Secret → client → probe) → plan (pure: outcome → status) → act (status, Events) → report.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, info, info_span, warn};

use super::context::{Context, FINALIZER};
use super::error::{Error, Result};
use super::status;
use crate::api::SovereignCluster;
use crate::api::cluster::SovereignClusterStatus;
use crate::api::cluster::Sovereignty;
use crate::api::conditions::{self, Desired, READY, RECONCILING, RESIDENCY_COMPLIANT, STALLED};
use crate::api::workload::Phase;
use crate::api::{Severity, Verdict};
use crate::remote::{self, KubeconfigError, Observation, ProbeError};
use crate::residency::{self, Evaluation};
use crate::telemetry::metrics::{ClusterLabels, ControllerName};

const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(300);
const RETRY_UNREACHABLE: Duration = Duration::from_secs(30);

/// What observing a cluster came to.
#[derive(Debug)]
pub enum Outcome {
    /// Its configuration cannot be used.
    Config(KubeconfigError),
    /// It was configured but did not answer as it should.
    Probe(ProbeError),
    /// It answered; what it shows, and the residency verdict drawn from it.
    Observed(Box<Observation>, Evaluation),
}

pub async fn reconcile(obj: Arc<SovereignCluster>, ctx: Arc<Context>) -> Result<Action> {
    let name = obj.name_any();
    let span = info_span!("reconcile", controller = "sovereigncluster", cluster = %name);
    async move {
        let _timer = ctx
            .metrics
            .reconcile_started(ControllerName::SovereignCluster);
        let api: Api<SovereignCluster> = Api::all(ctx.client.clone());
        let result = finalizer(&api, FINALIZER, obj, |event| async {
            match event {
                finalizer::Event::Apply(c) => apply(c, &ctx).await,
                finalizer::Event::Cleanup(c) => cleanup(c, &ctx).await,
            }
        })
        .await;
        super::finalize::outcome(&ctx, "SovereignCluster", name, result)
    }
    .instrument(span)
    .await
}

pub fn error_policy(obj: Arc<SovereignCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(cluster = %obj.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_failed(ControllerName::SovereignCluster, error.reason());
    Action::requeue(ctx.next_retry(&obj.name_any()))
}

fn probe_interval(c: &SovereignCluster) -> Duration {
    c.spec
        .probe_interval
        .as_deref()
        .and_then(|s| s.parse::<kube::core::Duration>().ok())
        .map(Duration::from)
        .unwrap_or(DEFAULT_PROBE_INTERVAL)
}

async fn apply(c: Arc<SovereignCluster>, ctx: &Context) -> Result<Action> {
    let name = c.name_any();
    let interval = probe_interval(&c);

    // observe
    let access = remote::client_for(&c, &ctx.client, &ctx.secret_namespaces).await;
    let fingerprint = format!(
        "{}|{}",
        c.metadata.generation.unwrap_or_default(),
        access
            .as_ref()
            .map(|a| a.source_version.as_str())
            .unwrap_or("error")
    );
    if access.is_ok()
        && let Some(due) = ctx.probe_due_in(&name, &fingerprint, interval)
    {
        return Ok(Action::requeue(due));
    }
    let outcome = match access {
        Err(e) => Outcome::Config(e),
        Ok(a) => match remote::probe(&a.client).await {
            Ok(mut o) => {
                o.inventory.api_server_host = a.server_host.clone();
                let (policy, catalog) = (ctx.cluster_policy(), ctx.catalog().await);
                let residency = residency::evaluate(&o.inventory, Some(&c.spec), &policy, &catalog);
                Outcome::Observed(Box::new(o), residency)
            }
            Err(e) => Outcome::Probe(e),
        },
    };
    if matches!(outcome, Outcome::Observed(..)) {
        ctx.probed(&name, &fingerprint);
    }

    // plan
    let now = Time(Timestamp::now());
    let old = c.status.clone().unwrap_or_default();
    let status = plan_status(&c, &old, &outcome, &now);

    // act
    let reachable = status.reachable == Some(true);
    let api: Api<SovereignCluster> = Api::all(ctx.client.clone());
    status::write(&api, &name, &old, &status).await?;
    if let Some(ev) = transition_event(&old, &status) {
        publish(ctx, &c, ev).await;
    }

    // report
    ctx.metrics
        .cluster_reachable
        .get_or_create(&ClusterLabels {
            cluster: name.clone(),
        })
        .set(i64::from(reachable));
    if let Outcome::Observed(_, e) = &outcome {
        ctx.metrics
            .set_residency(&format!("SovereignCluster/{name}"), e.verdict);
    }
    Ok(match outcome {
        Outcome::Observed(..) => Action::requeue(interval),
        Outcome::Config(e) if e.needs_intervention() => Action::requeue(interval),
        _ => Action::requeue(RETRY_UNREACHABLE.min(interval)),
    })
}

async fn cleanup(c: Arc<SovereignCluster>, ctx: &Context) -> Result<Action> {
    let name = c.name_any();
    let users: Vec<String> = ctx
        .workloads
        .state()
        .iter()
        .filter(|w| w.spec.source.cluster == name || w.spec.target.cluster == name)
        .filter(|w| w.metadata.deletion_timestamp.is_none())
        .filter(|w| is_migrating(w.status.as_ref().and_then(|s| s.phase)))
        .map(|w| {
            format!(
                "SovereignWorkload {}/{}",
                w.namespace().unwrap_or_default(),
                w.name_any()
            )
        })
        .collect();
    if !users.is_empty() {
        let message = format!("deletion waits for: {}", users.join(", "));
        publish(
            ctx,
            &c,
            Event {
                type_: EventType::Warning,
                reason: "DeletionBlocked".into(),
                note: Some(message),
                action: "Delete".into(),
                secondary: None,
            },
        )
        .await;
        return Err(Error::InUse {
            kind: "SovereignCluster",
            name,
            users: users.join(", "),
        });
    }
    ctx.forget(&name);
    ctx.metrics.cluster_reachable.remove(&ClusterLabels {
        cluster: name.clone(),
    });
    ctx.metrics
        .forget_residency(&format!("SovereignCluster/{name}"));
    info!("SovereignCluster released");
    Ok(Action::await_change())
}

/// A migration between these phases still needs both clusters.
fn is_migrating(phase: Option<Phase>) -> bool {
    matches!(
        phase,
        Some(Phase::Replicating | Phase::CuttingOver | Phase::Verifying | Phase::RollingBack)
    )
}

/// The status a cluster should have after `outcome`. Pure: the whole decision, testable without a
/// cluster. What was observed before is kept when the cluster cannot be reached now.
pub fn plan_status(
    c: &SovereignCluster,
    old: &SovereignClusterStatus,
    outcome: &Outcome,
    now: &Time,
) -> SovereignClusterStatus {
    let mut s = old.clone();
    s.observed_generation = c.metadata.generation;
    let conditions: Vec<Desired> = match outcome {
        Outcome::Observed(o, r) => {
            s.reachable = Some(true);
            s.kubernetes_version = Some(o.git_version.clone());
            s.last_probe_time = Some(now.clone());
            s.nodes = Some(o.nodes.clone());
            s.storage_provisioners = o.storage_provisioners.clone();
            s.storage_classes = o.storage_classes.clone();
            s.provider = r.provider.clone().or_else(|| c.spec.provider.clone());
            s.region = r.region.clone().or_else(|| c.spec.region.clone());
            s.location = r.location.clone();
            s.jurisdiction = r.jurisdiction.clone();
            s.verdict = Some(r.verdict);
            s.sovereignty = Some(sovereignty(r));
            s.findings = r.findings.iter().take(MAX_FINDINGS).cloned().collect();
            let regions = if o.nodes.regions.is_empty() {
                "no region label".to_string()
            } else {
                format!("region {}", o.nodes.regions.join(", "))
            };
            vec![
                Desired::new(
                    READY,
                    true,
                    "Reachable",
                    format!(
                        "Kubernetes {}, {} node(s), {regions}",
                        o.git_version, o.nodes.count
                    ),
                ),
                Desired::new(RECONCILING, false, "Probed", "the cluster was probed"),
                Desired::new(STALLED, false, "Probed", ""),
                residency_condition(r),
            ]
        }
        Outcome::Config(e) => {
            s.reachable = Some(false);
            vec![
                Desired::new(READY, false, e.reason(), e.to_string()),
                Desired::new(
                    RECONCILING,
                    false,
                    e.reason(),
                    "waiting for the configuration to change",
                ),
                Desired::new(STALLED, e.needs_intervention(), e.reason(), e.to_string()),
            ]
        }
        Outcome::Probe(e) => {
            s.reachable = Some(false);
            let intervention = matches!(e, ProbeError::Unauthorized(_) | ProbeError::Forbidden(_));
            vec![
                Desired::new(READY, false, e.reason(), e.to_string()),
                Desired::new(RECONCILING, !intervention, e.reason(), "retrying the probe"),
                Desired::new(STALLED, intervention, e.reason(), e.to_string()),
            ]
        }
    };
    s.conditions = conditions::merge(&old.conditions, &conditions, c.metadata.generation, now);
    s
}

/// Findings kept in status; the rest are counted in the condition message.
const MAX_FINDINGS: usize = 20;

/// `Sovereign` only when the verdict is compliant; `ForeignControlled` when a foreign jurisdiction
/// reaches any part of it; `Unknown` otherwise.
fn sovereignty(r: &Evaluation) -> Sovereignty {
    let foreign = r
        .findings
        .iter()
        .any(|f| f.severity == Severity::Error && f.rule.contains("jurisdiction"));
    match r.verdict {
        Verdict::Compliant => Sovereignty::Sovereign,
        _ if foreign => Sovereignty::ForeignControlled,
        _ => Sovereignty::Unknown,
    }
}

/// `ResidencyCompliant`, with the most severe finding as the message.
pub fn residency_condition(r: &Evaluation) -> Desired {
    let head = r
        .findings
        .iter()
        .find(|f| f.severity != Severity::Info)
        .map(|f| {
            format!(
                "{} ({}: {}); {} finding(s) in status",
                f.rule,
                f.object,
                f.evidence,
                r.findings.len()
            )
        })
        .unwrap_or_default();
    let base = format!(
        "location {}, jurisdiction {}{}",
        r.location.as_deref().unwrap_or("unknown"),
        r.jurisdiction.as_deref().unwrap_or("unknown"),
        if r.declared { " (declared)" } else { "" }
    );
    match r.verdict {
        Verdict::Compliant => Desired::new(RESIDENCY_COMPLIANT, true, "Compliant", base),
        Verdict::NonCompliant => Desired::new(
            RESIDENCY_COMPLIANT,
            false,
            "NonCompliant",
            format!("{base}: {head}"),
        ),
        Verdict::Unknown => Desired::new(
            RESIDENCY_COMPLIANT,
            conditions::Status::Unknown,
            "Unknown",
            format!("{base}: {head}"),
        ),
    }
}

/// An Event when Ready changes, or when it stays false for another reason.
fn transition_event(old: &SovereignClusterStatus, new: &SovereignClusterStatus) -> Option<Event> {
    let before = conditions::find(&old.conditions, READY);
    let after = conditions::find(&new.conditions, READY)?;
    if before.is_some_and(|b| b.status == after.status && b.reason == after.reason) {
        return None;
    }
    let ok = after.status == "True";
    Some(Event {
        type_: if ok {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: after.reason.clone(),
        note: Some(after.message.clone()),
        action: "Probe".into(),
        secondary: None,
    })
}

async fn publish(ctx: &Context, c: &SovereignCluster, ev: Event) {
    if let Err(e) = ctx.cluster_recorder.publish(&ev, &c.object_ref(&())).await {
        warn!(error = %e, reason = %ev.reason, "cannot publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeyRef;
    use crate::api::cluster::{NodeSummary, SovereignClusterSpec};

    fn cluster() -> SovereignCluster {
        let mut c = SovereignCluster::new(
            "aws-us-east-1",
            SovereignClusterSpec {
                kubeconfig_secret_ref: Some(SecretKeyRef {
                    namespace: "sovereign-system".into(),
                    name: "aws".into(),
                    key: "kubeconfig".into(),
                }),
                in_cluster: None,
                provider: Some("aws".into()),
                region: Some("us-east-1".into()),
                location: None,
                jurisdiction: Some("US".into()),
                pricing: None,
                probe_interval: None,
            },
        );
        c.metadata.generation = Some(3);
        c
    }

    fn now() -> Time {
        Time("2026-11-28T12:00:00Z".parse().expect("ts"))
    }

    #[test]
    fn a_missing_secret_is_ready_false_and_stalled() {
        let outcome = Outcome::Config(KubeconfigError::SecretNotFound {
            namespace: "sovereign-system".into(),
            name: "aws".into(),
        });
        let s = plan_status(
            &cluster(),
            &SovereignClusterStatus::default(),
            &outcome,
            &now(),
        );
        let ready = conditions::find(&s.conditions, READY).expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "KubeconfigSecretNotFound");
        assert!(ready.message.contains("sovereign-system/aws"));
        assert!(conditions::is_true(&s.conditions, STALLED));
        assert_eq!(s.reachable, Some(false));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn an_observed_cluster_is_ready_and_keeps_its_evidence() {
        let o = Observation {
            git_version: "v1.32.0".into(),
            nodes: NodeSummary {
                count: 3,
                regions: vec!["us-east-1".into()],
                zones: vec!["us-east-1a".into()],
                provider_id_schemes: vec!["aws".into()],
                provider_id_samples: vec!["aws:///us-east-1a/i-0abc".into()],
            },
            storage_provisioners: vec!["ebs.csi.aws.com".into()],
            storage_classes: vec!["gp3".into()],
            inventory: crate::residency::Inventory::from_yaml(
                "kind: Node\nmetadata:\n  name: ip-10-0-1-1\n  labels: {topology.kubernetes.io/region: us-east-1}\nspec: {providerID: 'aws:///us-east-1a/i-0abc'}\n",
            )
            .expect("inventory"),
        };
        let r = crate::residency::evaluate(
            &o.inventory,
            Some(&cluster().spec),
            &crate::residency::policy::quebec_strict(),
            crate::residency::Catalog::embedded(),
        );
        let s = plan_status(
            &cluster(),
            &SovereignClusterStatus::default(),
            &Outcome::Observed(Box::new(o), r),
            &now(),
        );
        assert!(conditions::is_true(&s.conditions, READY));
        assert!(!conditions::is_true(&s.conditions, STALLED));
        assert_eq!(s.provider.as_deref(), Some("aws"));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.location.as_deref(), Some("US-VA"));
        assert_eq!(s.jurisdiction.as_deref(), Some("US"));
        assert_eq!(s.sovereignty, Some(Sovereignty::ForeignControlled));
        let rc = conditions::find(&s.conditions, RESIDENCY_COMPLIANT).expect("ResidencyCompliant");
        assert_eq!(
            (rc.status.as_str(), rc.reason.as_str()),
            ("False", "NonCompliant")
        );
        assert!(rc.message.contains("US-VA"), "{}", rc.message);
        // Unreachable later: the evidence stays, reachability flips, nothing needs a person.
        let later = plan_status(
            &cluster(),
            &s,
            &Outcome::Probe(ProbeError::Unreachable("connection refused".into())),
            &now(),
        );
        assert_eq!(later.reachable, Some(false));
        assert_eq!(later.nodes.as_ref().map(|n| n.count), Some(3));
        assert!(!conditions::is_true(&later.conditions, STALLED));
        assert!(conditions::is_true(&later.conditions, RECONCILING));
        let ev = transition_event(&s, &later).expect("event on Ready flip");
        assert_eq!(ev.reason, "Unreachable");
        assert!(transition_event(&later, &later).is_none());
    }

    #[test]
    fn the_same_outcome_twice_writes_the_same_status() {
        let outcome = Outcome::Config(KubeconfigError::NoAccess);
        let a = plan_status(
            &cluster(),
            &SovereignClusterStatus::default(),
            &outcome,
            &now(),
        );
        let later = Time("2026-11-28T13:00:00Z".parse().expect("ts"));
        let b = plan_status(&cluster(), &a, &outcome, &later);
        assert_eq!(a, b, "an unchanged outcome must not churn status");
    }
}

/// The whole reconcile against kube's mock API service (tower-test), the way controller-rs tests its
/// reconciler: each request the controller makes is checked, answered like the API server would, and
/// nothing unexpected is sent.
#[cfg(test)]
mod mock_tests {
    use std::sync::Arc;

    use http::{Request, Response};
    use kube::client::Body;
    use kube::runtime::reflector;
    use serde_json::{Value, json};

    use super::*;
    use crate::controller::context::Context;
    use crate::telemetry::Metrics;

    const TOKEN: &str = "never-in-status-t0ken";

    fn cluster() -> SovereignCluster {
        serde_json::from_value(json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
            "metadata": {"name": "aws-us-east-1", "uid": "u-1", "generation": 1, "resourceVersion": "7",
                         "finalizers": [FINALIZER]},
            "spec": {"kubeconfigSecretRef": {"namespace": "sovereign-system", "name": "aws", "key": "kubeconfig"}}
        }))
        .expect("fixture")
    }

    async fn respond(
        handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> (
        Request<Body>,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        handle
            .next_request()
            .await
            .expect("the controller sends a request")
    }

    fn json_response(code: u16, body: Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response")
    }

    async fn body_json(req: Request<Body>) -> Value {
        let bytes = req.into_body().collect_bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("json body")
    }

    async fn reconcile_with_secret(secret: Option<Value>) -> Value {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let (clusters, _) = reflector::store();
        let (workloads, _) = reflector::store();
        let (policies, _) = reflector::store();
        let ctx = Arc::new(Context::new(
            client,
            Arc::new(Metrics::new()),
            Some("test".into()),
            vec!["sovereign-system".into()],
            clusters,
            workloads,
            policies,
        ));
        let task = tokio::spawn(reconcile(Arc::new(cluster()), ctx));

        let (req, send) = respond(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/sovereign-system/secrets/aws"
        );
        send.send_response(match secret {
            Some(s) => json_response(200, s),
            None => json_response(
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                       "message": "secrets \"aws\" not found", "details": {"name": "aws", "kind": "secrets"}}),
            ),
        });

        let (req, send) = respond(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.uri().path(),
            "/apis/sovereign.dev/v1alpha1/sovereignclusters/aws-us-east-1/status"
        );
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("fieldManager=sovereign-operator") && query.contains("force=true"),
            "{query}"
        );
        let patch = body_json(req).await;
        let mut echoed = serde_json::to_value(cluster()).expect("json");
        echoed["status"] = patch["status"].clone();
        send.send_response(json_response(200, echoed));

        // The Ready transition is recorded as an Event.
        let (req, send) = respond(&mut handle).await;
        assert_eq!(req.method(), "POST");
        assert!(req.uri().path().ends_with("/events"), "{}", req.uri());
        let event = body_json(req).await;
        send.send_response(json_response(201, event.clone()));

        task.await
            .expect("join")
            .expect("reconcile succeeds: a bad Secret is a condition, not an error");
        json!({"patch": patch, "event": event})
    }

    fn ready(patch: &Value) -> &Value {
        patch["patch"]["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready")
    }

    #[tokio::test]
    async fn a_missing_secret_becomes_ready_false_in_status_and_an_event() {
        let out = reconcile_with_secret(None).await;
        let ready = ready(&out);
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KubeconfigSecretNotFound");
        assert_eq!(out["patch"]["apiVersion"], "sovereign.dev/v1alpha1");
        assert_eq!(out["patch"]["status"]["reachable"], false);
        assert_eq!(out["event"]["reason"], "KubeconfigSecretNotFound");
        assert_eq!(out["event"]["type"], "Warning");
    }

    #[tokio::test]
    async fn a_malformed_kubeconfig_becomes_ready_false_without_its_content() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws", "namespace": "sovereign-system", "resourceVersion": "3"},
            "stringData": {"kubeconfig": format!("users: [{{name: u, user: {{token: {TOKEN}}}\n")}
        });
        let out = reconcile_with_secret(Some(secret)).await;
        let ready = ready(&out);
        assert_eq!(ready["reason"], "KubeconfigMalformed");
        let all = out.to_string();
        assert!(
            !all.contains(TOKEN),
            "the kubeconfig's content leaked: {all}"
        );
    }
}
