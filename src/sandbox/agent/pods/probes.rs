//! Readiness of a running process: its readinessProbe's tcpSocket must accept a connection, its
//! httpGet must answer 200–399, on the pod's address (named ports resolved from the container's
//! ports); no probe (or an exec/grpc probe, which the sandbox cannot run in a container) means
//! ready once running. Probed at every pass of the pod's worker, after initialDelaySeconds.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A probe's port as a number (a name is looked up in the container's ports).
pub fn port(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// Seconds after the start before the first probe.
pub fn initial_delay(container: &Container) -> u64 {
    container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.initial_delay_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0)
}

fn timeout(p: &Probe) -> Duration {
    let secs = p
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(1);
    Duration::from_secs(secs.max(1))
}

fn addr(host: Option<&str>, pod_ip: &str, port: u16) -> Option<SocketAddr> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    format!("{host}:{port}").parse().ok()
}

/// The status code of a plain HTTP GET.
async fn http_status(addr: SocketAddr, path: &str, wait: Duration) -> Option<u16> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(wait, exchange).await.ok().flatten()
}

/// Whether the container is ready now.
pub async fn ready(container: &Container, pod_ip: &str) -> bool {
    let Some(p) = &container.readiness_probe else {
        return true;
    };
    let wait = timeout(p);
    if let Some(tcp) = &p.tcp_socket {
        let Some(a) = port(container, &tcp.port).and_then(|n| addr(tcp.host.as_deref(), pod_ip, n))
        else {
            return false;
        };
        return matches!(
            tokio::time::timeout(wait, TcpStream::connect(a)).await,
            Ok(Ok(_))
        );
    }
    if let Some(http) = &p.http_get {
        let Some(a) =
            port(container, &http.port).and_then(|n| addr(http.host.as_deref(), pod_ip, n))
        else {
            return false;
        };
        if http.scheme.as_deref() == Some("HTTPS") {
            // The kubelet does not verify the certificate either: accepting the connection is
            // what the sandbox checks.
            return matches!(
                tokio::time::timeout(wait, TcpStream::connect(a)).await,
                Ok(Ok(_))
            );
        }
        let path = http
            .path
            .as_deref()
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/");
        return http_status(a, path, wait)
            .await
            .is_some_and(|c| (200..400).contains(&c));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(probe: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "ports": [{"name": "web", "containerPort": 8080}], "readinessProbe": probe}))
            .expect("container")
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c = container(json!({"tcpSocket": {"port": "web"}}));
        assert_eq!(port(&c, &IntOrString::String("web".into())), Some(8080));
        assert_eq!(port(&c, &IntOrString::String("nope".into())), None);
        assert_eq!(port(&c, &IntOrString::Int(9)), Some(9));
    }

    #[tokio::test]
    async fn probes_connect_and_read_the_status() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port_no = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                let code = if buf.starts_with(b"GET /ok ") {
                    "204 No Content"
                } else {
                    "503 Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let tcp = container(json!({"tcpSocket": {"port": port_no}}));
        assert!(ready(&tcp, "127.0.0.1").await);
        let ok = container(json!({"httpGet": {"port": port_no, "path": "/ok"}}));
        assert!(ready(&ok, "127.0.0.1").await);
        let bad = container(json!({"httpGet": {"port": port_no, "path": "/bad"}}));
        assert!(!ready(&bad, "127.0.0.1").await);
        let closed = container(json!({"tcpSocket": {"port": 1}}));
        assert!(!ready(&closed, "127.0.0.1").await);
        assert!(
            ready(
                &container(json!({"exec": {"command": ["true"]}})),
                "127.0.0.1"
            )
            .await
        );
    }
}
