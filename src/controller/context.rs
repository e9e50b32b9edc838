//! What every reconciliation shares: clients, recorders, metrics, the caches of related kinds, and the
//! per-object retry state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::{Api, Client};

use crate::api::policy::ResidencyPolicySpec;
use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload};
use crate::residency::Catalog;
use crate::telemetry::Metrics;

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "sovereign-operator";
/// The finalizer the operator puts on the objects it must clean up after.
pub const FINALIZER: &str = "sovereign.dev/cleanup";
/// The mover's image: the operator's own, at the operator's version.
pub const DEFAULT_MOVER_IMAGE: &str = concat!(
    "registry.sovereign.dev/sovereign-operator:",
    env!("CARGO_PKG_VERSION")
);

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
    /// The ResidencyPolicy clusters are classified against (the built-in one when absent).
    pub cluster_policy: String,
    /// `namespace/name` of a ConfigMap whose `catalog.yaml` overrides the residency catalog.
    pub catalog_configmap: Option<(String, String)>,
    /// The image the mover pods run (this project's own image).
    pub mover_image: String,
    /// `namespace/name` of a ConfigMap whose `rates.yaml` overrides the built-in exchange rates.
    pub fx_configmap: Option<(String, String)>,
    /// How often a completed migration's residency is checked again (drift).
    pub residency_recheck: Duration,
    pub transfer_recorder: Recorder,
    retries: Mutex<HashMap<String, u32>>,
    probes: Mutex<HashMap<String, (String, Instant)>>,
    catalog_cache: Mutex<Option<(String, Arc<Catalog>)>>,
}

/// The residency catalog in force: the embedded one, or the embedded one with the ConfigMap's
/// override laid over it.
pub enum CatalogRef {
    Embedded(&'static Catalog),
    Override(Arc<Catalog>),
}

impl std::ops::Deref for CatalogRef {
    type Target = Catalog;
    fn deref(&self) -> &Catalog {
        match self {
            CatalogRef::Embedded(c) => c,
            CatalogRef::Override(c) => c,
        }
    }
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
            transfer_recorder: Recorder::new(
                client.clone(),
                reporter("sovereign-operator/volumetransfer"),
            ),
            mover_image: DEFAULT_MOVER_IMAGE.to_string(),
            fx_configmap: None,
            residency_recheck: Duration::from_secs(300),
            client,
            metrics,
            secret_namespaces,
            clusters,
            workloads,
            policies,
            cluster_policy: crate::residency::policy::QUEBEC_STRICT.to_string(),
            catalog_configmap: None,
            retries: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            catalog_cache: Mutex::new(None),
        }
    }

    /// The policy clusters are classified against: the named ResidencyPolicy object, else the
    /// built-in `quebec-strict`.
    pub fn cluster_policy(&self) -> ResidencyPolicySpec {
        self.policies
            .get(&ObjectRef::new(&self.cluster_policy))
            .map(|p| p.spec.clone())
            .unwrap_or_else(crate::residency::policy::quebec_strict)
    }

    /// The catalog in force. A ConfigMap that is missing or does not parse leaves the embedded
    /// catalog in force, with a warning in the log (the previous override is not kept: a broken
    /// override must not silently keep stale facts).
    /// The exchange rates in force: the built-in table with the ConfigMap's rates laid over it. A
    /// missing or malformed ConfigMap leaves the built-in rates, which every cost line cites (date
    /// and "placeholder"), so the figures never pretend to a rate they did not use.
    pub async fn fx(&self) -> crate::cost::FxTable {
        let builtin = crate::cost::FxTable::builtin();
        let Some((ns, name)) = &self.fx_configmap else {
            return builtin;
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let text = match api.get_opt(name).await {
            Ok(Some(cm)) => cm
                .data
                .as_ref()
                .and_then(|d| d.get("rates.yaml"))
                .cloned()
                .unwrap_or_default(),
            Ok(None) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), "the exchange-rate ConfigMap does not exist; using the built-in rates");
                return builtin;
            }
            Err(e) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), error = %e, "cannot read the exchange-rate ConfigMap; using the built-in rates");
                return builtin;
            }
        };
        match crate::cost::FxTable::parse_config_map(&text) {
            Ok(rates) => builtin.with_overrides(rates),
            Err(e) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), error = %e, "the exchange-rate ConfigMap's rates.yaml is not valid; using the built-in rates");
                builtin
            }
        }
    }

    pub async fn catalog(&self) -> CatalogRef {
        let Some((ns, name)) = &self.catalog_configmap else {
            return CatalogRef::Embedded(Catalog::embedded());
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = match api.get_opt(name).await {
            Ok(Some(cm)) => cm,
            Ok(None) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), "the residency catalog ConfigMap does not exist; using the built-in catalog");
                return CatalogRef::Embedded(Catalog::embedded());
            }
            Err(e) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), error = %e, "cannot read the residency catalog ConfigMap; using the built-in catalog");
                return CatalogRef::Embedded(Catalog::embedded());
            }
        };
        let version = cm.metadata.resource_version.clone().unwrap_or_default();
        let mut cache = self.catalog_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, c)) = cache.as_ref()
            && *v == version
        {
            return CatalogRef::Override(c.clone());
        }
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("catalog.yaml"))
            .cloned()
            .unwrap_or_default();
        match Catalog::with_override(&text) {
            Ok(c) => {
                let c = Arc::new(c);
                *cache = Some((version, c.clone()));
                CatalogRef::Override(c)
            }
            Err(e) => {
                tracing::warn!(configmap = %format!("{ns}/{name}"), error = %e, "the residency catalog override is invalid; using the built-in catalog");
                *cache = None;
                CatalogRef::Embedded(Catalog::embedded())
            }
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
