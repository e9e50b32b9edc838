//! Reading the source namespace: every namespaced kind the API serves and that can be listed,
//! found through discovery (so that custom resources move too), and that the source credentials
//! may list: least-privilege credentials name the kinds a workload is made of, and a kind they
//! do not cover is reported as unread (a plan finding), never tried and refused.

use k8s_openapi::api::authorization::v1::{
    ResourceRule, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use serde_json::Value;

use crate::api::{Finding, Severity};

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

/// What the source namespace holds, as far as the credentials may read it.
#[derive(Debug, Default)]
pub struct Discovered {
    pub objects: Vec<Value>,
    /// `plural.group` of each served kind the credentials may not list (not read).
    pub unreadable: Vec<String>,
}

impl Discovered {
    /// The plan's note of what was not read, if anything.
    pub fn finding(&self, namespace: &str) -> Option<Finding> {
        (!self.unreadable.is_empty()).then(|| Finding {
            object: format!("Namespace/{namespace}"),
            field: String::new(),
            evidence: self.unreadable.join(", "),
            rule: "the source credentials may list every kind the workload is made of".into(),
            severity: Severity::Info,
            remediation: "objects of these kinds, if the namespace has any, were not read and do not move; grant `list` on the kinds the workload uses to the source identity (charts/sovereign-source-access)".into(),
        })
    }
}

/// What the credentials may do in `namespace`, as the API server's authorizer says
/// (SelfSubjectRulesReview, which every authenticated user may ask). None: the authorizer cannot
/// enumerate its rules (a webhook authorizer), so each list is tried instead.
async fn rules(client: &Client, namespace: &str) -> Option<Vec<ResourceRule>> {
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(namespace.to_string()),
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectRulesReview> = Api::all(client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(r) => r.status.filter(|s| !s.incomplete).map(|s| s.resource_rules),
        Err(e) => {
            tracing::warn!(namespace, error = %e, "cannot review the source credentials' rules; trying every list");
            None
        }
    }
}

/// Whether `rules` let the credentials list `plural` of `group` (names cannot narrow a list).
fn may_list(rules: &[ResourceRule], group: &str, plural: &str) -> bool {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
    };
    rules.iter().any(|r| {
        r.verbs.iter().any(|v| v == "*" || v == "list")
            && has(&r.api_groups, group)
            && has(&r.resources, plural)
            && r.resource_names.as_ref().is_none_or(|n| n.is_empty())
    })
}

/// Every object of `namespace` the credentials may list, as JSON with its kind and apiVersion
/// set, and the kinds they may not.
pub async fn namespace_objects(
    client: &Client,
    namespace: &str,
) -> Result<Discovered, DiscoverError> {
    let discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .map_err(DiscoverError::Discovery)?;
    let rules = rules(client, namespace).await;
    let mut found = Discovered::default();
    let out = &mut found.objects;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            // Kinds never moved (and some large, such as Events) are not even listed.
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || crate::migrate::select::NEVER.contains(&ar.kind.as_str())
            {
                continue;
            }
            if rules
                .as_ref()
                .is_some_and(|r| !may_list(r, &ar.group, &ar.plural))
            {
                found.unreadable.push(resource_name(&ar.plural, &ar.group));
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
            let mut params = ListParams::default().limit(500);
            loop {
                let page = api
                    .list(&params)
                    .await
                    .map_err(|source| DiscoverError::List {
                        resource: resource_name(&ar.plural, &ar.group),
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
    found.unreadable.sort();
    Ok(found)
}

/// `plural.group`, or `plural` for the core group.
fn resource_name(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> ResourceRule {
        let v = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        ResourceRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
        }
    }

    #[test]
    fn a_kind_is_listed_only_where_a_rule_grants_list_without_names() {
        let rules = [
            rule(&["get", "list"], &["apps"], &["deployments"], &[]),
            rule(&["list"], &[""], &["configmaps"], &["only-this"]),
            rule(&["*"], &["example.com"], &["*"], &[]),
            rule(&["get"], &[""], &["secrets"], &[]),
        ];
        assert!(may_list(&rules, "apps", "deployments"));
        assert!(!may_list(&rules, "apps", "statefulsets"));
        assert!(
            !may_list(&rules, "", "configmaps"),
            "names cannot narrow a list"
        );
        assert!(may_list(&rules, "example.com", "widgets"));
        assert!(!may_list(&rules, "", "secrets"), "get is not list");
    }

    #[test]
    fn what_was_not_read_is_a_finding_naming_each_kind() {
        let d = Discovered {
            objects: vec![],
            unreadable: vec!["limitranges".into(), "widgets.example.com".into()],
        };
        let f = d.finding("sante").expect("a finding");
        assert_eq!(f.object, "Namespace/sante");
        assert_eq!(f.evidence, "limitranges, widgets.example.com");
        assert!(Discovered::default().finding("sante").is_none());
    }
}
