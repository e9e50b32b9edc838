//! Progress of a pass as a stream of events; the CLI prints them as JSON lines and the operator
//! turns them into `status.progress` and the volume's `VolumeTransfer` status.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// `progress` while running, `verified` once both root hashes matched.
    pub event: &'static str,
    pub pass: u64,
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes written to the TLS stream (frames, after compression).
    pub wire_bytes: u64,
    /// Bytes read from it (the receiver's answers).
    pub wire_bytes_in: u64,
    pub bytes_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub elapsed_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
}

pub type ProgressSink = Arc<dyn Fn(&Progress) + Send + Sync>;

pub struct Tracker {
    start: Instant,
    pub pass: u64,
    pub files_total: u64,
    pub bytes_total: u64,
}

impl Tracker {
    pub fn new(pass: u64, files_total: u64, bytes_total: u64) -> Self {
        Tracker {
            start: Instant::now(),
            pass,
            files_total,
            bytes_total,
        }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn event(
        &self,
        files_done: u64,
        bytes_done: u64,
        wire_bytes: u64,
        wire_bytes_in: u64,
    ) -> Progress {
        let elapsed = self.elapsed();
        let rate = if elapsed > 0.0 {
            bytes_done as f64 / elapsed
        } else {
            0.0
        };
        let remaining = self.bytes_total.saturating_sub(bytes_done) as f64;
        Progress {
            event: "progress",
            pass: self.pass,
            files_done,
            files_total: self.files_total,
            bytes_done,
            bytes_total: self.bytes_total,
            wire_bytes,
            wire_bytes_in,
            bytes_per_second: rate,
            eta_seconds: (rate > 0.0).then(|| remaining / rate),
            elapsed_seconds: elapsed,
            root_hash: None,
        }
    }
}
