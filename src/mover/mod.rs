//! The data mover: `sovereign mover certs|send|receive`.
//!
//! Moves a volume's tree from a sender (source cluster, read-only mount or snapshot) to a
//! receiver (target cluster, the new PVC) over mutual TLS with a per-migration CA: a streamed
//! manifest of content-defined chunks, only the missing chunks on the wire (zstd when it pays),
//! verification of every chunk and of the root hash on both sides, resumable and incremental.

pub mod certs;
pub mod checkpoint;
pub mod chunk;
pub mod cli;
pub mod confined;
pub mod error;
pub mod index;
pub mod manifest;
pub mod progress;
pub mod protocol;
pub mod receive;
pub mod send;
pub mod tls;
pub mod walk;

pub use error::{MoverError, Result};
