//! The answers an injected fault gives: `Status` objects as the API server writes them for the
//! same failure (k8s.io/apimachinery's `NewInternalError`, `NewTooManyRequests`, `NewConflict`,
//! `NewServiceUnavailable`), so a client's error handling meets what it would meet for real.

use serde_json::{Value, json};

use super::request::RequestInfo;

/// How long a client told to slow down (429) should wait, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An injected failure: the HTTP status, the `Status` body, and a `Retry-After` for 429.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub code: u16,
    pub body: Value,
    pub retry_after: Option<u32>,
}

fn status(code: u16, reason: &str, message: String, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

/// The failure the API server would answer `code` with, for this request.
pub fn failure(code: u16, info: &RequestInfo) -> Failure {
    let target = info.target.clone().unwrap_or_default();
    let (reason, message, details) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.".to_string(),
            Some(json!({"retryAfterSeconds": RETRY_AFTER_SECONDS})),
        ),
        409 => {
            let name = target.name.clone().unwrap_or_default();
            let mut d = json!({"name": name, "kind": target.resource});
            if !target.group.is_empty() {
                d["group"] = json!(target.group);
            }
            (
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.qualified()
                ),
                Some(d),
            )
        }
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request (injected fault)".to_string(),
            None,
        ),
        504 => (
            "Timeout",
            "Timeout: request did not complete within the allowed duration (injected fault)"
                .to_string(),
            Some(json!({"retryAfterSeconds": RETRY_AFTER_SECONDS})),
        ),
        _ => (
            "InternalError",
            "Internal error occurred: injected fault".to_string(),
            Some(json!({"causes": [{"message": "injected fault"}]})),
        ),
    };
    Failure {
        code,
        body: status(code, reason, message, details),
        retry_after: (code == 429).then_some(RETRY_AFTER_SECONDS),
    }
}

/// What the proxy answers when it cannot reach the API server itself.
pub fn unavailable(message: &str) -> Value {
    status(
        503,
        "ServiceUnavailable",
        format!("the fault proxy cannot reach the API server: {message}"),
        None,
    )
}

/// The watch event the API server sends when a watch's resourceVersion has been compacted away
/// (then it ends the stream): one JSON line.
pub fn expired_event() -> Vec<u8> {
    let object = status(
        410,
        "Expired",
        "The resourceVersion for the provided watch is too old.".to_string(),
        None,
    );
    let mut line = json!({"type": "ERROR", "object": object})
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_api_servers_status_objects() {
        let list = RequestInfo::parse("GET", "/api/v1/namespaces/default/configmaps", None);
        let f = failure(429, &list);
        assert_eq!((f.code, f.retry_after), (429, Some(1)));
        assert_eq!(f.body["kind"], "Status");
        assert_eq!(f.body["status"], "Failure");
        assert_eq!(f.body["reason"], "TooManyRequests");
        assert_eq!(f.body["details"]["retryAfterSeconds"], 1);
        let f = failure(500, &list);
        assert_eq!(
            (
                f.body["reason"].as_str(),
                f.body["code"].as_u64(),
                f.retry_after
            ),
            (Some("InternalError"), Some(500), None)
        );
        assert!(
            f.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Internal error occurred"))
        );
        let put = RequestInfo::parse("PUT", "/apis/apps/v1/namespaces/a/deployments/web", None);
        let f = failure(409, &put);
        assert_eq!(f.body["reason"], "Conflict");
        assert_eq!(
            f.body["message"],
            "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
        );
        assert_eq!(
            f.body["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        // kube's own Status type reads every one of them.
        for code in [409, 429, 500, 503, 504] {
            let s: kube::core::Status =
                serde_json::from_value(failure(code, &put).body).expect("a Status");
            assert_eq!(s.code, code);
        }
    }

    #[test]
    fn the_expiry_event_is_one_watch_line() {
        let line = expired_event();
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["object"]["code"].as_u64()),
            (Some("ERROR"), Some(410))
        );
        assert_eq!(v["object"]["reason"], "Expired");
    }
}
