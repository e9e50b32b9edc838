//! What every reconciliation shares: clients, recorders, metrics, the caches of related kinds, and the
//! per-object retry state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload};
use crate::telemetry::Metrics;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "sovereign-operator";
/// The finalizer the operator puts on the objects it must clean up after.
pub const FINALIZER: &str = "sovereign.dev/cleanup";

pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    /// One recorder per controller, shared across reconciles so that Events aggregate.
    pub cluster_recorder: Recorder,
    pub workload_recorder: Recorder,
    /// Namespaces kubeconfig Secrets may be read from (empty: any).
    pub secret_namespaces: Vec<String>,
    pub clusters: Store<SovereignCluster>,
    pub workloads: Store<SovereignWorkload>,
    pub policies: Store<ResidencyPolicy>,
    retries: Mutex<HashMap<String, u32>>,
    probes: Mutex<HashMap<String, (String, Instant)>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        instance: Option<String>,
        secret_namespaces: Vec<String>,
        clusters: Store<SovereignCluster>,
        workloads: Store<SovereignWorkload>,
        policies: Store<ResidencyPolicy>,
    ) -> Self {
        let reporter = |controller: &str| Reporter {
            controller: controller.to_string(),
            instance: instance.clone(),
        };
        Context {
            cluster_recorder: Recorder::new(
                client.clone(),
                reporter("sovereign-operator/sovereigncluster"),
            ),
            workload_recorder: Recorder::new(
                client.clone(),
                reporter("sovereign-operator/sovereignworkload"),
            ),
            client,
            metrics,
            secret_namespaces,
            clusters,
            workloads,
            policies,
            retries: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
        }
    }

    /// Exponential backoff per object (5s, 10s, … capped at 5 min), reset by a success: kube's
    /// `error_policy` is not told about successes (kube-rs/kube#1916), so the count lives here.
    pub fn next_retry(&self, key: &str) -> Duration {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let n = retries.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 5u64.saturating_mul(1u64 << (*n - 1).min(6));
        Duration::from_secs(secs.min(300))
    }

    pub fn succeeded(&self, key: &str) {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// When the object's probe inputs (`fingerprint`) are unchanged since a probe less than
    /// `interval` ago, returns how long until the next one is due. This keeps the operator's own
    /// status writes, which wake the controller, from causing a probe each.
    pub fn probe_due_in(
        &self,
        key: &str,
        fingerprint: &str,
        interval: Duration,
    ) -> Option<Duration> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let (last_fp, at) = probes.get(key)?;
        let elapsed = at.elapsed();
        (last_fp == fingerprint && elapsed < interval).then(|| interval - elapsed)
    }

    pub fn probed(&self, key: &str, fingerprint: &str) {
        self.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), (fingerprint.to_string(), Instant::now()));
    }

    pub fn forget(&self, key: &str) {
        self.probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.succeeded(key);
    }
}
