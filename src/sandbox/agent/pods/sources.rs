//! The Secrets and ConfigMaps a pod's environment and volumes read, fetched once per container
//! start (what the kubelet's secret and configmap managers hand it), so that building the
//! environment and the volume files stays pure.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    /// As the kubelet names it in `"<kind> \"x\" not found"`.
    pub fn lower(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
        }
    }

    /// As the kubelet names it in `couldn't find key k in <Kind> ns/x`.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// One object's entries, as bytes, in key order.
pub type Entries = Vec<(String, Vec<u8>)>;

/// What was fetched: None for an object that does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    objects: HashMap<(Kind, String), Option<Entries>>,
}

impl Sources {
    /// The entries of an object; None when it does not exist (or was not asked for).
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Entries> {
        self.objects
            .get(&(kind, name.to_string()))
            .and_then(Option::as_ref)
    }

    pub fn insert(&mut self, kind: Kind, name: &str, entries: Option<Entries>) {
        self.objects.insert((kind, name.to_string()), entries);
    }
}

/// The objects a container's `envFrom` and `env` refer to.
pub fn wanted_by_container(c: &Container) -> BTreeSet<(Kind, String)> {
    let mut out = BTreeSet::new();
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.secret_ref {
            out.insert((Kind::Secret, r.name.clone()));
        }
        if let Some(r) = &from.config_map_ref {
            out.insert((Kind::ConfigMap, r.name.clone()));
        }
    }
    for e in c.env.iter().flatten() {
        let Some(v) = &e.value_from else { continue };
        if let Some(r) = &v.secret_key_ref {
            out.insert((Kind::Secret, r.name.clone()));
        }
        if let Some(r) = &v.config_map_key_ref {
            out.insert((Kind::ConfigMap, r.name.clone()));
        }
    }
    out
}

/// The objects the pod's volumes (secret, configMap, projected) refer to.
pub fn wanted_by_volumes(pod: &Pod) -> BTreeSet<(Kind, String)> {
    let mut out = BTreeSet::new();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for v in volumes {
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert((Kind::Secret, name));
        }
        if let Some(c) = &v.config_map {
            out.insert((Kind::ConfigMap, c.name.clone()));
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &p.secret {
                out.insert((Kind::Secret, s.name.clone()));
            }
            if let Some(c) = &p.config_map {
                out.insert((Kind::ConfigMap, c.name.clone()));
            }
        }
    }
    out
}

/// Reads every wanted object of the namespace. An object that does not exist is recorded as
/// such; any other failure is an error (the caller retries later).
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    wanted: &BTreeSet<(Kind, String)>,
) -> Result<Sources, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut out = Sources::default();
    for (kind, name) in wanted {
        let entries = match kind {
            Kind::Secret => secrets.get_opt(name).await?.map(|s| secret_entries(&s)),
            Kind::ConfigMap => maps.get_opt(name).await?.map(|m| config_map_entries(&m)),
        };
        out.insert(*kind, name, entries);
    }
    Ok(out)
}

pub fn secret_entries(s: &Secret) -> Entries {
    let mut out: Entries = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only (the API server folds it into data), but a Secret built in a
    // test may still carry it.
    for (k, v) in s.string_data.iter().flatten() {
        if !out.iter().any(|(x, _)| x == k) {
            out.push((k.clone(), v.as_bytes().to_vec()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn config_map_entries(m: &ConfigMap) -> Entries {
    let mut out: Entries = m
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    out.extend(
        m.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
