//! The kubelet API of every node, where the API server reaches it for `kubectl logs`: HTTPS on
//! the node's own address at port 10250, with a serving certificate of the cluster CA for the
//! node's name and address (the API server verifies it: `--kubelet-certificate-authority`).
//! Clients must present a certificate of the cluster CA (the API server connects as
//! `kube-apiserver-kubelet-client`), and each request is authorized with a SubjectAccessReview
//! as the kubelet's webhook authorization does (`authz`). It serves `/containerLogs` and
//! `/healthz`; exec, attach, port-forward and run answer that the sandbox does not support them.

mod authz;
mod container_logs;
mod identity;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::Host;
use super::nodes::{self, KUBELET_PORT};
use super::pods::Runtime;
use crate::sandbox::controlplane::pki::{Ca, Usage, sans};
use authz::{Attributes, Authorizer};
use container_logs::{Body, respond};
use identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum KubeletApiError {
    #[error(
        "cluster {cluster}: node {node}: cannot issue the kubelet's serving certificate: {message}"
    )]
    Certificate {
        cluster: String,
        node: String,
        message: String,
    },
    #[error("cluster {cluster}: node {node}: TLS configuration: {source}")]
    Tls {
        cluster: String,
        node: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cluster {cluster}: node {node}: cannot listen on {addr}: {source}")]
    Listen {
        cluster: String,
        node: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// One node's listener and what its requests need.
struct Node {
    name: String,
    host: Arc<Host>,
    pods: Arc<Runtime>,
    authz: Arc<Authorizer>,
}

/// Serves every node's kubelet API until shutdown.
pub async fn serve(host: Arc<Host>, pods: Arc<Runtime>, shutdown: watch::Receiver<bool>) {
    let authz = Arc::new(Authorizer::default());
    let mut servers = JoinSet::new();
    for spec in &host.profile.nodes {
        let node = Arc::new(Node {
            name: spec.name.clone(),
            host: host.clone(),
            pods: pods.clone(),
            authz: authz.clone(),
        });
        match bind(&node).await {
            Ok((listener, acceptor)) => {
                servers.spawn(accept(node, listener, acceptor, shutdown.clone()));
            }
            Err(e) => tracing::error!(error = %e, "the node's kubelet API is not served"),
        }
    }
    while servers.join_next().await.is_some() {}
}

fn tls_config(host: &Host, node: &str, ip: IpAddr) -> Result<ServerConfig, KubeletApiError> {
    let cert_err = |message: String| KubeletApiError::Certificate {
        cluster: host.cluster.clone(),
        node: node.to_string(),
        message,
    };
    let tls_err = |source| KubeletApiError::Tls {
        cluster: host.cluster.clone(),
        node: node.to_string(),
        source,
    };
    let (cert_pem, key_pem) = host
        .pki
        .issue(Ca::Cluster, node, &[], &sans(&[node], &[ip]), Usage::Server)
        .map_err(|e| cert_err(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| cert_err(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(host.pki.ca_pem(Ca::Cluster).as_bytes()) {
        let ca = ca.map_err(|e| cert_err(e.to_string()))?;
        roots.add(ca).map_err(tls_err)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| cert_err(format!("client verifier: {e}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn bind(node: &Node) -> Result<(TcpListener, TlsAcceptor), KubeletApiError> {
    let host = &node.host;
    let ip = nodes::node_ip(host, &node.name)
        .map(IpAddr::V4)
        .ok_or_else(|| KubeletApiError::Certificate {
            cluster: host.cluster.clone(),
            node: node.name.clone(),
            message: "the node is not in the profile".into(),
        })?;
    let config = tls_config(host, &node.name, ip)?;
    let addr = SocketAddr::new(ip, KUBELET_PORT);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| KubeletApiError::Listen {
            cluster: host.cluster.clone(),
            node: node.name.clone(),
            addr,
            source,
        })?;
    Ok((listener, TlsAcceptor::from(Arc::new(config))))
}

async fn accept(
    node: Arc<Node>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (node, acceptor, shutdown) = (node.clone(), acceptor.clone(), shutdown.clone());
        connections.spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(node = %node.name, %peer, error = %e, "TLS handshake refused");
                    return;
                }
            };
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| identity::of_certificate(c));
            let service = service_fn(move |req| {
                let (node, id, shutdown) = (node.clone(), id.clone(), shutdown.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(&node, id.as_ref(), req, shutdown).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
    connections.abort_all();
}

/// Authorizes, then routes one request.
async fn handle(
    node: &Node,
    id: Option<&Identity>,
    req: Request<Incoming>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(id) = id else {
        return respond(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let attrs = Attributes::of(req.method(), &path, &node.name);
    match node.authz.allowed(&node.host.client, id, &attrs).await {
        Ok(true) => {}
        Ok(false) => return respond(StatusCode::FORBIDDEN, attrs.forbidden(id)),
        Err(e) => {
            tracing::warn!(cluster = %node.host.cluster, node = %node.name, error = %e, "cannot review a kubelet API request");
            let message = format!(
                "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                id.user, attrs.verb, attrs.subresource
            );
            return respond(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    }
    route(node, req.method(), &path, req.uri().query(), shutdown).await
}

async fn route(
    node: &Node,
    method: &Method,
    path: &str,
    query: Option<&str>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] => respond(StatusCode::OK, "ok"),
        ["containerLogs", ns, pod, container] if *method == Method::GET => {
            container_logs::serve(&node.pods, (ns, pod, container), query, shutdown).await
        }
        [what @ ("exec" | "attach" | "portForward" | "run"), ..] => {
            let message = format!(
                "{what} is not supported by the sandbox's node agent (node {} of cluster {}): its containers are processes on the host; only logs are served",
                node.name, node.host.cluster
            );
            respond(StatusCode::NOT_IMPLEMENTED, message)
        }
        _ => respond(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}
