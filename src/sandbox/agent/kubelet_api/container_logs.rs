//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's CRI log rendered as
//! `kubectl logs` shows it (`pods::logs`), with the kubelet's query parameters `follow`,
//! `previous`, `timestamps`, `sinceSeconds`, `sinceTime`, `tailLines` and `limitBytes`. With
//! `follow` the response streams what the instance writes until it stops running.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

use crate::sandbox::agent::pods::logs::{Options, Reader};
use crate::sandbox::agent::pods::{LogTarget, Runtime};

pub type Body = BoxBody<Bytes, Infallible>;

const POLL: Duration = Duration::from_millis(200);

pub fn respond(code: StatusCode, text: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(text.into()).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The query of a logs request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub follow: bool,
    pub previous: bool,
    pub opts: Options,
}

/// Go's `strconv.ParseBool`, which the kubelet's query decoding uses.
fn boolean(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {k}: {v:?}")),
    }
}

fn number(k: &str, v: &str, min: i64) -> Result<i64, String> {
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!(
            "invalid value for {k}: {v:?} (an integer of at least {min})"
        )),
    }
}

pub fn parse_query(query: Option<&str>, now: Timestamp) -> Result<Query, String> {
    let mut q = Query::default();
    let mut since_seconds = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "follow" => q.follow = boolean(&k, &v)?,
            "previous" => q.previous = boolean(&k, &v)?,
            "timestamps" => q.opts.timestamps = boolean(&k, &v)?,
            "tailLines" => {
                q.opts.tail = Some(usize::try_from(number(&k, &v, 0)?).unwrap_or(usize::MAX))
            }
            "limitBytes" => {
                q.opts.limit = Some(usize::try_from(number(&k, &v, 1)?).unwrap_or(usize::MAX))
            }
            "sinceSeconds" => since_seconds = Some(number(&k, &v, 1)?),
            "sinceTime" => {
                let t = v
                    .parse::<Timestamp>()
                    .map_err(|e| format!("invalid value for sinceTime: {v:?}: {e}"))?;
                q.opts.since = Some(t);
            }
            _ => {}
        }
    }
    if q.opts.since.is_none()
        && let Some(s) = since_seconds
    {
        q.opts.since = now.checked_sub(SignedDuration::from_secs(s)).ok();
    }
    Ok(q)
}

/// Serves one logs request.
pub async fn serve(
    pods: &Runtime,
    path: (&str, &str, &str),
    query: Option<&str>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let (namespace, pod, container) = path;
    let q = match parse_query(query, Timestamp::now()) {
        Ok(q) => q,
        Err(message) => return respond(StatusCode::BAD_REQUEST, message),
    };
    let target = match pods.logs(namespace, pod, container, q.previous) {
        Ok(t) => t,
        Err(e) if e.not_found() => return respond(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => return respond(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(file) = target.file.clone() else {
        // A simulated container writes nothing.
        return respond(StatusCode::OK, Bytes::new());
    };
    let content = match tokio::fs::read(&file).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            let message = format!(
                "cannot read the log of container {container} of pod {namespace}/{pod}: {e}"
            );
            return respond(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    let mut reader = Reader::new(q.opts);
    let (first, used) = reader.read_all(&content);
    if !q.follow || q.previous || reader.full() {
        return respond(StatusCode::OK, first);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(follow(Follow {
        target,
        file,
        reader,
        offset: used as u64,
        first,
        tx,
        shutdown,
    }));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

struct Follow {
    target: LogTarget,
    file: std::path::PathBuf,
    reader: Reader,
    /// Where the unread part of the file starts (an unfinished line is read again).
    offset: u64,
    first: Vec<u8>,
    tx: mpsc::Sender<Bytes>,
    shutdown: watch::Receiver<bool>,
}

/// Bytes of the file from `offset` on.
async fn read_from(file: &std::path::Path, offset: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut f) = tokio::fs::File::open(file).await
        && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
    {
        let _ = f.read_to_end(&mut buf).await;
    }
    buf
}

/// Streams what the instance writes until it stops (then what it wrote last), the limit is
/// reached, the client goes away or the agent stops.
async fn follow(mut f: Follow) {
    if !f.first.is_empty()
        && f.tx
            .send(Bytes::from(std::mem::take(&mut f.first)))
            .await
            .is_err()
    {
        return;
    }
    loop {
        let writing = f.target.writing();
        let fresh = read_from(&f.file, f.offset).await;
        let (out, used) = f.reader.feed(&fresh);
        f.offset += used as u64;
        if !out.is_empty() && f.tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        if !writing || f.reader.full() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = f.tx.closed() => return,
            _ = f.shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_as_the_kubelet_reads_them() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let q = parse_query(
            Some("follow=true&timestamps=1&tailLines=5&limitBytes=100&sinceSeconds=30"),
            now,
        )
        .expect("query");
        assert!(q.follow && !q.previous && q.opts.timestamps);
        assert_eq!((q.opts.tail, q.opts.limit), (Some(5), Some(100)));
        assert_eq!(
            q.opts.since.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:00:30Z")
        );
        let q = parse_query(
            Some("previous=True&sinceTime=2026-01-01T00%3A00%3A10Z"),
            now,
        )
        .expect("query");
        assert!(q.previous);
        assert_eq!(
            q.opts.since.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T00:00:10Z")
        );
        assert_eq!(parse_query(None, now), Ok(Query::default()));
        assert!(parse_query(Some("tailLines=-1"), now).is_err());
        assert!(parse_query(Some("follow=yes"), now).is_err());
    }
}
