//! The objects of a cluster that residency is judged from, read from a live cluster or from a file of
//! `kubectl get … -o yaml` output (a `List` or multi-document YAML).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::storage::v1::StorageClass;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ResidencyPolicy, SovereignCluster};

/// A pod template found in a workload object.
#[derive(Clone, Debug)]
pub struct Template {
    /// `Kind/namespace/name`
    pub object: String,
    /// JSON path of the pod spec inside the object.
    pub field: String,
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub nodes: Vec<Node>,
    pub storage_classes: Vec<StorageClass>,
    pub volumes: Vec<PersistentVolume>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub services: Vec<Service>,
    pub service_accounts: Vec<ServiceAccount>,
    pub pods: Vec<Pod>,
    pub templates: Vec<Template>,
    pub config_maps: Vec<ConfigMap>,
    pub ingresses: Vec<Ingress>,
    pub clusters: Vec<SovereignCluster>,
    pub policies: Vec<ResidencyPolicy>,
    /// The API server's host, when known (a kubeconfig's server URL).
    pub api_server_host: Option<String>,
    /// Kinds present in the input that residency does not read (for the record).
    pub ignored: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("document {index} is not valid YAML: {message}")]
    Yaml { index: usize, message: String },
    #[error("{object} does not have the shape of a {kind}: {message}")]
    Shape {
        object: String,
        kind: String,
        message: String,
    },
    #[error("the input holds no Kubernetes objects")]
    Empty,
}

/// `Kind/namespace/name` (or `Kind/name`) of a raw object.
pub fn object_name(v: &Value) -> String {
    let kind = v["kind"].as_str().unwrap_or("Object");
    let name = v["metadata"]["name"].as_str().unwrap_or("?");
    match v["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, InventoryError> {
    T::deserialize(v).map_err(|e| InventoryError::Shape {
        object: object_name(v),
        kind: v["kind"].as_str().unwrap_or("?").to_string(),
        message: e.to_string(),
    })
}

impl Inventory {
    /// Reads `kubectl get -o yaml` output: one or more documents, each an object or a `List`.
    pub fn from_yaml(text: &str) -> Result<Inventory, InventoryError> {
        let mut inv = Inventory::default();
        let mut count = 0;
        for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value = Value::deserialize(doc).map_err(|e| InventoryError::Yaml {
                index: index + 1,
                message: e.to_string(),
            })?;
            count += inv.add(value)?;
        }
        if count == 0 {
            return Err(InventoryError::Empty);
        }
        Ok(inv)
    }

    /// Adds an object (or the items of a `List`); returns how many objects were read.
    pub fn add(&mut self, v: Value) -> Result<usize, InventoryError> {
        if v.is_null() {
            return Ok(0);
        }
        if v["kind"]
            .as_str()
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && v["items"].is_array()
        {
            let mut n = 0;
            if let Value::Array(items) = v["items"].clone() {
                for mut item in items {
                    // `kubectl get a,b -o yaml` items carry their own kind; a typed list's may not.
                    if item["kind"].is_null()
                        && let Some(k) = v["kind"].as_str().and_then(|k| k.strip_suffix("List"))
                    {
                        item["kind"] = Value::String(k.to_string());
                    }
                    n += self.add(item)?;
                }
            }
            return Ok(n);
        }
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let object = object_name(&v);
        let template =
            |inv: &mut Inventory, path: &[&str], field: &str| -> Result<(), InventoryError> {
                let mut spec = &v;
                for p in path {
                    spec = &spec[*p];
                }
                if !spec.is_null() {
                    inv.templates.push(Template {
                        object: object.clone(),
                        field: field.to_string(),
                        spec: typed(spec)?,
                    });
                }
                Ok(())
            };
        match kind.as_str() {
            "Node" => self.nodes.push(typed(&v)?),
            "StorageClass" => self.storage_classes.push(typed(&v)?),
            "PersistentVolume" => self.volumes.push(typed(&v)?),
            "PersistentVolumeClaim" => self.claims.push(typed(&v)?),
            "Service" => self.services.push(typed(&v)?),
            "ServiceAccount" => self.service_accounts.push(typed(&v)?),
            "Pod" => self.pods.push(typed(&v)?),
            "ConfigMap" => self.config_maps.push(typed(&v)?),
            "Ingress" => self.ingresses.push(typed(&v)?),
            "SovereignCluster" => self.clusters.push(typed(&v)?),
            "ResidencyPolicy" => self.policies.push(typed(&v)?),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                // Check the whole object's shape, then keep its template.
                match kind.as_str() {
                    "Deployment" => drop(typed::<Deployment>(&v)?),
                    "StatefulSet" => drop(typed::<StatefulSet>(&v)?),
                    "DaemonSet" => drop(typed::<DaemonSet>(&v)?),
                    "ReplicaSet" => drop(typed::<ReplicaSet>(&v)?),
                    _ => drop(typed::<Job>(&v)?),
                }
                template(self, &["spec", "template", "spec"], "spec.template.spec")?;
            }
            "CronJob" => {
                drop(typed::<CronJob>(&v)?);
                template(
                    self,
                    &["spec", "jobTemplate", "spec", "template", "spec"],
                    "spec.jobTemplate.spec.template.spec",
                )?;
            }
            "" => return Ok(0),
            other => self.ignored.push(other.to_string()),
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_documents_are_read() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: n1}\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: web, namespace: app}\n  spec:\n    selector: {matchLabels: {a: b}}\n    template:\n      metadata: {labels: {a: b}}\n      spec:\n        containers: [{name: web, image: nginx}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        let inv = Inventory::from_yaml(text).expect("inventory");
        assert_eq!(inv.nodes.len(), 1);
        assert_eq!(inv.templates.len(), 1);
        assert_eq!(inv.templates[0].object, "Deployment/app/web");
        assert_eq!(inv.ignored, vec!["Secret"]);
    }

    #[test]
    fn bad_input_says_where() {
        assert!(matches!(
            Inventory::from_yaml("a: [").unwrap_err(),
            InventoryError::Yaml { index: 1, .. }
        ));
        let e = Inventory::from_yaml("kind: Node\nmetadata: {name: n}\nspec: {providerID: 3}\n")
            .unwrap_err();
        assert!(e.to_string().contains("Node/n"), "{e}");
        assert!(matches!(
            Inventory::from_yaml("").unwrap_err(),
            InventoryError::Empty
        ));
    }
}
