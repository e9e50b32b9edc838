//! Writing status: server-side apply under the operator's field manager, only when it changed.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::context::FIELD_MANAGER;
use super::error::{Error, Result};

/// Applies `status` to the object `name` unless it equals `old`. The operator is the only writer
/// of these status fields, so it forces ownership.
pub async fn write<K, S>(api: &Api<K>, name: &str, old: &S, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if status == old {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Status {
        kind: kind_name::<K>(),
        name: name.to_string(),
        source,
    })
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    // Error context wants a static name; the kinds that have status here are few and fixed.
    match K::kind(&()).as_ref() {
        "SovereignCluster" => "SovereignCluster",
        "SovereignWorkload" => "SovereignWorkload",
        "VolumeTransfer" => "VolumeTransfer",
        "ResidencyPolicy" => "ResidencyPolicy",
        _ => "object",
    }
}
