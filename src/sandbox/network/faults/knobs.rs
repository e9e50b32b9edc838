//! The knobs of one fault proxy, shared as an `Arc<Faults>`: every method takes `&self`, so a
//! test flips them at any time while clients run, and every change applies to the next request
//! (or, for dropped watches and unreachability, to the open ones at once).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::request::RequestInfo;

#[derive(Clone, Debug, Default)]
struct Config {
    /// Share of resource requests that fail, 0.0..=1.0.
    share: f64,
    /// The status codes failures use, in turn.
    codes: Vec<u16>,
    latency: Duration,
}

pub struct Faults {
    config: RwLock<Config>,
    unreachable: watch::Sender<bool>,
    /// Bumped to end every open watch.
    drops: watch::Sender<u64>,
    /// Bumped to end every open watch with a 410 Expired event.
    expiries: watch::Sender<u64>,
    counts: Mutex<BTreeMap<String, u64>>,
    failed: AtomicU64,
    turn: AtomicUsize,
    rng: Mutex<fastrand::Rng>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            config: RwLock::new(Config::default()),
            unreachable: watch::Sender::new(false),
            drops: watch::Sender::new(0),
            expiries: watch::Sender::new(0),
            counts: Mutex::new(BTreeMap::new()),
            failed: AtomicU64::new(0),
            turn: AtomicUsize::new(0),
            rng: Mutex::new(fastrand::Rng::new()),
        }
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("config", &self.cfg())
            .field("unreachable", &self.is_unreachable())
            .finish_non_exhaustive()
    }
}

/// The code a failing request gets: the next of `codes` in turn, skipping 409 for reads (a
/// Conflict only answers a write). None when no code fits the request.
pub fn pick_code(codes: &[u16], is_write: bool, turn: usize) -> Option<u16> {
    let fitting: Vec<u16> = codes
        .iter()
        .copied()
        .filter(|c| is_write || *c != 409)
        .collect();
    fitting.get(turn % fitting.len().max(1)).copied()
}

impl Faults {
    fn cfg(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn edit(&self, f: impl FnOnce(&mut Config)) {
        f(&mut self.config.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Fail `share` (0.0..=1.0) of resource requests, with `codes` in turn (500 when empty):
    /// 500 InternalError, 429 TooManyRequests with Retry-After, 409 Conflict (writes only),
    /// 503 ServiceUnavailable, 504 Timeout.
    pub fn set_errors(&self, share: f64, codes: &[u16]) {
        self.edit(|c| {
            c.share = if share.is_nan() {
                0.0
            } else {
                share.clamp(0.0, 1.0)
            };
            c.codes = if codes.is_empty() {
                vec![500]
            } else {
                codes.to_vec()
            };
        });
    }

    /// Delay every request by this much before it is forwarded.
    pub fn set_latency(&self, latency: Duration) {
        self.edit(|c| c.latency = latency);
    }

    /// End every open watch now (clients see the stream end and watch again).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// End every open watch with the `ERROR` event (410 Expired) the API server sends when a
    /// watch's resourceVersion has been compacted: clients must list again.
    pub fn expire_watches(&self) {
        self.expiries.send_modify(|n| *n += 1);
    }

    /// Refuse new connections and cut the open ones (true), or accept them again (false).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.send_replace(unreachable);
    }

    pub fn is_unreachable(&self) -> bool {
        *self.unreachable.borrow()
    }

    /// No errors, no latency, reachable. The counts are kept.
    pub fn clear(&self) {
        self.edit(|c| *c = Config::default());
        self.set_unreachable(false);
    }

    pub fn latency(&self) -> Duration {
        self.cfg().latency
    }

    /// How many requests of this verb (`list`, `watch`, `create`, …) the proxy received.
    pub fn requests(&self, verb: &str) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(verb)
            .copied()
            .unwrap_or(0)
    }

    /// Every verb's count.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests were answered with an injected error.
    pub fn injected_errors(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    pub fn reset_counts(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.failed.store(0, Ordering::SeqCst);
    }

    pub(crate) fn record(&self, info: &RequestInfo) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(info.verb.clone())
            .or_insert(0) += 1;
    }

    /// The status code this request fails with, if it is one of the share that fails.
    pub(crate) fn injected_error(&self, info: &RequestInfo) -> Option<u16> {
        let c = self.cfg();
        if c.share <= 0.0 || info.target.is_none() {
            return None;
        }
        let roll = self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64();
        if roll >= c.share {
            return None;
        }
        let code = pick_code(
            &c.codes,
            info.is_write(),
            self.turn.fetch_add(1, Ordering::SeqCst),
        )?;
        self.failed.fetch_add(1, Ordering::SeqCst);
        Some(code)
    }

    pub(crate) fn unreachable_changes(&self) -> watch::Receiver<bool> {
        self.unreachable.subscribe()
    }

    pub(crate) fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    pub(crate) fn watch_expiries(&self) -> watch::Receiver<u64> {
        self.expiries.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_go_in_turn_and_conflicts_only_answer_writes() {
        assert_eq!(pick_code(&[500, 429], false, 0), Some(500));
        assert_eq!(pick_code(&[500, 429], false, 1), Some(429));
        assert_eq!(pick_code(&[500, 429], false, 2), Some(500));
        assert_eq!(pick_code(&[409], false, 0), None);
        assert_eq!(pick_code(&[409, 500], false, 7), Some(500));
        assert_eq!(pick_code(&[409, 500], true, 0), Some(409));
    }

    #[test]
    fn the_share_is_respected_and_non_resource_requests_never_fail() {
        let f = Faults::default();
        let list = RequestInfo::parse("GET", "/api/v1/configmaps", None);
        assert_eq!(f.injected_error(&list), None, "no faults by default");
        f.set_errors(1.0, &[429]);
        assert_eq!(f.injected_error(&list), Some(429));
        assert_eq!(
            f.injected_error(&RequestInfo::parse("GET", "/version", None)),
            None
        );
        f.set_errors(0.25, &[]);
        let failed = (0..4000)
            .filter(|_| f.injected_error(&list).is_some())
            .count();
        assert!((700..1300).contains(&failed), "{failed} of 4000 at 25%");
        f.clear();
        assert_eq!(f.injected_error(&list), None);
        f.record(&list);
        f.record(&list);
        assert_eq!(f.requests("list"), 2);
    }
}
