//! One error type for the mover: every variant says what was being done, so the CLI can print
//! it as the reason a pass failed and the operator can put it in a condition.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum MoverError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("no space left on the receiver's volume while {context}")]
    DiskFull { context: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { size: u64, max: u64 },
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
    #[error("rejected unsafe path {path:?}: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error(
        "hash mismatch for chunk {index} of {path:?} (corrupt data, or the source changed during the pass)"
    )]
    HashMismatch { path: String, index: u64 },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("certificates: {0}")]
    Certs(String),
    #[error("the peer aborted the pass: {0}")]
    PeerAborted(String),
    #[error("root hash mismatch: sender {sender}, receiver {receiver}")]
    RootHashMismatch { sender: String, receiver: String },
    #[error("connection closed by the peer while {0}")]
    Closed(String),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("the pass was cancelled: {0}")]
    Cancelled(String),
}

pub type Result<T, E = MoverError> = std::result::Result<T, E>;

impl MoverError {
    /// Wraps an I/O error with what we were doing; a full disk (or quota) gets its own variant
    /// because it is the one failure an operator must act on rather than retry.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.raw_os_error() {
            Some(code) if code == libc_enospc() || code == libc_edquot() => {
                MoverError::DiskFull { context }
            }
            _ => MoverError::Io { context, source },
        }
    }

    pub fn unsafe_path(path: &[u8], reason: impl Into<String>) -> Self {
        MoverError::UnsafePath {
            path: String::from_utf8_lossy(path).into_owned(),
            reason: reason.into(),
        }
    }
}

/// Adds context to I/O results: `file.read(..).ctx(|| format!("reading {path}"))`.
pub trait IoContext<T> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| MoverError::io(context(), e))
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn ctx<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| MoverError::io(context(), io::Error::from(e)))
    }
}

fn libc_enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}

fn libc_edquot() -> i32 {
    rustix::io::Errno::DQUOT.raw_os_error()
}
