//! `GET pods/{name}/log` for containers the kubelet runs as processes: their log file, its last
//! `tailLines` lines, and with `follow=true` a stream of what the process writes until the
//! container stops running.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use super::api::Cluster;
use super::errors::ApiError;
use super::http::{Body, respond};

/// The last `n` lines of `text`.
pub fn tail(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    if n == 0 { &text[text.len()..] } else { text }
}

/// Whether the container still runs (or is about to): following stops when it does not.
fn still_running(c: &Cluster, key: &(String, String, String)) -> bool {
    let Some(pod) = c.store.get("pods", &key.0, &key.1) else {
        return false;
    };
    let state = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(key.2.as_str()))
        })
        .and_then(|s| s.get("state"));
    match state {
        Some(s) if s.get("terminated").is_some() => false,
        Some(s) => s.pointer("/waiting/reason").and_then(Value::as_str) != Some("CrashLoopBackOff"),
        None => true,
    }
}

pub async fn serve(
    cluster: &Arc<Cluster>,
    key: &(String, String, String),
    path: PathBuf,
    follow: bool,
    tail_lines: Option<usize>,
) -> Result<Response<Body>, ApiError> {
    let content = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "cannot read the container's log: {e}"
            )));
        }
    };
    let first = match tail_lines {
        Some(n) => tail(&content, n).to_vec(),
        None => content.clone(),
    };
    if !follow {
        return Ok(respond(200, "text/plain", first));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let weak: Weak<Cluster> = Arc::downgrade(cluster);
    let key = key.clone();
    let mut offset = content.len() as u64;
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        loop {
            let running = weak.upgrade().is_some_and(|c| still_running(&c, &key));
            // Read what was written since, then stop once the container stopped.
            if let Ok(mut f) = tokio::fs::File::open(&path).await
                && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
            {
                let mut buf = Vec::new();
                if f.read_to_end(&mut buf).await.is_ok() && !buf.is_empty() {
                    offset += buf.len() as u64;
                    if tx.send(Bytes::from(buf)).await.is_err() {
                        return;
                    }
                }
            }
            if !running {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 1), b"c");
        assert_eq!(tail(b"a\n", 5), b"a\n");
        assert_eq!(tail(b"a\nb\n", 0), b"");
    }
}
