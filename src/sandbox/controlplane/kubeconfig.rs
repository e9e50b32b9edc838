//! Kubeconfigs: the users' (inline certificates, one context per cluster), the components'
//! (files on disk, as kubeadm writes them), and pods' processes (a token file the node agent
//! keeps fresh).

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Value, json};

use super::pki::Leaf;

/// How a kubeconfig user authenticates.
#[derive(Clone)]
pub enum Auth {
    Certificate {
        cert_pem: String,
        key_pem: String,
    },
    TokenFile(PathBuf),
    /// A bearer token inline (a ServiceAccount's long-lived token, as a platform team hands it
    /// over in a kubeconfig Secret).
    Token(String),
}

/// One cluster, user and context, all named `name`.
#[derive(Clone)]
pub struct Entry {
    pub name: String,
    pub server: String,
    pub ca_pem: String,
    pub auth: Auth,
    pub namespace: Option<String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

impl Entry {
    pub fn certificate(
        name: &str,
        server: &str,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Entry {
        Entry {
            name: name.to_string(),
            server: server.to_string(),
            ca_pem: ca_pem.to_string(),
            auth: Auth::Certificate {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            namespace: None,
        }
    }

    /// The same cluster and user under another name.
    pub fn named(mut self, name: &str) -> Entry {
        self.name = name.to_string();
        self
    }

    /// The same cluster, authenticated with a bearer token instead.
    pub fn with_token(mut self, token: String) -> Entry {
        self.auth = Auth::Token(token);
        self
    }

    /// The same user, reaching the cluster through another address (a proxy in front of it,
    /// whose serving certificate the same CA signed).
    pub fn via(mut self, server: &str) -> Entry {
        self.server = server.to_string();
        self
    }

    fn user(&self) -> Value {
        match &self.auth {
            Auth::Certificate { cert_pem, key_pem } => json!({
                "client-certificate-data": b64(cert_pem),
                "client-key-data": b64(key_pem),
            }),
            Auth::TokenFile(p) => json!({"tokenFile": p.display().to_string()}),
            Auth::Token(t) => json!({"token": t}),
        }
    }
}

/// A kubeconfig document holding `entries`, with `current` as its current context.
pub fn render(entries: &[Entry], current: &str) -> String {
    let clusters: Vec<Value> = entries
        .iter()
        .map(|e| json!({"name": e.name, "cluster": {"server": e.server, "certificate-authority-data": b64(&e.ca_pem)}}))
        .collect();
    let users: Vec<Value> = entries
        .iter()
        .map(|e| json!({"name": e.name, "user": e.user()}))
        .collect();
    let contexts: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut c = json!({"cluster": e.name, "user": e.name});
            if let Some(ns) = &e.namespace {
                c["namespace"] = json!(ns);
            }
            json!({"name": e.name, "context": c})
        })
        .collect();
    let doc = json!({
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": clusters, "users": users, "contexts": contexts,
        "current-context": current,
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// A `kube::Client` for the context `current` of `entries`.
pub async fn client(entries: &[Entry], current: &str) -> Result<kube::Client, String> {
    let yaml = render(entries, current);
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).map_err(|e| e.to_string())?;
    let options = kube::config::KubeConfigOptions {
        context: Some(current.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// A kubeconfig naming its certificate files, for the Go components.
pub fn write_files(path: &Path, server: &str, ca_file: &Path, leaf: &Leaf) -> std::io::Result<()> {
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": ca_file.display().to_string()}}],
        "users": [{"name": "local", "user": {"client-certificate": leaf.cert_file.display().to_string(),
                                              "client-key": leaf.key_file.display().to_string()}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
        "current-context": "local",
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_yaml::to_string(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_kubeconfig_parses_with_every_context() {
        let a = Entry::certificate("source", "https://127.16.0.1:6443", "CA", "CERT", "KEY");
        let mut b = a.clone().named("target");
        b.auth = Auth::TokenFile(PathBuf::from("/run/token"));
        let text = render(&[a, b], "target");
        let kc = kube::config::Kubeconfig::from_yaml(&text).expect("parses");
        assert_eq!(kc.current_context.as_deref(), Some("target"));
        assert_eq!(kc.contexts.len(), 2);
        assert!(text.contains("tokenFile: /run/token"), "{text}");
        assert!(text.contains("client-certificate-data"), "{text}");
    }
}
