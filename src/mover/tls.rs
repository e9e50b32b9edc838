//! Mutual TLS for the mover: TLS 1.3 only, the migration's CA as the only trust anchor, and each
//! peer checked for its role name. There is deliberately no plaintext mode.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use super::certs::{Role, TlsMaterial};
use super::error::{MoverError, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str) -> impl FnOnce(rustls::Error) -> MoverError + '_ {
    move |e| MoverError::Tls(format!("{what}: {e}"))
}

fn parse(
    material: &TlsMaterial,
) -> Result<(
    RootCertStore,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
)> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(material.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| MoverError::Certs(format!("CA certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| MoverError::Certs(format!("CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(MoverError::Certs("no CA certificate found".into()));
    }
    let chain = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| MoverError::Certs(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(MoverError::Certs("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| MoverError::Certs(format!("private key: {e}")))?;
    Ok((roots, chain, key))
}

fn role_name(role: Role) -> Result<ServerName<'static>> {
    ServerName::try_from(role.name())
        .map_err(|e| MoverError::Tls(format!("role name {}: {e}", role.name())))
}

/// The receiver's config: client certificates are mandatory, must chain to the migration's CA and
/// must carry the sender's role name.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>> {
    let (roots, chain, key) = parse(material)?;
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| MoverError::Tls(format!("client verifier: {e}")))?;
    let verifier = Arc::new(RoleClientVerifier {
        inner,
        name: role_name(Role::Sender)?,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("server protocol versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err("receiver certificate"))?;
    Ok(Arc::new(config))
}

/// The sender's config: the receiver must chain to the migration's CA; its name is checked by
/// the connector against the server name it is given (the receiver role name by default).
pub fn client_config(material: &TlsMaterial) -> Result<Arc<ClientConfig>> {
    let (roots, chain, key) = parse(material)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("client protocol versions"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(tls_err("sender certificate"))?;
    Ok(Arc::new(config))
}

/// Wraps the WebPKI client verifier with a check of the role name: a receiver certificate from
/// the same CA (or any other leaf) must not be able to act as a sender.
#[derive(Debug)]
struct RoleClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for RoleClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("unparsable client certificate: {e}")))?;
        cert.verify_is_valid_for_subject_name(&self.name)
            .map_err(|_| {
                rustls::Error::General(format!(
                    "client certificate is not for the role {}",
                    self.name.to_str()
                ))
            })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .map_err(|e| MoverError::Tls(format!("invalid server name {name:?}: {e}")))
}
