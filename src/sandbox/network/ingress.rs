//! What a provider's cloud controller writes into `status.loadBalancer.ingress`, for the address
//! the agent gave the Service. AWS (EKS) names its load balancers in DNS: a Classic ELB for a
//! plain Service, an NLB for `service.beta.kubernetes.io/aws-load-balancer-type: nlb` (or
//! `external`, the AWS Load Balancer Controller's). Those names do not resolve here, so the
//! entry also carries the `ip` the proxy really listens on. Every other profile gets an `ip`.
//! `ipMode: Proxy` in every case: traffic goes through the load balancer's proxy, and no node
//! binds the address (what kube-proxy would do for `VIP`).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::sandbox::profiles::Profile;

/// The annotation the in-tree AWS provider and the AWS Load Balancer Controller read.
pub const AWS_LB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// How a provider's load balancers appear in a Service's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// ELB / NLB names under `<region>`'s AWS domains, plus the real address.
    Aws { region: String },
    /// The address only (AKS, GKE, OVHcloud, the Québec provider).
    Ip,
}

impl Shape {
    pub fn of(profile: &Profile) -> Shape {
        if !profile.id.starts_with("eks-") {
            return Shape::Ip;
        }
        let from_nodes = profile.nodes.iter().find_map(|n| {
            n.labels
                .get(REGION_LABEL)
                .and_then(|v| v.as_str())
                .map(String::from)
        });
        let region =
            from_nodes.unwrap_or_else(|| profile.id.trim_start_matches("eks-").to_string());
        Shape::Aws { region }
    }
}

fn hex_digest(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// The first `max` ASCII letters and digits of `s`, lowercased (how the AWS Load Balancer
/// Controller squeezes a namespace and a name into a load balancer name).
fn squeeze(s: &str, max: usize) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(max)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The DNS name AWS gives the Service's load balancer. Derived from the namespace, the name and
/// the uid only, so a restarted agent writes the same name.
pub fn aws_hostname(namespace: &str, name: &str, uid: &str, region: &str, nlb: bool) -> String {
    let digest = hex_digest(&format!("{namespace}/{name}/{uid}"));
    if nlb {
        // `k8s-<ns>-<name>-<hash10>` is the controller's name; AWS appends 16 hex digits.
        format!(
            "k8s-{}-{}-{}-{}.elb.{region}.amazonaws.com",
            squeeze(namespace, 8),
            squeeze(name, 8),
            &digest[..10],
            &digest[10..26]
        )
    } else {
        // The in-tree provider names a Classic ELB `a` + the uid without dashes, 32 characters
        // in all; AWS appends a number.
        let uid_hex: String = uid.chars().filter(char::is_ascii_hexdigit).collect();
        let source = if uid_hex.is_empty() {
            digest.as_str()
        } else {
            uid_hex.as_str()
        };
        let id = format!("a{}", &source[..31.min(source.len())]).to_ascii_lowercase();
        let number = u64::from_str_radix(&digest[32..40], 16).unwrap_or(0) % 10_000_000_000;
        format!("{id}-{number:010}.{region}.elb.amazonaws.com")
    }
}

/// Whether the Service asks AWS for a Network Load Balancer.
fn wants_nlb(svc: &Service) -> bool {
    matches!(
        svc.annotations().get(AWS_LB_TYPE).map(String::as_str),
        Some("nlb") | Some("external") | Some("nlb-ip")
    )
}

/// The ingress list the provider writes for `svc` at `ip`.
pub fn ingress(shape: &Shape, svc: &Service, ip: Ipv4Addr) -> Vec<LoadBalancerIngress> {
    let hostname = match shape {
        Shape::Aws { region } => Some(aws_hostname(
            &svc.namespace().unwrap_or_default(),
            &svc.name_any(),
            &svc.uid().unwrap_or_default(),
            region,
            wants_nlb(svc),
        )),
        Shape::Ip => None,
    };
    vec![LoadBalancerIngress {
        hostname,
        ip: Some(ip.to_string()),
        ip_mode: Some("Proxy".into()),
        ports: None,
    }]
}

/// The first ingress address of ours in a Service's status (what a restarted agent adopts).
pub fn current_ip(svc: &Service) -> Option<String> {
    svc.status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.clone())
}

/// The ingress list the Service's status holds now (empty when none).
pub fn current(svc: &Service) -> Vec<LoadBalancerIngress> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::profiles;

    fn svc(annotations: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-front", "namespace": "shop", "uid": "0b9f6c1e-3f0a-4c55-9d4e-5c1a2b3c4d5e",
                         "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
        }))
        .expect("service")
    }

    fn is_dns_name(h: &str) -> bool {
        h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    }

    #[test]
    fn eks_gets_an_elb_name_and_the_address_others_the_address_only() {
        let eks = Shape::of(&profiles::by_id("eks-us-east-1", 1).expect("eks"));
        assert_eq!(
            eks,
            Shape::Aws {
                region: "us-east-1".into()
            }
        );
        let ip = Ipv4Addr::new(127, 20, 201, 2);
        let classic = ingress(&eks, &svc(serde_json::json!({})), ip);
        let h = classic[0].hostname.clone().expect("hostname");
        assert!(h.starts_with("a0b9f6c1e3f0a4c559d4e5c1a2b3c4d5-"), "{h}");
        assert!(
            h.ends_with(".us-east-1.elb.amazonaws.com") && is_dns_name(&h),
            "{h}"
        );
        assert_eq!(classic[0].ip.as_deref(), Some("127.20.201.2"));
        assert_eq!(classic[0].ip_mode.as_deref(), Some("Proxy"));

        let nlb = ingress(&eks, &svc(serde_json::json!({AWS_LB_TYPE: "nlb"})), ip);
        let h = nlb[0].hostname.clone().expect("hostname");
        assert!(h.starts_with("k8s-shop-webfront-"), "{h}");
        assert!(
            h.ends_with(".elb.us-east-1.amazonaws.com") && is_dns_name(&h),
            "{h}"
        );
        assert_eq!(nlb[0].ip.as_deref(), Some("127.20.201.2"));

        for id in ["qc-sovereign", "aks-eastus", "gke-us-central1", "ovh-bhs5"] {
            let shape = Shape::of(&profiles::by_id(id, 1).expect("profile"));
            assert_eq!(shape, Shape::Ip, "{id}");
            let i = ingress(&shape, &svc(serde_json::json!({})), ip);
            assert_eq!(
                (i[0].hostname.as_deref(), i[0].ip.as_deref()),
                (None, Some("127.20.201.2"))
            );
            assert_eq!(i[0].ip_mode.as_deref(), Some("Proxy"));
        }
    }

    #[test]
    fn names_are_stable_and_differ_between_services() {
        let a = aws_hostname("ns", "a", "u1", "us-east-1", true);
        assert_eq!(a, aws_hostname("ns", "a", "u1", "us-east-1", true));
        assert_ne!(a, aws_hostname("ns", "b", "u2", "us-east-1", true));
        // No uid (never from the API server, but not a panic either).
        assert!(is_dns_name(&aws_hostname(
            "ns",
            "a",
            "",
            "us-east-1",
            false
        )));
    }
}
