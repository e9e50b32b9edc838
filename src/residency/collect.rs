//! Reading a live cluster's residency signals into an [`Inventory`].

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::inventory::{Inventory, InventoryError};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
}

async fn list_into<K>(inv: &mut Inventory, api: Api<K>, what: &str) -> Result<(), CollectError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|source| CollectError::List {
                what: what.to_string(),
                source,
            })?;
        for item in page.items {
            let mut v = serde_json::to_value(&item).map_err(|e| {
                CollectError::Inventory(InventoryError::Shape {
                    object: what.to_string(),
                    kind: K::kind(&()).to_string(),
                    message: e.to_string(),
                })
            })?;
            v["kind"] = serde_json::Value::String(K::kind(&()).to_string());
            inv.add(v)?;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Lists what residency reads: the cluster's nodes, storage and volumes, and the workload objects of
/// `namespaces` (all namespaces when empty).
pub async fn collect(client: &Client, namespaces: &[String]) -> Result<Inventory, CollectError> {
    let mut inv = Inventory::default();
    list_into(&mut inv, Api::<Node>::all(client.clone()), "nodes").await?;
    list_into(
        &mut inv,
        Api::<StorageClass>::all(client.clone()),
        "storageclasses",
    )
    .await?;
    list_into(
        &mut inv,
        Api::<PersistentVolume>::all(client.clone()),
        "persistentvolumes",
    )
    .await?;
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    for ns in scopes {
        macro_rules! each {
            ($($k:ty => $what:literal),* $(,)?) => {$(
                let api: Api<$k> = match ns {
                    Some(ns) => Api::namespaced(client.clone(), ns),
                    None => Api::all(client.clone()),
                };
                list_into(&mut inv, api, $what).await?;
            )*};
        }
        each!(
            Service => "services",
            ServiceAccount => "serviceaccounts",
            Pod => "pods",
            Deployment => "deployments",
            StatefulSet => "statefulsets",
            DaemonSet => "daemonsets",
            Job => "jobs",
            CronJob => "cronjobs",
            ConfigMap => "configmaps",
            Ingress => "ingresses",
        );
    }
    Ok(inv)
}
