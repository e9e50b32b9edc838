//! What a request to the API server is, read from its method, path and query the way the API
//! server's RequestInfo resolver reads them: the verb (`get`, `list`, `watch`, `create`,
//! `update`, `patch`, `delete`, `deletecollection`), and for resource requests the group,
//! resource, subresource, namespace and name. Non-resource requests (`/version`, `/healthz`,
//! discovery) get the lowercase HTTP method as their verb.

/// The resource a request is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Target {
    /// `configmaps`, `deployments.apps`: how the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub verb: String,
    /// None for non-resource requests.
    pub target: Option<Target>,
}

/// Subresources of a namespace (`/api/v1/namespaces/<name>/status`), not resources in it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

fn truthy(v: &str) -> bool {
    // Go's strconv.ParseBool, which the API server uses for `watch`.
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

fn watch_param(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && truthy(&v))
    })
}

impl RequestInfo {
    pub fn parse(method: &str, path: &str, query: Option<&str>) -> RequestInfo {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let (group, rest): (&str, &[&str]) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (group, rest),
            _ => ("", &[]),
        };
        if rest.is_empty() {
            return RequestInfo {
                verb: method.to_ascii_lowercase(),
                target: None,
            };
        }
        let mut rest = rest;
        let legacy_watch = rest.first() == Some(&"watch");
        if legacy_watch {
            rest = &rest[1..];
        }
        let mut target = Target {
            group: group.to_string(),
            ..Target::default()
        };
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            target.namespace = Some(rest[1].to_string());
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        target.resource = rest.first().map(|s| s.to_string()).unwrap_or_default();
        target.name = rest.get(1).map(|s| s.to_string());
        target.subresource = rest.get(2).map(|s| s.to_string());
        if target.resource == "namespaces" {
            // `/api/v1/namespaces/<name>` is the namespace itself, not a scope.
            target.namespace = None;
        }
        let named = target.name.is_some();
        let verb = match method {
            "GET" | "HEAD" if legacy_watch || watch_param(query) => "watch",
            "GET" | "HEAD" if named => "get",
            "GET" | "HEAD" => "list",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if named => "delete",
            "DELETE" => "deletecollection",
            other => {
                return RequestInfo {
                    verb: other.to_ascii_lowercase(),
                    target: Some(target),
                };
            }
        };
        RequestInfo {
            verb: verb.to_string(),
            target: Some(target),
        }
    }

    pub fn is_watch(&self) -> bool {
        self.verb == "watch"
    }

    /// Verbs that change something (the only ones a 409 Conflict makes sense for).
    pub fn is_write(&self) -> bool {
        self.target.is_some()
            && matches!(
                self.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb(method: &str, path: &str, query: Option<&str>) -> String {
        RequestInfo::parse(method, path, query).verb
    }

    #[test]
    fn verbs_follow_the_api_servers_rules() {
        assert_eq!(
            verb("GET", "/api/v1/namespaces/default/configmaps", None),
            "list"
        );
        assert_eq!(
            verb(
                "GET",
                "/api/v1/namespaces/default/configmaps",
                Some("watch=true&resourceVersion=5")
            ),
            "watch"
        );
        assert_eq!(
            verb(
                "GET",
                "/api/v1/namespaces/default/configmaps",
                Some("watch=1")
            ),
            "watch"
        );
        assert_eq!(
            verb(
                "GET",
                "/api/v1/namespaces/default/configmaps",
                Some("watch=false")
            ),
            "list"
        );
        assert_eq!(
            verb("GET", "/api/v1/watch/namespaces/default/configmaps", None),
            "watch"
        );
        assert_eq!(
            verb("GET", "/api/v1/namespaces/default/configmaps/a", None),
            "get"
        );
        assert_eq!(
            verb("POST", "/api/v1/namespaces/default/configmaps", None),
            "create"
        );
        assert_eq!(
            verb(
                "PUT",
                "/apis/apps/v1/namespaces/x/deployments/d/scale",
                None
            ),
            "update"
        );
        assert_eq!(verb("PATCH", "/api/v1/nodes/n1/status", None), "patch");
        assert_eq!(
            verb("DELETE", "/api/v1/namespaces/default/pods/p", None),
            "delete"
        );
        assert_eq!(
            verb("DELETE", "/api/v1/namespaces/default/pods", None),
            "deletecollection"
        );
        assert_eq!(verb("GET", "/version", None), "get");
        assert_eq!(verb("GET", "/apis/apps/v1", None), "get");
    }

    #[test]
    fn targets_name_the_resource_namespace_and_subresource() {
        let i = RequestInfo::parse(
            "PUT",
            "/apis/apps/v1/namespaces/shop/deployments/web/status",
            None,
        );
        let t = i.target.clone().expect("resource");
        assert_eq!(t.qualified(), "deployments.apps");
        assert_eq!(
            (
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (Some("shop"), Some("web"), Some("status"))
        );
        assert!(i.is_write());
        let ns = RequestInfo::parse("GET", "/api/v1/namespaces/shop", None);
        let t = ns.target.clone().expect("resource");
        assert_eq!(
            (t.resource.as_str(), t.name.as_deref(), t.namespace),
            ("namespaces", Some("shop"), None)
        );
        assert_eq!(ns.verb, "get");
        let fin = RequestInfo::parse("PUT", "/api/v1/namespaces/shop/finalize", None)
            .target
            .expect("resource");
        assert_eq!(
            (fin.resource.as_str(), fin.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
        assert!(
            !RequestInfo::parse("POST", "/version", None).is_write(),
            "not a resource"
        );
        assert!(RequestInfo::parse("GET", "/api/v1/pods", Some("watch=true")).is_watch());
    }
}
