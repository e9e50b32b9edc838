//! The cloud's load balancers, as a cloud-controller-manager's service controller provides them
//! (no cloud controller runs in a sandbox cluster, so type LoadBalancer Services would stay
//! pending). For each LoadBalancer Service without `spec.loadBalancerClass` (a class belongs to
//! another implementation), as upstream does: the finalizer
//! `service.kubernetes.io/load-balancer-cleanup` first, then an address of the cluster's loopback
//! block, then `status.loadBalancer.ingress` shaped like the provider's (`ingress`), with the
//! service controller's Events. A Service that is deleted or stops being a LoadBalancer has its
//! ingress cleared, its address freed, then its finalizer removed. The TCP proxy (`proxy`)
//! listens on the ingress addresses; both run from `run`.
//!
//! Restart-safe: the addresses already in Services' statuses are adopted before anything is
//! allocated, and a Service whose status is already right is not written to.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::ingress::{self, Shape};
use super::proxy;
use crate::sandbox::agent::Host;

pub const FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";
/// The upstream service controller's name, in Events and as the status' field manager.
const CONTROLLER: &str = "service-controller";
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LoadBalancerError {
    #[error("service {service}: {what}: {source}")]
    Api {
        service: String,
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("service {service}: no free load balancer address in the cluster's block")]
    Exhausted { service: String },
    #[error("service {service}: cannot build a patch: {source}")]
    Patch {
        service: String,
        #[source]
        source: serde_json::Error,
    },
}

struct Ctx {
    host: Arc<Host>,
    shape: Shape,
    recorder: Recorder,
}

/// Runs the load balancer controller and the proxy until shutdown.
pub async fn run(host: Arc<Host>, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        controller(host.clone(), shutdown.clone()),
        proxy::run(host, shutdown)
    );
}

fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// Type LoadBalancer with no class: what the (absent) cloud controller would handle.
fn is_ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

/// Takes back the addresses Services already hold (an agent restarted on a resumed cluster), so
/// that no new Service is given one of them.
async fn adopt_existing(host: &Host, shutdown: &mut watch::Receiver<bool>) -> bool {
    let api: Api<Service> = Api::all(host.client.clone());
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for svc in list.items.iter().filter(|s| is_ours(s)) {
                    if let Some(ip) = ingress::current_ip(svc).filter(|ip| host.net.contains(ip)) {
                        host.net.adopt_balancer(&key(svc), &ip);
                    }
                }
                return true;
            }
            Err(e) => {
                tracing::debug!(cluster = %host.cluster, error = %e, "listing Services to adopt their addresses")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return false,
        }
    }
}

async fn controller(host: Arc<Host>, mut shutdown: watch::Receiver<bool>) {
    if !adopt_existing(&host, &mut shutdown).await {
        return;
    }
    let reporter = Reporter {
        controller: CONTROLLER.into(),
        instance: Some(format!("sandbox-{}", host.cluster)),
    };
    let ctx = Arc::new(Ctx {
        shape: Shape::of(&host.profile),
        recorder: Recorder::new(host.client.clone(), reporter),
        host: host.clone(),
    });
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    Controller::new(
        Api::<Service>::all(host.client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stop)
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "load balancer reconcile");
        }
    })
    .await;
}

fn error_policy(svc: Arc<Service>, e: &LoadBalancerError, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(cluster = %ctx.host.cluster, service = %key(&svc), error = %e, "load balancer not synced (retrying)");
    Action::requeue(RETRY)
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, LoadBalancerError> {
    let has_finalizer = svc.finalizers().iter().any(|f| f == FINALIZER);
    let class = svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_class.as_ref());
    if class.is_some() && !has_finalizer {
        return Ok(Action::await_change());
    }
    if is_ours(&svc) && svc.metadata.deletion_timestamp.is_none() {
        ensure(&svc, &ctx, has_finalizer).await?;
    } else {
        teardown(&svc, &ctx, has_finalizer).await?;
    }
    Ok(Action::await_change())
}

/// The service controller's Events, by step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Ensuring,
    Ensured,
    Deleting,
    Deleted,
    Failed,
}

impl Step {
    fn event(self) -> Event {
        let (type_, reason, action, note) = match self {
            Step::Ensuring => (
                EventType::Normal,
                "EnsuringLoadBalancer",
                "EnsureLoadBalancer",
                "Ensuring load balancer",
            ),
            Step::Ensured => (
                EventType::Normal,
                "EnsuredLoadBalancer",
                "EnsureLoadBalancer",
                "Ensured load balancer",
            ),
            Step::Deleting => (
                EventType::Normal,
                "DeletingLoadBalancer",
                "DeleteLoadBalancer",
                "Deleting load balancer",
            ),
            Step::Deleted => (
                EventType::Normal,
                "DeletedLoadBalancer",
                "DeleteLoadBalancer",
                "Deleted load balancer",
            ),
            // The only failure that is the load balancer's own (API errors are retried).
            Step::Failed => (
                EventType::Warning,
                "SyncLoadBalancerFailed",
                "EnsureLoadBalancer",
                "Error syncing load balancer: no free address in the cluster's block",
            ),
        };
        Event {
            type_,
            reason: reason.into(),
            note: Some(note.into()),
            action: action.into(),
            secondary: None,
        }
    }
}

async fn publish(ctx: &Ctx, svc: &Service, step: Step) {
    let ev = step.event();
    if let Err(e) = ctx.recorder.publish(&ev, &svc.object_ref(&())).await {
        tracing::debug!(service = %key(svc), reason = %ev.reason, error = %e, "cannot record an Event");
    }
}

fn api_err(svc: &Service, what: &'static str) -> impl FnOnce(kube::Error) -> LoadBalancerError {
    let service = key(svc);
    move |e| LoadBalancerError::Api {
        service,
        what,
        source: Box::new(e),
    }
}

/// Status writes name the upstream controller as their field manager.
fn manager() -> PatchParams {
    PatchParams {
        field_manager: Some(CONTROLLER.into()),
        ..PatchParams::default()
    }
}

fn services(ctx: &Ctx, svc: &Service) -> Api<Service> {
    Api::namespaced(
        ctx.host.client.clone(),
        &svc.namespace().unwrap_or_default(),
    )
}

/// The Service's address: the one its status has when it is ours to keep, else a new one.
fn address(ctx: &Ctx, svc: &Service) -> Option<Ipv4Addr> {
    let k = key(svc);
    let net = &ctx.host.net;
    ingress::current_ip(svc)
        .filter(|ip| net.contains(ip) && net.adopt_balancer(&k, ip))
        .and_then(|ip| ip.parse().ok())
        .or_else(|| net.balancer_ip(&k))
}

async fn ensure(svc: &Service, ctx: &Ctx, has_finalizer: bool) -> Result<(), LoadBalancerError> {
    let Some(ip) = address(ctx, svc) else {
        publish(ctx, svc, Step::Failed).await;
        return Err(LoadBalancerError::Exhausted { service: key(svc) });
    };
    let want = ingress::ingress(&ctx.shape, svc, ip);
    if has_finalizer && ingress::current(svc) == want {
        return Ok(());
    }
    publish(ctx, svc, Step::Ensuring).await;
    if !has_finalizer {
        add_finalizer(ctx, svc).await?;
    }
    let patch = json!({"status": {"loadBalancer": {"ingress": want}}});
    services(ctx, svc)
        .patch_status(&svc.name_any(), &manager(), &Patch::Merge(patch))
        .await
        .map_err(api_err(svc, "writing the load balancer's status"))?;
    publish(ctx, svc, Step::Ensured).await;
    Ok(())
}

async fn teardown(svc: &Service, ctx: &Ctx, has_finalizer: bool) -> Result<(), LoadBalancerError> {
    let net = &ctx.host.net;
    let stale = ingress::current_ip(svc).is_some_and(|ip| net.contains(&ip));
    if !has_finalizer && !stale {
        return Ok(());
    }
    publish(ctx, svc, Step::Deleting).await;
    if stale && svc.metadata.deletion_timestamp.is_none() {
        let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
        services(ctx, svc)
            .patch_status(&svc.name_any(), &manager(), &Patch::Merge(patch))
            .await
            .map_err(api_err(svc, "clearing the load balancer's status"))?;
    }
    net.release_balancer(&key(svc));
    publish(ctx, svc, Step::Deleted).await;
    if has_finalizer {
        remove_finalizer(ctx, svc).await?;
    }
    Ok(())
}

/// JSON patches guarded by a `test`, as kube's finalizer helper writes them: the API server
/// does not deduplicate finalizers, and an index may have moved since the object was read.
fn finalizer_patch(svc: &Service, add: bool) -> Option<serde_json::Value> {
    let current = svc.finalizers();
    if add {
        return Some(if current.is_empty() {
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
        } else {
            json!([{"op": "test", "path": "/metadata/finalizers", "value": current},
                   {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
        });
    }
    let i = current.iter().position(|f| f == FINALIZER)?;
    Some(
        json!([{"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
                {"op": "remove", "path": format!("/metadata/finalizers/{i}")}]),
    )
}

async fn patch_finalizers(ctx: &Ctx, svc: &Service, add: bool) -> Result<(), LoadBalancerError> {
    let Some(value) = finalizer_patch(svc, add) else {
        return Ok(());
    };
    let patch: json_patch::Patch =
        serde_json::from_value(value).map_err(|source| LoadBalancerError::Patch {
            service: key(svc),
            source,
        })?;
    let what = if add {
        "adding the finalizer"
    } else {
        "removing the finalizer"
    };
    match services(ctx, svc)
        .patch(
            &svc.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Gone already: nothing left to hold back.
        Err(kube::Error::Api(s)) if !add && s.code == 404 => Ok(()),
        Err(e) => Err(api_err(svc, what)(e)),
    }
}

async fn add_finalizer(ctx: &Ctx, svc: &Service) -> Result<(), LoadBalancerError> {
    patch_finalizers(ctx, svc, true).await
}

async fn remove_finalizer(ctx: &Ctx, svc: &Service) -> Result<(), LoadBalancerError> {
    patch_finalizers(ctx, svc, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(finalizers: &[&str]) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "s", "namespace": "n", "finalizers": finalizers}}),
        )
        .expect("service")
    }

    #[test]
    fn finalizer_patches_are_guarded_and_idempotent() {
        let add = finalizer_patch(&svc(&[]), true).expect("patch");
        assert_eq!(add[0]["op"], "test");
        assert_eq!(add[1]["value"], json!([FINALIZER]));
        let add = finalizer_patch(&svc(&["a"]), true).expect("patch");
        assert_eq!(
            (add[0]["value"].clone(), add[1]["path"].clone()),
            (json!(["a"]), json!("/metadata/finalizers/-"))
        );
        let remove = finalizer_patch(&svc(&["a", FINALIZER]), false).expect("patch");
        assert_eq!(
            remove[1],
            json!({"op": "remove", "path": "/metadata/finalizers/1"})
        );
        assert!(
            finalizer_patch(&svc(&["a"]), false).is_none(),
            "nothing to remove"
        );
        for p in [add, remove] {
            serde_json::from_value::<json_patch::Patch>(p).expect("a JSON patch");
        }
    }

    #[test]
    fn events_are_the_service_controllers() {
        let e = Step::Ensuring.event();
        assert_eq!(
            (e.reason.as_str(), e.action.as_str(), e.type_),
            (
                "EnsuringLoadBalancer",
                "EnsureLoadBalancer",
                EventType::Normal
            )
        );
        assert_eq!(Step::Deleted.event().reason, "DeletedLoadBalancer");
        assert_eq!(Step::Failed.event().type_, EventType::Warning);
    }

    #[test]
    fn only_class_less_load_balancers_are_ours() {
        let s = |spec: serde_json::Value| -> Service {
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec}))
                .expect("service")
        };
        assert!(is_ours(&s(json!({"type": "LoadBalancer"}))));
        assert!(!is_ours(&s(
            json!({"type": "LoadBalancer", "loadBalancerClass": "x.io/lb"})
        )));
        assert!(!is_ours(&s(json!({"type": "NodePort"}))));
    }
}
