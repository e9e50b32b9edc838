//! `sovereign run`: the operator. One controller per kind, built on `kube::runtime::Controller`,
//! behind a leader Lease, with `/metrics`, `/healthz` and `/readyz`, stopping gracefully on SIGTERM.

pub mod cluster;
pub mod context;
pub mod error;
pub mod finalize;
pub mod leader;
pub mod migration;
pub mod status;
pub mod transfer;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload, VolumeTransfer};
use crate::telemetry::logging::LogFormat;
use crate::telemetry::server::Health;
use crate::telemetry::{self, Metrics};
use context::Context;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "SOVEREIGN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "SOVEREIGN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Compete for a leader Lease before acting (required with more than one replica).
    #[arg(long, env = "SOVEREIGN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(
        long,
        env = "SOVEREIGN_LEASE_NAME",
        default_value = "sovereign-operator"
    )]
    pub lease_name: String,
    /// Namespace of the Lease; also where kubeconfig Secrets are read from by default.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sovereign-system")]
    pub namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespaces kubeconfig Secrets may be read from (repeatable); defaults to --namespace.
    #[arg(
        long = "kubeconfig-secret-namespace",
        env = "SOVEREIGN_KUBECONFIG_NAMESPACES",
        value_delimiter = ','
    )]
    pub secret_namespaces: Vec<String>,
    /// The ResidencyPolicy every SovereignCluster is classified against (built-in when absent).
    #[arg(
        long,
        env = "SOVEREIGN_CLUSTER_POLICY",
        default_value = "quebec-strict"
    )]
    pub cluster_policy: String,
    /// A ConfigMap in --namespace whose `catalog.yaml` overrides or extends the built-in residency
    /// catalog of providers, regions, registries and endpoints.
    #[arg(long, env = "SOVEREIGN_CATALOG_CONFIGMAP")]
    pub catalog_configmap: Option<String>,
    /// Reconciliations run at once per controller.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// How often a completed migration's residency is checked again on what runs (drift).
    #[arg(long, env = "SOVEREIGN_RESIDENCY_RECHECK", default_value = "5m", value_parser = parse_go_duration)]
    pub residency_recheck: std::time::Duration,
    /// A ConfigMap (in the operator's namespace) whose `rates.yaml` overrides the built-in
    /// exchange rates: `rates: [{from: USD, to: CAD, rate: 1.37, asOf: "2026-11-27", source: "…"}]`.
    #[arg(long, env = "SOVEREIGN_FX_CONFIGMAP")]
    pub fx_configmap: Option<String>,
    /// The image of the mover pods (this project's own image).
    #[arg(long, env = "SOVEREIGN_MOVER_IMAGE", default_value = context::DEFAULT_MOVER_IMAGE)]
    pub mover_image: String,
    /// Serve only the SovereignClusters, SovereignWorkloads and VolumeTransfers this label
    /// selector matches (sharding: several operators, each with its own selector, on one
    /// cluster). A workload's VolumeTransfers carry the workload's labels, so they follow it.
    #[arg(long, env = "SOVEREIGN_WATCH_LABEL_SELECTOR")]
    pub watch_label_selector: Option<String>,
    /// After SIGTERM, how long running reconciles may take to finish before the operator exits
    /// anyway (every step is idempotent: the next start resumes from what it observes).
    #[arg(long, env = "SOVEREIGN_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_go_duration)]
    pub shutdown_timeout: std::time::Duration,
}

impl RunArgs {
    /// The flags' defaults, for an operator embedded in another program (the sandbox, tests):
    /// metrics on an ephemeral loopback port, no leader election.
    pub fn embedded(identity: &str) -> RunArgs {
        RunArgs {
            metrics_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            log_format: LogFormat::Text,
            leader_elect: false,
            lease_name: "sovereign-operator".into(),
            namespace: "sovereign-system".into(),
            identity: Some(identity.into()),
            secret_namespaces: vec![],
            cluster_policy: "quebec-strict".into(),
            catalog_configmap: None,
            concurrency: 4,
            residency_recheck: std::time::Duration::from_secs(300),
            fx_configmap: None,
            mover_image: context::DEFAULT_MOVER_IMAGE.into(),
            watch_label_selector: None,
            shutdown_timeout: std::time::Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build a Kubernetes client (kubeconfig or in-cluster): {0}")]
    Client(#[source] kube::Error),
    #[error(
        "the sovereign.dev CRDs are not installed in the operator's cluster ({0}); install them with `sovereign crd | kubectl apply -f -` or the Helm chart"
    )]
    CrdsMissing(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election failed: {0}")]
    Lease(String),
    #[error("lost the leader Lease; exiting so that a fresh start competes again")]
    LeadershipLost,
    #[error("the API server refuses the watch label selector {selector:?}: {source}")]
    Selector {
        selector: String,
        #[source]
        source: kube::Error,
    },
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs the operator with a client from the environment until SIGTERM.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    telemetry::logging::init(args.log_format);
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    // As for remote clusters: no request to our own cluster may hang a reconcile for ever.
    config.read_timeout = Some(crate::remote::kubeconfig::REMOTE_READ_TIMEOUT);
    config.reset_reader_on_write = true;
    let client = Client::try_from(config).map_err(RunError::Client)?;
    run_with(client, args, shutdown_signal()).await
}

/// Runs the operator with `client` until `shutdown` resolves. Tests and the sandbox call this.
pub async fn run_with(
    client: Client,
    args: RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(metrics.clone());
    let listener = telemetry::server::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics, /healthz, /readyz");

    // One shutdown signal, fanned out to every part.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let server = tokio::spawn(telemetry::server::serve(
        listener,
        health.clone(),
        stopped(),
    ));

    preflight(&client, args.watch_label_selector.as_deref()).await?;
    health.set_ready(true);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let mut leadership = None;
    if args.leader_elect {
        let mut l = Leadership::start(client.clone(), &args.namespace, &args.lease_name, &identity)
            .await
            .map_err(|e| RunError::Lease(e.to_string()))?;
        info!(lease = %args.lease_name, namespace = %args.namespace, identity = %identity, "waiting for the leader Lease");
        tokio::select! {
            got = l.acquired() => if !got { return Err(RunError::Lease("the lease manager stopped".into())) },
            _ = stopped() => {
                l.release().await;
                let _ = server.await;
                return Ok(());
            }
        }
        leadership = Some(l);
    }
    metrics.leader.set(1);

    let (lost_tx, lost_rx) = watch::channel(false);
    let leadership_watch = leadership.map(|mut l| {
        tokio::spawn(async move {
            l.lost().await;
            let _ = lost_tx.send(true);
            l
        })
    });
    let until = {
        let stopped = stopped();
        let mut lost_rx = lost_rx.clone();
        async move {
            tokio::select! {
                _ = stopped => {},
                // Without leader election nothing sends: a closed channel is not a lost lease.
                _ = async {
                    if lost_rx.wait_for(|l| *l).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                } => {},
            }
        }
    };
    run_controllers(client, &args, metrics.clone(), identity, until).await;
    metrics.leader.set(0);
    health.set_ready(false);

    let lost = *lost_rx.borrow();
    if let Some(task) = leadership_watch {
        task.abort();
        if let Ok(l) = task.await {
            l.release().await;
        }
    }
    let _ = server.await;
    if lost {
        error!("leadership lost while running");
        return Err(RunError::LeadershipLost);
    }
    info!("stopped");
    Ok(())
}

use leader::Leadership;

fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::api::duration::parse(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a positive duration such as 30s, 5m or 1h"))
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "sovereign-operator".into());
    format!("{host}-{}", std::process::id())
}

async fn preflight(client: &Client, selector: Option<&str>) -> Result<(), RunError> {
    let api: Api<SovereignWorkload> = Api::all(client.clone());
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| RunError::CrdsMissing(e.to_string()))?;
    // The API server is the judge of a selector's syntax: a bad one stops the start, not every
    // watch afterwards.
    if let Some(sel) = selector {
        api.list(&kube::api::ListParams::default().limit(1).labels(sel))
            .await
            .map_err(|source| RunError::Selector {
                selector: sel.to_string(),
                source,
            })?;
    }
    Ok(())
}

async fn run_controllers(
    client: Client,
    args: &RunArgs,
    metrics: Arc<Metrics>,
    identity: String,
    until: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let wc = watcher::Config::default();
    // What this operator serves (its shard); policies and Secrets are only read, by name.
    let served = match &args.watch_label_selector {
        Some(sel) => watcher::Config::default().labels(sel),
        None => watcher::Config::default(),
    };
    let config = ControllerConfig::default().concurrency(args.concurrency);

    // Policies are only read: a reflector keeps them cached.
    let (policies, policy_writer) = reflector::store::<ResidencyPolicy>();
    let policy_stream = watcher(Api::<ResidencyPolicy>::all(client.clone()), wc.clone())
        .default_backoff()
        .reflect(policy_writer)
        .applied_objects();

    let cluster_ctl = Controller::new(Api::<SovereignCluster>::all(client.clone()), served.clone())
        .with_config(config.clone());
    let workload_ctl = Controller::new(
        Api::<SovereignWorkload>::all(client.clone()),
        served.clone(),
    )
    .with_config(config);
    let clusters = cluster_ctl.store();
    let workloads = workload_ctl.store();

    let secret_namespaces = if args.secret_namespaces.is_empty() {
        vec![args.namespace.clone()]
    } else {
        args.secret_namespaces.clone()
    };
    let mut ctx = Context::new(
        client.clone(),
        metrics,
        Some(identity),
        secret_namespaces.clone(),
        clusters.clone(),
        workloads.clone(),
        policies.clone(),
    );
    ctx.cluster_policy = args.cluster_policy.clone();
    ctx.mover_image = args.mover_image.clone();
    ctx.fx_configmap = args
        .fx_configmap
        .clone()
        .map(|n| (args.namespace.clone(), n));
    ctx.residency_recheck = args.residency_recheck;
    ctx.catalog_configmap = args
        .catalog_configmap
        .clone()
        .map(|n| (args.namespace.clone(), n));
    let ctx = Arc::new(ctx);

    let (until_tx, until_rx) = watch::channel(false);
    tokio::spawn(async move {
        until.await;
        let _ = until_tx.send(true);
    });
    let stop = move || {
        let mut rx = until_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    // A Secret change wakes the clusters whose kubeconfig it holds.
    let mut cluster_ctl = cluster_ctl;
    for ns in &secret_namespaces {
        let store = clusters.clone();
        cluster_ctl = cluster_ctl.watches(
            Api::<Secret>::namespaced(client.clone(), ns),
            wc.clone(),
            move |secret: Secret| {
                let (ns, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
                store
                    .state()
                    .iter()
                    .filter(|c| {
                        c.spec
                            .kubeconfig_secret_ref
                            .as_ref()
                            .is_some_and(|r| r.namespace == ns && r.name == name)
                    })
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    }
    let clusters_fut = cluster_ctl
        .graceful_shutdown_on(stop())
        .run(cluster::reconcile, cluster::error_policy, ctx.clone())
        .for_each(|r| async move { log_result(r) });

    let by_cluster = workloads.clone();
    let by_policy = workloads.clone();
    let workloads_fut = workload_ctl
        .owns(Api::<VolumeTransfer>::all(client.clone()), served.clone())
        .watches(
            Api::<SovereignCluster>::all(client.clone()),
            served.clone(),
            move |c: SovereignCluster| {
                workload::workloads_using_cluster(&by_cluster, &c.name_any())
            },
        )
        .watches(
            Api::<ResidencyPolicy>::all(client.clone()),
            wc,
            move |p: ResidencyPolicy| workload::workloads_using_policy(&by_policy, &p.name_any()),
        )
        .graceful_shutdown_on(stop())
        .run(workload::reconcile, workload::error_policy, ctx.clone())
        .for_each(|r| async move { log_result(r) });

    let transfers_fut = Controller::new(Api::<VolumeTransfer>::all(client.clone()), served)
        .with_config(ControllerConfig::default().concurrency(args.concurrency))
        .graceful_shutdown_on(stop())
        .run(transfer::reconcile, transfer::error_policy, ctx.clone())
        .for_each(|r| async move { log_result(r) });

    let stop_policies = stop();
    let policies_fut = async move {
        let drain = policy_stream.for_each(|_| async {});
        tokio::select! {
            _ = drain => {},
            _ = stop_policies => {},
        }
    };
    info!("controllers started");
    let controllers = async {
        tokio::join!(clusters_fut, workloads_fut, transfers_fut, policies_fut);
    };
    let grace = args.shutdown_timeout;
    let overdue = async move {
        stop().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = controllers => {},
        _ = overdue => warn!(
            seconds = grace.as_secs(),
            "reconciles still running after the shutdown timeout; stopping them (the next start resumes)"
        ),
    }
}

fn log_result<K: kube::Resource, E: std::fmt::Display>(
    r: Result<(ObjectRef<K>, kube::runtime::controller::Action), E>,
) where
    K::DynamicType: std::fmt::Debug,
{
    match r {
        Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
        // ObjectNotFound for a vanished object is expected (kube-rs/kube#1167).
        Err(e) => warn!(error = %e, "controller error"),
    }
}
