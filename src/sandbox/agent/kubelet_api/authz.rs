//! The kubelet's webhook authorization: every request is a SubjectAccessReview for the
//! client's user and groups on `nodes/<subresource>` of the node it reached, with the verb of
//! its HTTP method. Answers are cached as the kubelet caches them (allowed 5 min, denied 30 s).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::identity::Identity;

const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
    pub node: String,
}

impl Attributes {
    /// The kubelet's mapping: the HTTP method gives the verb; `/containerLogs` is the `log`
    /// subresource, everything else `proxy`.
    pub fn of(method: &http::Method, path: &str, node: &str) -> Attributes {
        let verb = match *method {
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "get",
        };
        let subresource = if path.starts_with("/containerLogs/") {
            "log"
        } else {
            "proxy"
        };
        Attributes {
            verb,
            subresource,
            node: node.to_string(),
        }
    }

    /// The kubelet's 403 message.
    pub fn forbidden(&self, id: &Identity) -> String {
        format!(
            "Forbidden (user={}, verb={}, resource=nodes, subresource={})",
            id.user, self.verb, self.subresource
        )
    }
}

#[derive(Default)]
pub struct Authorizer {
    cache: Mutex<HashMap<(Identity, Attributes), (bool, Instant)>>,
}

impl Authorizer {
    fn cached(&self, key: &(Identity, Attributes)) -> Option<bool> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (allowed, at) = cache.get(key)?;
        let ttl = if *allowed { ALLOWED_TTL } else { DENIED_TTL };
        (at.elapsed() < ttl).then_some(*allowed)
    }

    /// Whether the API server allows it; a failed review denies (and is not cached).
    pub async fn allowed(
        &self,
        client: &kube::Client,
        id: &Identity,
        attrs: &Attributes,
    ) -> Result<bool, kube::Error> {
        let key = (id.clone(), attrs.clone());
        if let Some(a) = self.cached(&key) {
            return Ok(a);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(id.user.clone()),
                groups: Some(id.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(attrs.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (allowed, Instant::now()));
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_methods_map_as_the_kubelet_maps_them() {
        let a = Attributes::of(&http::Method::GET, "/containerLogs/ns/p/c", "n1");
        assert_eq!((a.verb, a.subresource), ("get", "log"));
        let e = Attributes::of(&http::Method::POST, "/exec/ns/p/c", "n1");
        assert_eq!((e.verb, e.subresource), ("create", "proxy"));
        let id = Identity {
            user: "u".into(),
            groups: vec![],
        };
        assert_eq!(
            a.forbidden(&id),
            "Forbidden (user=u, verb=get, resource=nodes, subresource=log)"
        );
    }
}
