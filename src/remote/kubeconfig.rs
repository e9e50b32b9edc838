//! A `SovereignCluster`'s kubeconfig, from its Secret, checked and turned into a `kube::Client`.
//!
//! The content of the Secret never leaves this module: errors name the Secret and key and say what
//! is wrong, never what the file says (a YAML parser's error can quote a token, so it is not passed
//! on).

use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::api::{SecretKeyRef, SovereignCluster};

/// Why a cluster cannot be reached through its configuration. Each variant is a condition reason.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("Secret {namespace}/{name} does not exist")]
    SecretNotFound { namespace: String, name: String },
    #[error("the operator may not read Secret {namespace}/{name} (forbidden)")]
    SecretForbidden { namespace: String, name: String },
    #[error(
        "Secret {namespace}/{name} is in a namespace the operator does not read kubeconfigs from (allowed: {allowed})"
    )]
    NamespaceNotAllowed {
        namespace: String,
        name: String,
        allowed: String,
    },
    #[error("Secret {namespace}/{name} has no key {key:?} (keys: {keys})")]
    KeyMissing {
        namespace: String,
        name: String,
        key: String,
        keys: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} is not a valid kubeconfig: {why}")]
    Malformed {
        namespace: String,
        name: String,
        key: String,
        why: String,
    },
    #[error("key {key:?} of Secret {namespace}/{name} is refused: {why}")]
    Unsafe {
        namespace: String,
        name: String,
        key: String,
        why: String,
    },
    #[error("cannot read Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the in-cluster configuration is not available: {0}")]
    InCluster(String),
    #[error("the SovereignCluster sets neither kubeconfigSecretRef nor inCluster")]
    NoAccess,
    #[error("cannot build a client: {0}")]
    Client(String),
}

impl KubeconfigError {
    /// The condition reason (CamelCase, stable).
    pub fn reason(&self) -> &'static str {
        match self {
            KubeconfigError::SecretNotFound { .. } => "KubeconfigSecretNotFound",
            KubeconfigError::SecretForbidden { .. } => "KubeconfigSecretForbidden",
            KubeconfigError::NamespaceNotAllowed { .. } => "KubeconfigSecretNamespaceNotAllowed",
            KubeconfigError::KeyMissing { .. } => "KubeconfigKeyMissing",
            KubeconfigError::Malformed { .. } => "KubeconfigMalformed",
            KubeconfigError::Unsafe { .. } => "KubeconfigUnsafe",
            KubeconfigError::Api { .. } => "KubeconfigSecretUnreadable",
            KubeconfigError::InCluster(_) => "InClusterConfigUnavailable",
            KubeconfigError::NoAccess => "NoAccessConfigured",
            KubeconfigError::Client(_) => "ClientUnavailable",
        }
    }

    /// Whether a person must change something (true), or a retry may succeed by itself (false).
    pub fn needs_intervention(&self) -> bool {
        !matches!(self, KubeconfigError::Api { .. })
    }
}

/// A client for a cluster, and the version of the configuration it was built from.
pub struct Access {
    pub client: Client,
    /// `in-cluster`, or the Secret's `namespace/name@resourceVersion#key`: changes when the
    /// configuration changes.
    pub source_version: String,
    /// The API server's host name, a residency signal (`….eks.amazonaws.com`, `….k8s.ovh.net`).
    pub server_host: Option<String>,
    /// Which API server this is (`in-cluster`, or the server URL): two SovereignClusters may name
    /// the same cluster.
    pub server: String,
}

/// Builds a client for the cluster a `SovereignCluster` describes.
///
/// `local` is the operator's own client (for reading the Secret, and for `inCluster: true`);
/// `allowed_namespaces` are the namespaces kubeconfig Secrets may live in (empty: any).
pub async fn client_for(
    cluster: &SovereignCluster,
    local: &Client,
    allowed_namespaces: &[String],
) -> Result<Access, KubeconfigError> {
    if cluster.spec.in_cluster == Some(true) {
        return Ok(Access {
            client: local.clone(),
            source_version: "in-cluster".into(),
            server_host: None,
            server: "in-cluster".into(),
        });
    }
    let Some(r) = &cluster.spec.kubeconfig_secret_ref else {
        return Err(KubeconfigError::NoAccess);
    };
    if !allowed_namespaces.is_empty() && !allowed_namespaces.iter().any(|n| n == &r.namespace) {
        return Err(KubeconfigError::NamespaceNotAllowed {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            allowed: allowed_namespaces.join(", "),
        });
    }
    let secret = read_secret(local, r).await?;
    let text = kubeconfig_text(&secret, r)?;
    let config = config_from_text(&text, r).await?;
    let server_host = config.cluster_url.host().map(String::from);
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| KubeconfigError::Client(e.to_string()))?;
    Ok(Access {
        client,
        server_host,
        server,
        source_version: format!(
            "{}/{}@{}#{}",
            r.namespace,
            r.name,
            secret.metadata.resource_version.as_deref().unwrap_or(""),
            r.key
        ),
    })
}

async fn read_secret(client: &Client, r: &SecretKeyRef) -> Result<Secret, KubeconfigError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &r.namespace);
    match api.get_opt(&r.name).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(KubeconfigError::SecretNotFound {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        }),
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            Err(KubeconfigError::SecretForbidden {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            })
        }
        Err(source) => Err(KubeconfigError::Api {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            source,
        }),
    }
}

/// The kubeconfig text under the referenced key (`data`, or `stringData` as some tools leave it).
pub fn kubeconfig_text(secret: &Secret, r: &SecretKeyRef) -> Result<String, KubeconfigError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.clone().into_bytes())
        });
    let Some(bytes) = bytes else {
        let mut keys: Vec<String> = secret.data.iter().flat_map(|d| d.keys().cloned()).collect();
        keys.sort();
        return Err(KubeconfigError::KeyMissing {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            key: r.key.clone(),
            keys: if keys.is_empty() {
                "none".into()
            } else {
                keys.join(", ")
            },
        });
    };
    String::from_utf8(bytes).map_err(|_| malformed(r, "it is not UTF-8 text"))
}

fn malformed(r: &SecretKeyRef, why: &str) -> KubeconfigError {
    KubeconfigError::Malformed {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        key: r.key.clone(),
        why: why.to_string(),
    }
}

fn unsafe_(r: &SecretKeyRef, why: String) -> KubeconfigError {
    KubeconfigError::Unsafe {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        key: r.key.clone(),
        why,
    }
}

/// Parses and checks a kubeconfig, then resolves its current context into a client `Config`.
pub async fn config_from_text(text: &str, r: &SecretKeyRef) -> Result<Config, KubeconfigError> {
    if text.trim().is_empty() {
        return Err(malformed(r, "it is empty"));
    }
    // The parser's own message can quote the file; only its kind is reported.
    let kubeconfig = Kubeconfig::from_yaml(text)
        .map_err(|_| malformed(r, "it does not parse as a kubeconfig YAML document"))?;
    check_safe(&kubeconfig, r)?;
    if kubeconfig.clusters.is_empty() {
        return Err(malformed(r, "it defines no cluster"));
    }
    if kubeconfig.current_context.is_none() && kubeconfig.contexts.len() != 1 {
        return Err(malformed(
            r,
            "it has no current-context and more than one context",
        ));
    }
    let options = KubeConfigOptions {
        context: kubeconfig
            .current_context
            .clone()
            .or_else(|| kubeconfig.contexts.first().map(|c| c.name.clone())),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| malformed(r, &safe_config_error(&e)))?;
    // No request to a remote cluster may hang a reconcile for ever (kube sets no read timeout);
    // longer than a watch lasts (290 s), counted from when each request is written.
    config.read_timeout = Some(REMOTE_READ_TIMEOUT);
    config.reset_reader_on_write = true;
    Ok(config)
}

/// The longest a remote cluster may take to answer one request.
pub const REMOTE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A kubeconfig in a Secret is written by whoever may create Secrets, but read by the operator: it
/// must not make the operator run programs or read its own files.
fn check_safe(k: &Kubeconfig, r: &SecretKeyRef) -> Result<(), KubeconfigError> {
    for user in &k.auth_infos {
        let Some(info) = &user.auth_info else {
            continue;
        };
        if info.exec.is_some() {
            return Err(unsafe_(
                r,
                format!(
                    "user {:?} uses an exec credential plugin, which would run a program inside the operator; use a token or client certificate data",
                    user.name
                ),
            ));
        }
        if info.auth_provider.is_some() {
            return Err(unsafe_(
                r,
                format!(
                    "user {:?} uses an auth-provider plugin; use a token or client certificate data",
                    user.name
                ),
            ));
        }
        for (field, set) in [
            ("tokenFile", info.token_file.is_some()),
            ("client-certificate", info.client_certificate.is_some()),
            ("client-key", info.client_key.is_some()),
        ] {
            if set {
                return Err(unsafe_(
                    r,
                    format!(
                        "user {:?} refers to a file ({field}); inline the data (token, client-certificate-data, client-key-data)",
                        user.name
                    ),
                ));
            }
        }
    }
    for cluster in &k.clusters {
        let Some(c) = &cluster.cluster else { continue };
        if c.certificate_authority.is_some() {
            return Err(unsafe_(
                r,
                format!(
                    "cluster {:?} refers to a file (certificate-authority); use certificate-authority-data",
                    cluster.name
                ),
            ));
        }
        if c.insecure_skip_tls_verify == Some(true) {
            return Err(unsafe_(
                r,
                format!(
                    "cluster {:?} disables TLS verification (insecure-skip-tls-verify)",
                    cluster.name
                ),
            ));
        }
    }
    Ok(())
}

fn safe_config_error(e: &kube::config::KubeconfigError) -> String {
    use kube::config::KubeconfigError as K;
    match e {
        K::CurrentContextNotSet => "no current context".into(),
        K::LoadContext(name) => format!("context {name:?} is not defined"),
        K::LoadClusterOfContext(name) => format!("the cluster of context {name:?} is not defined"),
        K::MissingClusterUrl => "the cluster has no server URL".into(),
        K::ParseClusterUrl(_) => "the cluster's server URL does not parse".into(),
        K::ParseProxyUrl(_) => "the proxy URL does not parse".into(),
        K::LoadCertificateAuthority(_) => "certificate-authority-data cannot be loaded".into(),
        K::LoadClientCertificate(_) => "client-certificate-data cannot be loaded".into(),
        K::LoadClientKey(_) => "client-key-data cannot be loaded".into(),
        K::ParseCertificates(_) => "certificate data is not valid PEM".into(),
        _ => "its content is not usable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn r() -> SecretKeyRef {
        SecretKeyRef {
            namespace: "sovereign-system".into(),
            name: "aws".into(),
            key: "kubeconfig".into(),
        }
    }

    fn secret(key: &str, value: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                key.to_string(),
                k8s_openapi::ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    const GOOD: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:6443\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: s3cr3t-t0ken\n";

    #[tokio::test]
    async fn a_good_kubeconfig_resolves() {
        let cfg = config_from_text(GOOD, &r()).await.expect("config");
        assert_eq!(cfg.cluster_url.to_string(), "http://127.0.0.1:6443/");
    }

    #[test]
    fn a_missing_key_lists_the_keys_present() {
        let e = kubeconfig_text(&secret("config", GOOD), &r()).unwrap_err();
        assert_eq!(e.reason(), "KubeconfigKeyMissing");
        assert!(e.to_string().contains("keys: config"), "{e}");
    }

    #[tokio::test]
    async fn malformed_yaml_is_reported_without_its_content() {
        let bad = "users: [ {name: u, user: {token: hunter2-secret-token}\n";
        let e = config_from_text(bad, &r()).await.unwrap_err();
        assert_eq!(e.reason(), "KubeconfigMalformed");
        assert!(!e.to_string().contains("hunter2"), "secret leaked: {e}");
    }

    #[tokio::test]
    async fn structurally_wrong_kubeconfigs_are_malformed() {
        for (text, needle) in [
            ("", "empty"),
            ("apiVersion: v1\nkind: Config\n", "no cluster"),
            (
                "clusters:\n- name: c\n  cluster: {server: 'http://x:1'}\ncontexts:\n- {name: a, context: {cluster: c, user: u}}\n- {name: b, context: {cluster: c, user: u}}\nusers:\n- {name: u, user: {}}\n",
                "more than one context",
            ),
            (
                "clusters:\n- name: c\n  cluster: {}\ncontexts:\n- {name: a, context: {cluster: c, user: u}}\ncurrent-context: a\nusers:\n- {name: u, user: {}}\n",
                "no server URL",
            ),
        ] {
            let e = config_from_text(text, &r()).await.unwrap_err();
            assert_eq!(e.reason(), "KubeconfigMalformed", "{text}");
            assert!(e.to_string().contains(needle), "{e} should say {needle}");
        }
    }

    #[tokio::test]
    async fn exec_plugins_and_file_references_are_refused() {
        let exec = GOOD.replace("    token: s3cr3t-t0ken\n", "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: ['-c', 'id']\n");
        let e = config_from_text(&exec, &r()).await.unwrap_err();
        assert_eq!(e.reason(), "KubeconfigUnsafe");
        assert!(e.to_string().contains("exec credential plugin"), "{e}");
        let file = GOOD.replace(
            "    token: s3cr3t-t0ken\n",
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
        );
        let e = config_from_text(&file, &r()).await.unwrap_err();
        assert_eq!(e.reason(), "KubeconfigUnsafe");
        let insecure = GOOD.replace(
            "    server: http://127.0.0.1:6443\n",
            "    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\n",
        );
        let e = config_from_text(&insecure, &r()).await.unwrap_err();
        assert_eq!(e.reason(), "KubeconfigUnsafe");
    }
}
