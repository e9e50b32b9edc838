//! The operator's HTTP endpoint: `/metrics` is valid Prometheus text (checked by the real
//! `promtool`), `/healthz` answers, `/readyz` follows readiness.

use std::sync::Arc;

use sovereign::telemetry::Metrics;
use sovereign::telemetry::metrics::{ClusterLabels, ControllerName};
use sovereign::telemetry::server::{self, Health};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8(buf).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, head.to_string(), body.to_string())
}

fn dechunk(body: &str) -> String {
    // axum answers without chunking for a fixed body, but be tolerant of either framing.
    if !body.contains("\r\n") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((len, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let metrics = Arc::new(Metrics::new());
    drop(metrics.reconcile_started(ControllerName::SovereignWorkload));
    metrics.reconcile_failed(ControllerName::SovereignCluster, "Unreachable");
    metrics
        .cluster_reachable
        .get_or_create(&ClusterLabels {
            cluster: "ovh-bhs5".into(),
        })
        .set(1);
    let health = Health::new(metrics.clone());
    let listener = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, health.clone(), async {
        let _ = rx.await;
    }));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await.0,
        503,
        "not ready before the controllers run"
    );
    health.set_ready(true);
    assert_eq!(get(addr, "/readyz").await.0, 200);

    let (code, head, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let body = dechunk(&body);
    assert!(
        body.contains("sovereign_reconciles_total{controller=\"sovereignworkload\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("sovereign_cluster_reachable{cluster=\"ovh-bhs5\"} 1"),
        "{body}"
    );

    // The real promtool must accept the exposition (lint included). The sample is kept for
    // `.ci/run`, which installs promtool and checks it again, so a machine without promtool still
    // gets the check in CI.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics.prom");
    std::fs::write(&path, &body).expect("write metrics sample");
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("open"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool rejected /metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "promtool not run here ({e}); .ci/run checks {}",
            path.display()
        ),
    }

    let _ = tx.send(());
    task.await.expect("join").expect("server stopped cleanly");
}
