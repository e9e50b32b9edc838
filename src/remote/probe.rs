//! What a cluster shows about itself: version, nodes (regions, zones, providerIDs), storage.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::api::cluster::NodeSummary;
use crate::residency::Inventory;

/// How long one probe may take before the cluster counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
const SAMPLE_LIMIT: usize = 5;

pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const LEGACY_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
const LEGACY_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The raw facts a probe gathered.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    pub git_version: String,
    pub nodes: NodeSummary,
    pub storage_provisioners: Vec<String>,
    /// StorageClass names, default class first.
    pub storage_classes: Vec<String>,
    /// The objects residency is judged from: nodes, storage classes, volumes.
    pub inventory: Inventory,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the API server refused the operator's credentials ({0})")]
    Unauthorized(String),
    #[error("the operator's identity may not {0}")]
    Forbidden(String),
    #[error("the API server is unreachable: {0}")]
    Unreachable(String),
}

impl ProbeError {
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Timeout(_) => "ProbeTimeout",
            ProbeError::Unauthorized(_) => "Unauthorized",
            ProbeError::Forbidden(_) => "Forbidden",
            ProbeError::Unreachable(_) => "Unreachable",
        }
    }
}

fn classify(what: &str, e: kube::Error) -> ProbeError {
    match &e {
        kube::Error::Api(s) if s.code == 401 => ProbeError::Unauthorized(s.message.clone()),
        kube::Error::Api(s) if s.is_forbidden() => ProbeError::Forbidden(what.to_string()),
        _ => ProbeError::Unreachable(e.to_string()),
    }
}

/// Probes a cluster through `client`, within [`PROBE_TIMEOUT`].
pub async fn probe(client: &Client) -> Result<Observation, ProbeError> {
    tokio::time::timeout(PROBE_TIMEOUT, probe_inner(client))
        .await
        .map_err(|_| ProbeError::Timeout(PROBE_TIMEOUT))?
}

async fn probe_inner(client: &Client) -> Result<Observation, ProbeError> {
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| classify("read /version", e))?;
    let nodes = list_all::<Node>(client, "list nodes").await?;
    let classes = list_all::<StorageClass>(client, "list storageclasses").await?;
    let volumes = list_all::<PersistentVolume>(client, "list persistentvolumes").await?;
    let inventory = Inventory {
        nodes: nodes.clone(),
        storage_classes: classes.clone(),
        volumes,
        ..Inventory::default()
    };
    Ok(Observation {
        inventory,
        git_version: version.git_version,
        nodes: summarise_nodes(&nodes),
        storage_provisioners: classes
            .iter()
            .map(|c| c.provisioner.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        storage_classes: order_classes(&classes),
    })
}

async fn list_all<K>(client: &Client, what: &str) -> Result<Vec<K>, ProbeError>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await.map_err(|e| classify(what, e))?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Distinct regions, zones and providerID schemes of the nodes, with a few providerIDs as evidence.
pub fn summarise_nodes(nodes: &[Node]) -> NodeSummary {
    let mut regions = BTreeSet::new();
    let mut zones = BTreeSet::new();
    let mut schemes = BTreeSet::new();
    let mut samples = Vec::new();
    for node in nodes {
        let labels = node.metadata.labels.as_ref();
        let label = |k: &str| labels.and_then(|l| l.get(k)).cloned();
        if let Some(r) = label(REGION_LABEL).or_else(|| label(LEGACY_REGION_LABEL)) {
            regions.insert(r);
        }
        if let Some(z) = label(ZONE_LABEL).or_else(|| label(LEGACY_ZONE_LABEL)) {
            zones.insert(z);
        }
        if let Some(pid) = node.spec.as_ref().and_then(|s| s.provider_id.as_ref()) {
            if let Some((scheme, _)) = pid.split_once("://") {
                schemes.insert(scheme.to_string());
            }
            if samples.len() < SAMPLE_LIMIT {
                samples.push(pid.clone());
            }
        }
    }
    NodeSummary {
        count: nodes.len() as i64,
        regions: regions.into_iter().collect(),
        zones: zones.into_iter().collect(),
        provider_id_schemes: schemes.into_iter().collect(),
        provider_id_samples: samples,
    }
}

fn order_classes(classes: &[StorageClass]) -> Vec<String> {
    let is_default = |c: &StorageClass| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .is_some_and(|v| v == "true")
    };
    let mut names: Vec<(bool, String)> = classes
        .iter()
        .filter_map(|c| c.metadata.name.clone().map(|n| (!is_default(c), n)))
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(yaml: &str) -> Node {
        serde_yaml::from_str(yaml).expect("node fixture")
    }

    #[test]
    fn eks_nodes_are_summarised() {
        let nodes = vec![
            node(
                "metadata:\n  name: ip-10-0-1-10.ec2.internal\n  labels:\n    topology.kubernetes.io/region: us-east-1\n    topology.kubernetes.io/zone: us-east-1a\nspec:\n  providerID: aws:///us-east-1a/i-0abc\n",
            ),
            node(
                "metadata:\n  name: ip-10-0-2-10.ec2.internal\n  labels:\n    failure-domain.beta.kubernetes.io/region: us-east-1\n    failure-domain.beta.kubernetes.io/zone: us-east-1b\nspec:\n  providerID: aws:///us-east-1b/i-0def\n",
            ),
            node("metadata:\n  name: bare\n"),
        ];
        let s = summarise_nodes(&nodes);
        assert_eq!(s.count, 3);
        assert_eq!(s.regions, vec!["us-east-1"]);
        assert_eq!(s.zones, vec!["us-east-1a", "us-east-1b"]);
        assert_eq!(s.provider_id_schemes, vec!["aws"]);
        assert_eq!(s.provider_id_samples.len(), 2);
    }

    #[test]
    fn the_default_storage_class_comes_first() {
        let classes: Vec<StorageClass> = vec![
            serde_yaml::from_str("metadata: {name: a-slow}\nprovisioner: ebs.csi.aws.com\n").expect("sc"),
            serde_yaml::from_str("metadata:\n  name: gp3\n  annotations: {storageclass.kubernetes.io/is-default-class: 'true'}\nprovisioner: ebs.csi.aws.com\n").expect("sc"),
        ];
        assert_eq!(order_classes(&classes), vec!["gp3", "a-slow"]);
    }
}
