//! Reading the source namespace: every namespaced kind the API serves and that can be listed,
//! found through discovery (so that custom resources move too).

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("discovery of the source cluster's API failed: {0}")]
    Discovery(#[source] kube::Error),
    #[error("cannot list {resource} in namespace {namespace}: {source}")]
    List {
        resource: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

/// Resources that are never part of a workload (and can be large): not even listed.
const NOT_LISTED: [&str; 4] = ["events", "controllerrevisions", "endpointslices", "leases"];

/// Every object of `namespace`, as JSON with its kind and apiVersion set.
pub async fn namespace_objects(
    client: &Client,
    namespace: &str,
) -> Result<Vec<Value>, DiscoverError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(DiscoverError::Discovery)?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || NOT_LISTED.contains(&ar.plural.as_str())
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let mut params = ListParams::default().limit(500);
            loop {
                let page = api
                    .list(&params)
                    .await
                    .map_err(|source| DiscoverError::List {
                        resource: format!("{}.{}", ar.plural, ar.group),
                        namespace: namespace.to_string(),
                        source,
                    })?;
                for item in page.items {
                    let mut v = serde_json::to_value(&item).unwrap_or(Value::Null);
                    if v.is_null() {
                        continue;
                    }
                    v["apiVersion"] = Value::String(ar.api_version.clone());
                    v["kind"] = Value::String(ar.kind.clone());
                    out.push(v);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
    }
    Ok(out)
}
