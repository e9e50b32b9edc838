//! Progress of a pass as a stream of events; the CLI prints them as JSON lines and the operator
//! turns them into `status.progress` and the volume's `VolumeTransfer` status.
//!
//! Format (one JSON object per line on the sender's stdout, camelCase; fields are only ever
//! added, never renamed, because the operator parses them):
//!
//! ```text
//! {"event":"progress","pass":2,"filesDone":120,"filesTotal":20002,"bytesDone":..,"bytesTotal":..,
//!  "wireBytes":..,"wireBytesIn":..,"bytesPerSecond":..,"etaSeconds":..,"elapsedSeconds":..}
//! ...
//! {"event":"verified","pass":2,"filesDone":20002,"filesTotal":20002,"bytesDone":..,
//!  "bytesTotal":..,"wireBytes":..,"wireBytesIn":..,"bytesPerSecond":..,"etaSeconds":0.0,
//!  "elapsedSeconds":..,"rootHash":"<sender's>","receiverRootHash":"<receiver's>",
//!  "chunksSent":..,"chunkBytesSent":..,"cachedFiles":..}
//! ```
//!
//! The last line of a successful `send` is the `verified` event: it carries the pass, the file and
//! byte totals, the bytes written to (`wireBytes`) and read from (`wireBytesIn`) the connection,
//! and both root hashes (equal, or the pass would have failed: the sender's in `rootHash`, the
//! one the receiver computed from its volume in `receiverRootHash`), and how many regular files
//! were taken from the stat cache (`--cache`) instead of being read and hashed (`cachedFiles`).
//! `rootHash`, `receiverRootHash`, `chunksSent`, `chunkBytesSent` and `cachedFiles` appear only
//! on that line. A failed pass
//! prints no `verified` line and exits non-zero with the reason on stderr.

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
    /// The sender's root hash (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
    /// The root hash the receiver computed from its volume (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver_root_hash: Option<String>,
    /// Chunks and their uncompressed bytes actually sent (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_bytes_sent: Option<u64>,
    /// Regular files whose chunk list came from the stat cache, not read (`verified` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_files: Option<u64>,
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
            receiver_root_hash: None,
            chunks_sent: None,
            chunk_bytes_sent: None,
            cached_files: None,
        }
    }
}
