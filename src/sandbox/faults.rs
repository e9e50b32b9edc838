//! Faults on demand, per cluster: a share of requests failing (500 / 429 / 409), added latency,
//! dropped watches, and the whole cluster made unreachable.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::errors::ApiError;

#[derive(Clone, Debug, Default)]
struct Config {
    /// Share of resource requests that fail, 0.0..=1.0.
    error_rate: f64,
    /// Status codes the failures use, picked in turn (500, 429, 409).
    error_codes: Vec<u16>,
    latency: Duration,
    /// Only fail requests of this verb class ("read" or "write"); none = all.
    only_writes: bool,
}

/// The fault knobs of one cluster. Every method takes `&self`, so tests can flip them at any time.
pub struct Faults {
    config: RwLock<Config>,
    unreachable: AtomicBool,
    /// Bumped to end every open watch.
    drop_tx: watch::Sender<u64>,
    counter: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        let (drop_tx, _) = watch::channel(0);
        Faults {
            config: RwLock::new(Config::default()),
            unreachable: AtomicBool::new(false),
            drop_tx,
            counter: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("config", &self.cfg())
            .field("unreachable", &self.is_unreachable())
            .finish()
    }
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

    /// Fail `rate` (0.0..=1.0) of resource requests with the given codes (500, 429 or 409), in turn.
    pub fn set_errors(&self, rate: f64, codes: &[u16]) {
        self.edit(|c| {
            c.error_rate = rate.clamp(0.0, 1.0);
            c.error_codes = if codes.is_empty() {
                vec![500]
            } else {
                codes.to_vec()
            };
        });
    }

    /// Only fail writes (reads and watches keep working).
    pub fn set_errors_on_writes_only(&self, only: bool) {
        self.edit(|c| c.only_writes = only);
    }

    /// Add this much latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.edit(|c| c.latency = latency);
    }

    /// End every open watch now (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.drop_tx.send_modify(|n| *n += 1);
    }

    /// Make the cluster unreachable (connections are refused/closed) or reachable again.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
        if unreachable {
            self.drop_watches();
        }
    }

    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::SeqCst)
    }

    /// Clear every fault.
    pub fn clear(&self) {
        self.edit(|c| *c = Config::default());
        self.unreachable.store(false, Ordering::SeqCst);
    }

    pub fn latency(&self) -> Duration {
        self.cfg().latency
    }

    pub(crate) fn watch_drops(&self) -> watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }

    /// Whether this resource request should fail, and how.
    pub(crate) fn injected_error(&self, is_write: bool) -> Option<ApiError> {
        let c = self.cfg();
        if c.error_rate <= 0.0 || (c.only_writes && !is_write) {
            return None;
        }
        if fastrand::f64() >= c.error_rate {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst) as usize;
        let code = c
            .error_codes
            .get(n % c.error_codes.len().max(1))
            .copied()
            .unwrap_or(500);
        Some(match code {
            429 => ApiError::too_many_requests(),
            409 => ApiError::new(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected fault)",
            ),
            503 => ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request (injected fault)",
            ),
            _ => ApiError::internal("injected fault"),
        })
    }
}
