//! Faults between one client and a cluster's real API server, so that a reliability test's
//! faults never reach its neighbours (or the cluster's own components): a TLS proxy on the
//! cluster's control-plane address, an authenticating proxy as the aggregator is. Clients keep
//! the cluster CA (the proxy's serving certificate is the cluster CA's) and their own identity:
//! the proxy verifies a client certificate against the cluster CA and forwards each request
//! with the front-proxy client certificate, the user and groups in `X-Remote-User` /
//! `X-Remote-Group` (request-header authentication, `--requestheader-*` on the API server). A
//! client without a certificate has its bearer token forwarded as is: with no `X-Remote-User`
//! the request-header authenticator passes and the API server authenticates the token itself.
//!
//! The knobs (`Faults`, shared as `Arc<Faults>`): a share of requests failing with the API
//! server's own `Status` answers, added latency, open watches ended (or expired with a 410),
//! and the whole cluster unreachable; plus request counts per verb.

mod forward;
mod identity;
mod knobs;
mod request;
mod status;
mod tls;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use identity::Identity;
pub use knobs::Faults;
pub use request::RequestInfo;

use forward::{Session, Upstream};

use crate::sandbox::cluster::Cluster;
use crate::sandbox::controlplane::kubeconfig::{self, Entry};
use crate::sandbox::controlplane::pki::{Pki, PkiError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FaultProxyError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("fault proxy TLS: {what}: {source}")]
    Tls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("fault proxy TLS: {what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("fault proxy TLS: the client certificate verifier: {0}")]
    Verifier(String),
    #[error("the fault proxy cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a client through the fault proxy: {0}")]
    Client(String),
}

/// What a fault proxy stands in front of.
pub struct Backend {
    /// Where the proxy listens (port 0: any).
    pub listen: SocketAddr,
    /// The API server.
    pub api: SocketAddr,
    pub pki: Arc<Pki>,
    /// The admin's kubeconfig entry (what `entry` hands out, pointed at the proxy).
    pub admin: Entry,
}

/// A running fault proxy; dropping it closes its listener and every connection through it.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Faults>,
    admin: Entry,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    acceptor: TlsAcceptor,
    upstream: Arc<Upstream>,
    faults: Arc<Faults>,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl FaultProxy {
    /// A proxy in front of `cluster`'s API server, on the cluster's control-plane address.
    /// Must be called within a Tokio runtime.
    pub fn start(cluster: &Cluster) -> Result<FaultProxy, FaultProxyError> {
        let cp = cluster.control_plane();
        FaultProxy::start_for(Backend {
            listen: SocketAddr::from((cluster.host().net.control_plane(), 0)),
            api: cp.api(),
            pki: cp.pki().clone(),
            admin: cluster.kubeconfig_entry("admin"),
        })
    }

    pub fn start_for(backend: Backend) -> Result<FaultProxy, FaultProxyError> {
        let IpAddr::V4(ip) = backend.listen.ip() else {
            return Err(FaultProxyError::Listen {
                addr: backend.listen,
                source: std::io::Error::other("the sandbox's addresses are IPv4"),
            });
        };
        let listen_err = |addr| move |source| FaultProxyError::Listen { addr, source };
        let listener = bind(backend.listen).map_err(listen_err(backend.listen))?;
        let addr = listener.local_addr().map_err(listen_err(backend.listen))?;
        let upstream = Upstream {
            addr: backend.api,
            tls: TlsConnector::from(tls::upstream_config(&backend.pki)?),
            name: ServerName::IpAddress(backend.api.ip().into()),
        };
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared {
            acceptor: TlsAcceptor::from(tls::server_config(&backend.pki, ip)?),
            upstream: Arc::new(upstream),
            faults: faults.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, addr, shared));
        Ok(FaultProxy {
            addr,
            faults,
            admin: backend.admin,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The knobs.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// The cluster admin's kubeconfig entry, reaching the cluster through this proxy.
    pub fn entry(&self, context: &str) -> Entry {
        self.admin.clone().named(context).via(&self.url())
    }

    /// A client with the admin identity, through this proxy.
    pub async fn client(&self) -> Result<kube::Client, FaultProxyError> {
        kubeconfig::client(&[self.entry("fault-proxy")], "fault-proxy")
            .await
            .map_err(FaultProxyError::Client)
    }
}

/// Accepts clients until the proxy is dropped. While the cluster is unreachable the listener is
/// closed (connections are refused) and every open connection is cut; it is bound again, on the
/// same port, once reachable.
async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut unreachable = shared.faults.unreachable_changes();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let mut bind_failures = 0u32;
    loop {
        if *unreachable.borrow_and_update() {
            listener = None;
            connections.abort_all();
            if unreachable.wait_for(|u| !*u).await.is_err() {
                return;
            }
            continue;
        }
        let Some(l) = listener.as_ref() else {
            match bind(addr) {
                Ok(l) => {
                    listener = Some(l);
                    bind_failures = 0;
                }
                Err(e) => {
                    if bind_failures == 0 {
                        tracing::warn!(%addr, error = %e, "the fault proxy cannot listen again (retrying)");
                    }
                    bind_failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve(tcp, shared.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "fault proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = unreachable.changed() => {}
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(tcp: TcpStream, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "fault proxy TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(identity::from_certificate);
    let session = Arc::new(Session::new(
        shared.upstream.clone(),
        shared.faults.clone(),
        identity,
    ));
    let service = service_fn(move |req| forward::handle(session.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "fault proxy connection ended");
    }
}
