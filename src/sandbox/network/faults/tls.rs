//! The fault proxy's two TLS ends. Towards clients: a serving certificate the cluster CA issues
//! for the proxy's address (clients keep the cluster's CA as their only trust anchor), client
//! certificates verified against the cluster CA and optional (token clients send none). Towards
//! the API server: the cluster CA as trust anchor and the front-proxy client certificate, the
//! identity the API server accepts `X-Remote-*` headers from.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::FaultProxyError;
use crate::sandbox::controlplane::pki::{Ca, Pki, Usage, sans};

const ALPN_HTTP1: &[u8] = b"http/1.1";
/// The leaf the control plane issued for the API server's own proxying (`--proxy-client-*`).
const FRONT_PROXY_STEM: &str = "front-proxy-client";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls(what: &'static str) -> impl FnOnce(rustls::Error) -> FaultProxyError {
    move |source| FaultProxyError::Tls { what, source }
}

fn pem(what: &'static str) -> impl FnOnce(rustls::pki_types::pem::Error) -> FaultProxyError {
    move |e| FaultProxyError::Pem {
        what,
        message: e.to_string(),
    }
}

fn chain_and_key(
    what: &'static str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FaultProxyError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(what))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem(what))?;
    Ok((chain, key))
}

fn cluster_roots(pki: &Pki) -> Result<Arc<RootCertStore>, FaultProxyError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_pem(Ca::Cluster).as_bytes()) {
        roots
            .add(cert.map_err(pem("the cluster CA"))?)
            .map_err(tls("the cluster CA"))?;
    }
    Ok(Arc::new(roots))
}

/// What clients of the proxy at `ip` talk to.
pub fn server_config(pki: &Pki, ip: Ipv4Addr) -> Result<Arc<ServerConfig>, FaultProxyError> {
    let names = sans(&["localhost"], &[IpAddr::V4(ip)]);
    let (cert_pem, key_pem) = pki.issue(
        Ca::Cluster,
        "sandbox-fault-proxy",
        &[],
        &names,
        Usage::Server,
    )?;
    let (chain, key) = chain_and_key("the proxy's serving certificate", &cert_pem, &key_pem)?;
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(cluster_roots(pki)?, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| FaultProxyError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls("server protocol versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls("the proxy's serving certificate"))?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// How the proxy talks to the API server.
pub fn upstream_config(pki: &Pki) -> Result<Arc<ClientConfig>, FaultProxyError> {
    let leaf = pki.leaf(
        Ca::FrontProxy,
        FRONT_PROXY_STEM,
        FRONT_PROXY_STEM,
        &[],
        &[],
        Usage::Client,
    )?;
    let (chain, key) = chain_and_key(
        "the front-proxy client certificate",
        &leaf.cert_pem,
        &leaf.key_pem,
    )?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls("client protocol versions"))?
        .with_root_certificates(cluster_roots(pki)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls("the front-proxy client certificate"))?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}
