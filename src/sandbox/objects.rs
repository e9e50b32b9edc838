//! Objects the sandbox puts into a cluster (add-ons, the provider's classes, the demo
//! application, the operator's registrations): server-side applied from JSON under a field
//! manager, their kind resolved through the API server's discovery.

use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::core::ApiResource;
use kube::discovery::{ApiCapabilities, Scope};
use kube::{Api, Client};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("object without apiVersion, kind or metadata.name: {0}")]
    Malformed(String),
    #[error("{kind} {name}: {source}")]
    Api {
        kind: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// The kind's resource and whether it is namespaced.
pub async fn resource(
    client: &Client,
    api_version: &str,
    kind: &str,
) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await
}

fn field<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Server-side applies `obj` (forcing ownership: the sandbox is the only author of these).
pub async fn apply(
    client: &Client,
    obj: &Value,
    manager: &str,
) -> Result<DynamicObject, ApplyError> {
    let malformed = || ApplyError::Malformed(obj.to_string().chars().take(200).collect());
    let api_version = field(obj, "/apiVersion").ok_or_else(malformed)?;
    let kind = field(obj, "/kind").ok_or_else(malformed)?;
    let name = field(obj, "/metadata/name").ok_or_else(malformed)?;
    let err = |source: kube::Error| ApplyError::Api {
        kind: kind.to_string(),
        name: name.to_string(),
        source: Box::new(source),
    };
    let (ar, caps) = resource(client, api_version, kind).await.map_err(err)?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            field(obj, "/metadata/namespace").unwrap_or("default"),
            &ar,
        ),
    };
    api.patch(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(obj),
    )
    .await
    .map_err(err)
}

/// Applies each object in order.
pub async fn apply_all(client: &Client, objs: &[Value], manager: &str) -> Result<(), ApplyError> {
    for o in objs {
        apply(client, o, manager).await?;
    }
    Ok(())
}

/// Waits until every named CRD is Established (served), up to `timeout`.
pub async fn wait_established(
    client: &Client,
    names: &[String],
    timeout: std::time::Duration,
) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    for name in names {
        loop {
            let established = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the CRD {name} is not established after {}s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
