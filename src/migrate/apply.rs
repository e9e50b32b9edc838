//! Applying the plan's objects to the target: server-side apply under the operator's field manager,
//! in plan order. Idempotent: applying again after a crash changes nothing that was applied.

use std::collections::HashMap;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use serde_json::json;

use super::plan::Plan;
use crate::api::workload::{ObjectOutcome, ObjectResult, keys};

pub const FIELD_MANAGER: &str = "sovereign-operator";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("discovery of the target cluster's API failed: {0}")]
    Discovery(#[source] kube::Error),
    #[error("cannot create the target namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    match api_version.split_once('/') {
        Some((g, v)) => GroupVersionKind::gvk(g, v, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    }
}

/// Applies every planned object; one that cannot be applied is a `Failed` result with the reason,
/// and the others still go.
pub async fn apply(
    client: &Client,
    plan: &Plan,
    target_namespace: &str,
) -> Result<Vec<ObjectResult>, ApplyError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(ApplyError::Discovery)?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target_namespace,
        "labels": {keys::MANAGED_BY: keys::MANAGER}}});
    namespaces
        .patch(target_namespace, &pp, &Patch::Apply(&ns))
        .await
        .map_err(|source| ApplyError::Namespace {
            namespace: target_namespace.to_string(),
            source,
        })?;
    let mut results = Vec::with_capacity(plan.objects.len());
    // The resourceVersions already in the target namespace, per kind, listed once when the first
    // object of the kind comes up: whether the apply changed an object (Applied) or not
    // (Unchanged) is told by comparing them with the patch's answer. A GET before every object
    // made a 2,000-object namespace cost 2,000 more requests (bench/README.md).
    let mut existing: HashMap<(String, String, String), Option<HashMap<String, String>>> =
        HashMap::new();
    for o in &plan.objects {
        let result = |outcome, message: String| ObjectResult {
            kind: o.kind.clone(),
            name: o.name.clone(),
            result: outcome,
            message,
        };
        let Some((ar, caps)) = discovery.resolve_gvk(&gvk(&o.api_version, &o.kind)) else {
            results.push(result(
                ObjectOutcome::Failed,
                format!(
                    "the target serves no {} {}: install its CRD there first",
                    o.api_version, o.kind
                ),
            ));
            continue;
        };
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(client.clone(), target_namespace, &ar),
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let before = match caps.scope {
            Scope::Namespaced => {
                let key = (ar.group.clone(), ar.version.clone(), ar.plural.clone());
                if !existing.contains_key(&key) {
                    let found = list_versions(&api).await;
                    existing.insert(key.clone(), found);
                }
                match existing.get(&key) {
                    Some(Some(versions)) => versions.get(&o.name).cloned(),
                    // The list was refused (RBAC, a flaky server): ask for this one object.
                    _ => get_version(&api, &o.name).await,
                }
            }
            // Cluster-scoped kinds are few in a plan and their lists can be large: one GET each.
            Scope::Cluster => get_version(&api, &o.name).await,
        };
        match api.patch(&o.name, &pp, &Patch::Apply(&o.object)).await {
            Ok(after) => {
                let unchanged = before.is_some() && before == after.metadata.resource_version;
                results.push(result(
                    if unchanged {
                        ObjectOutcome::Unchanged
                    } else {
                        ObjectOutcome::Applied
                    },
                    String::new(),
                ));
            }
            Err(kube::Error::Api(s)) => results.push(result(
                ObjectOutcome::Failed,
                format!("{} ({})", s.message, s.reason),
            )),
            Err(e) => results.push(result(ObjectOutcome::Failed, e.to_string())),
        }
    }
    Ok(results)
}

/// Name → resourceVersion of every object the API lists (metadata only, every page); None when
/// the list fails.
async fn list_versions(api: &Api<DynamicObject>) -> Option<HashMap<String, String>> {
    let mut versions = HashMap::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await.ok()?;
        for item in page.items {
            if let (Some(name), Some(rv)) = (item.metadata.name, item.metadata.resource_version) {
                versions.insert(name, rv);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Some(versions),
        }
    }
}

/// The resourceVersion of one object, None when it does not exist (or cannot be read).
async fn get_version(api: &Api<DynamicObject>, name: &str) -> Option<String> {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|x| x.metadata.resource_version)
}

/// Removes what a workload created in the target namespace (its label marks it), for a migration
/// abandoned before cutover. Never touches anything without the label; the source is never read.
pub async fn remove_half_built(
    client: &Client,
    target_namespace: &str,
    workload_label: &str,
) -> Result<usize, ApplyError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(ApplyError::Discovery)?;
    let selector = format!("{}={workload_label}", keys::WORKLOAD);
    let mut removed = 0;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(kube::discovery::verbs::LIST)
                || !caps.supports_operation(kube::discovery::verbs::DELETE)
            {
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), target_namespace, &ar);
            let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
                continue;
            };
            for item in list.items {
                if let Some(name) = item.metadata.name.as_deref()
                    && api.delete(name, &DeleteParams::background()).await.is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}
