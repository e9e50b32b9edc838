//! Projected service-account tokens, as the kubelet's token manager keeps them: requested with
//! the TokenRequest API (`serviceaccounts/<sa>/token`, bound to the Pod by name and uid, with
//! the projection's audience and expirationSeconds), written to the volume, and requested again
//! once 80 % of their lifetime has passed (or 24 hours, whichever comes first); a failed
//! refresh keeps the old token and is retried. Processes outside a container cannot read the
//! fixed in-cluster paths, so the pod also gets a kubeconfig naming the API server, the cluster
//! CA and the token file (`tokenFile` is re-read by kube-rs and client-go).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;

use super::PodRef;
use crate::sandbox::agent::Host;
use crate::sandbox::controlplane::kubeconfig::{self, Auth, Entry};
use crate::sandbox::controlplane::pki::{Ca, write_private};

/// The kubelet's longest wait between two requests of the same token.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// After a failed refresh, the next try.
const RETRY: Duration = Duration::from_secs(10);
/// What the API server issues when a projection names no expiry.
const DEFAULT_EXPIRATION: i64 = 3600;

/// One token file the agent keeps fresh.
#[derive(Clone, Debug)]
pub struct Token {
    pub path: PathBuf,
    pub service_account: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub mode: u32,
    pub refresh_at: Timestamp,
}

/// When a token issued for `ttl` seconds and expiring at `expires` is requested again: 80 % of
/// its lifetime, or 24 hours after issue.
pub fn refresh_at(expires: Timestamp, ttl_seconds: i64) -> Timestamp {
    let ttl = SignedDuration::from_secs(ttl_seconds.max(0));
    let issued = expires - ttl;
    let at_80 = issued + ttl * 4 / 5;
    let at_max = issued + SignedDuration::from_secs(MAX_AGE.as_secs() as i64);
    at_80.min(at_max)
}

/// Requests a token for the pod's service account; returns it with its expiry and lifetime.
pub async fn request(
    client: &kube::Client,
    pod: &PodRef,
    service_account: &str,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<(String, Timestamp, i64), kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &pod.namespace);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            // Empty: the API server's own audiences.
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                uid: Some(pod.uid.clone()),
            }),
        },
        ..Default::default()
    };
    let issued = api
        .create_token_request(service_account, &PostParams::default(), &req)
        .await?;
    let ttl = issued.spec.expiration_seconds.unwrap_or(expiration_seconds);
    match issued.status {
        Some(s) => Ok((s.token, s.expiration_timestamp.0, ttl)),
        None => Err(kube::Error::Service(
            "the API server answered a TokenRequest without a token".into(),
        )),
    }
}

impl Token {
    pub fn new(
        path: PathBuf,
        service_account: &str,
        audience: Option<String>,
        expiration: Option<i64>,
        mode: u32,
    ) -> Token {
        Token {
            path,
            service_account: service_account.to_string(),
            audience: audience.filter(|a| !a.is_empty()),
            expiration_seconds: expiration.unwrap_or(DEFAULT_EXPIRATION),
            mode,
            refresh_at: Timestamp::now(),
        }
    }

    pub fn due(&self, now: Timestamp) -> bool {
        now >= self.refresh_at
    }

    /// Requests the token and (re)writes its file atomically (a reader never sees half a token).
    pub async fn renew(&mut self, client: &kube::Client, pod: &PodRef) -> Result<(), TokenError> {
        let got = request(
            client,
            pod,
            &self.service_account,
            self.audience.as_deref(),
            self.expiration_seconds,
        )
        .await;
        let (token, expires, ttl) = match got {
            Ok(t) => t,
            Err(source) => {
                self.refresh_at = Timestamp::now() + RETRY;
                return Err(TokenError::Request {
                    pod: pod.describe(),
                    service_account: self.service_account.clone(),
                    source: Box::new(source),
                });
            }
        };
        if let Err(e) = write_private(&self.path, &token, self.mode) {
            self.refresh_at = Timestamp::now() + RETRY;
            return Err(TokenError::Write {
                pod: pod.describe(),
                message: e.to_string(),
            });
        }
        self.refresh_at = refresh_at(expires, ttl);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{pod}: cannot request a token for service account {service_account}: {source}")]
    Request {
        pod: String,
        service_account: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{pod}: cannot write the token: {message}")]
    Write { pod: String, message: String },
}

/// Writes `<pod dir>/kubeconfig`: the API server at its own address, the cluster CA, the pod's
/// token file, the pod's namespace.
pub fn write_kubeconfig(
    host: &Host,
    pod: &PodRef,
    pod_dir: &Path,
    token: &Path,
) -> std::io::Result<PathBuf> {
    let entry = Entry {
        name: "pod".into(),
        server: format!("https://{}", host.api),
        ca_pem: host.pki.ca_pem(Ca::Cluster).to_string(),
        auth: Auth::TokenFile(token.to_path_buf()),
        namespace: Some(pod.namespace.clone()),
    };
    let path = pod_dir.join("kubeconfig");
    write_private(&path, &kubeconfig::render(&[entry], "pod"), 0o600)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_eighty_percent_or_after_a_day() {
        let exp: Timestamp = "2026-01-01T01:00:00Z".parse().expect("time");
        assert_eq!(refresh_at(exp, 3600).to_string(), "2026-01-01T00:48:00Z");
        let year = 365 * 24 * 3600;
        let far: Timestamp = "2027-01-01T00:00:00Z".parse().expect("time");
        assert_eq!(refresh_at(far, year).to_string(), "2026-01-02T00:00:00Z");
    }
}
