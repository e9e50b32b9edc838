//! The few writes every storage controller makes: finalizers (guarded by the resourceVersion read,
//! as client-go's Update is), annotations, and merge patches of the fields it owns.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub fn has_finalizer<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

pub fn has_annotation<K: Resource>(obj: &K, key: &str) -> bool {
    obj.annotations().contains_key(key)
}

async fn set_finalizers<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    // The resourceVersion makes this a compare-and-swap: another writer's finalizer is never lost.
    let body =
        json!({"metadata": {"resourceVersion": obj.resource_version(), "finalizers": finalizers}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&body),
    )
    .await
}

/// Adds the finalizers the object lacks; the object as it now is.
pub async fn add_finalizers<K>(api: &Api<K>, obj: &K, add: &[&str]) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut list = obj.finalizers().to_vec();
    let before = list.len();
    for f in add {
        if !list.iter().any(|x| x == f) {
            list.push(f.to_string());
        }
    }
    if list.len() == before {
        return Ok(obj.clone());
    }
    set_finalizers(api, obj, list).await
}

/// Removes the finalizers; None when the object is gone (the last finalizer released it).
pub async fn remove_finalizers<K>(api: &Api<K>, obj: &K, remove: &[&str]) -> kube::Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let list: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| !remove.contains(&f.as_str()))
        .cloned()
        .collect();
    if list.len() == obj.finalizers().len() {
        return Ok(Some(obj.clone()));
    }
    match set_finalizers(api, obj, list).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A JSON merge patch of the object.
pub async fn merge<K>(api: &Api<K>, name: &str, body: &Value) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
}

/// A JSON merge patch of the status subresource: `{"status": status}`.
pub async fn merge_status<K>(api: &Api<K>, name: &str, status: Value) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
}

/// Sets one annotation.
pub async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: &str) -> kube::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    merge(
        api,
        name,
        &json!({"metadata": {"annotations": {key: value}}}),
    )
    .await
}

/// Whether a kube error is the API's NotFound.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Whether a kube error is the API's AlreadyExists.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_already_exists())
}
