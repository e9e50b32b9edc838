//! One client connection through the fault proxy. Each request is counted, delayed, perhaps
//! failed, then sent on to the API server with the client's identity in request headers and
//! the response streamed back as it comes (watches, logs and chunked lists are never buffered).
//! Requests go over one kept upstream connection, in order, as they arrive on the client's;
//! watches and upgrades (exec, attach, port-forward) get a connection of their own, so ending
//! one never disturbs the others.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;

use super::identity::Identity;
use super::knobs::Faults;
use super::request::RequestInfo;
use super::{status, watch as watch_body};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const REMOTE_USER: &str = "x-remote-user";
const REMOTE_GROUP: &str = "x-remote-group";
/// Every request-header identity header (user, groups, extras) starts so; a client's own are
/// never passed on, or any client could claim any identity.
const REMOTE_PREFIX: &str = "x-remote-";
/// Per-hop headers (RFC 9110 §7.6.1), not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The API server, as the proxy reaches it.
pub struct Upstream {
    pub addr: std::net::SocketAddr,
    pub tls: TlsConnector,
    pub name: ServerName<'static>,
}

impl Upstream {
    async fn connect(
        &self,
        upgrades: bool,
    ) -> Result<(SendRequest<Incoming>, AbortHandle), BoxError> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.name.clone(), tcp).await?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tls))
            .await?;
        let task = if upgrades {
            tokio::spawn(async move {
                let _ = conn.with_upgrades().await;
            })
        } else {
            tokio::spawn(async move {
                let _ = conn.await;
            })
        };
        Ok((sender, task.abort_handle()))
    }
}

/// One client connection: who the client is, and its upstream connections (closed with it).
pub struct Session {
    upstream: Arc<Upstream>,
    faults: Arc<Faults>,
    identity: Option<Identity>,
    kept: Mutex<Option<SendRequest<Incoming>>>,
    drivers: Mutex<Vec<AbortHandle>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for d in self
            .drivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            d.abort();
        }
    }
}

impl Session {
    pub fn new(
        upstream: Arc<Upstream>,
        faults: Arc<Faults>,
        identity: Option<Identity>,
    ) -> Session {
        Session {
            upstream,
            faults,
            identity,
            kept: Mutex::new(None),
            drivers: Mutex::new(Vec::new()),
        }
    }

    fn track(&self, driver: AbortHandle) {
        let mut drivers = self.drivers.lock().unwrap_or_else(|e| e.into_inner());
        drivers.retain(|d| !d.is_finished());
        drivers.push(driver);
    }

    async fn fresh(&self, upgrades: bool) -> Result<SendRequest<Incoming>, BoxError> {
        let (sender, driver) = self.upstream.connect(upgrades).await?;
        self.track(driver);
        Ok(sender)
    }

    /// Sends on a connection of its own (`own`), else on the kept one (once it is free; a new
    /// one when it has closed).
    async fn send(
        &self,
        req: Request<Incoming>,
        own: bool,
        upgrades: bool,
    ) -> Result<Response<Incoming>, BoxError> {
        if own {
            return Ok(self.fresh(upgrades).await?.send_request(req).await?);
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut sender = match kept {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.fresh(false).await?,
            },
            None => self.fresh(false).await?,
        };
        let response = sender.send_request(req).await;
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        Ok(response?)
    }
}

fn full(body: Vec<u8>) -> ProxyBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: u16, body: &Value, retry_after: Option<u32>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.to_string().into_bytes()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Drops per-hop headers (and those the `Connection` header names); an upgrade keeps the two it
/// needs.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::try_from(t.trim()).ok())
        .collect();
    for n in named {
        if !(upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    for h in HOP_BY_HOP {
        if !(upgrade && (h == "connection" || h == "upgrade")) {
            headers.remove(h);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
}

/// The request as the API server gets it: the client's identity from its certificate in
/// `X-Remote-User`/`X-Remote-Group` (the certificate wins over a token, as in the API server's
/// own authenticator chain), a bearer token as it came.
pub fn rewrite_headers(headers: &mut HeaderMap, identity: Option<&Identity>, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    let claimed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(REMOTE_PREFIX))
        .cloned()
        .collect();
    for k in claimed {
        headers.remove(k);
    }
    let Some(id) = identity else { return };
    headers.remove(header::AUTHORIZATION);
    if let Ok(user) = HeaderValue::from_str(&id.user) {
        headers.insert(REMOTE_USER, user);
    }
    for g in &id.groups {
        if let Ok(g) = HeaderValue::from_str(g) {
            headers.append(REMOTE_GROUP, g);
        }
    }
}

/// Serves one request of the session.
pub async fn handle(
    session: Arc<Session>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let faults = &session.faults;
    if faults.is_unreachable() {
        // An error closes the connection without an answer.
        return Err("the cluster is unreachable (injected fault)".into());
    }
    let info = RequestInfo::parse(req.method().as_str(), req.uri().path(), req.uri().query());
    faults.record(&info);
    let (drops, expiries) = (faults.watch_drops(), faults.watch_expiries());
    let latency = faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = faults.injected_error(&info) {
        let f = status::failure(code, &info);
        return Ok(json_response(f.code, &f.body, f.retry_after));
    }
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    rewrite_headers(req.headers_mut(), session.identity.as_ref(), upgrade);
    if let Ok(host) = HeaderValue::from_str(&session.upstream.addr.to_string()) {
        req.headers_mut().insert(header::HOST, host);
    }
    let mut resp = match session.send(req, info.is_watch() || upgrade, upgrade).await {
        Ok(r) => r,
        Err(e) => {
            return Ok(json_response(
                503,
                &status::unavailable(&e.to_string()),
                None,
            ));
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let server = hyper::upgrade::on(&mut resp);
            tokio::spawn(splice(client, server, faults.unreachable_changes()));
        }
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(
            parts,
            Empty::new().map_err(|never| match never {}).boxed_unsync(),
        ));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body = if info.is_watch() && parts.status == StatusCode::OK {
        watch_body::body(body, json, drops, expiries)
    } else {
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
    };
    Ok(Response::from_parts(parts, body))
}

/// Joins an upgraded client connection to the upgraded API server connection, until either
/// ends or the cluster is made unreachable.
async fn splice(client: OnUpgrade, server: OnUpgrade, mut unreachable: watch::Receiver<bool>) {
    let (Ok(client), Ok(server)) = tokio::join!(client, server) else {
        return;
    };
    let (mut client, mut server) = (TokioIo::new(client), TokioIo::new(server));
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = unreachable.wait_for(|u| *u) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_replace_claimed_ones_and_tokens_pass_only_without_a_certificate() {
        let mut h = HeaderMap::new();
        h.insert("x-remote-user", HeaderValue::from_static("system:admin"));
        h.insert("x-remote-extra-scopes", HeaderValue::from_static("all"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let mut token = h.clone();
        rewrite_headers(&mut token, None, false);
        assert_eq!(
            token.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..])
        );
        assert!(
            token.keys().all(|k| !k.as_str().starts_with("x-remote-")),
            "{token:?}"
        );
        assert!(!token.contains_key("x-trace") && !token.contains_key(header::CONNECTION));
        assert!(token.contains_key(header::ACCEPT));
        let id = Identity {
            user: "jane".into(),
            groups: vec!["dev".into(), "ops".into()],
        };
        rewrite_headers(&mut h, Some(&id), false);
        assert!(!h.contains_key(header::AUTHORIZATION));
        assert_eq!(
            h.get("x-remote-user").map(|v| v.as_bytes()),
            Some(&b"jane"[..])
        );
        let groups: Vec<&[u8]> = h
            .get_all("x-remote-group")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(groups, [&b"dev"[..], &b"ops"[..]]);
        assert!(!h.contains_key("x-remote-extra-scopes"));
    }

    #[test]
    fn upgrades_keep_their_two_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        rewrite_headers(&mut h, None, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert!(is_upgrade(&h));
    }
}
