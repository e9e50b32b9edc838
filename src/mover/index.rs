//! The receiver's index of what its volume holds: per file, the `lstat` identity it had when the
//! mover last wrote or verified it, and its chunk list. It answers "which of these chunks do you
//! already have" without re-reading unchanged files, and is trusted only while inode, size,
//! mtime and ctime are unchanged (ctime cannot be set from user space, so any later write to the
//! file shows). Records are stored in walk order and read as a sorted stream, merged with the
//! incoming manifest, so the index is never loaded whole.

use std::fs::{File, Metadata};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use super::error::{IoContext, Result};
use super::manifest::path_cmp;
use super::protocol::{ChunkRef, Hash};

/// A record bigger than this means the file is damaged, not that a file is that large
/// (2^26 chunk references is a multi-terabyte file).
const MAX_RECORD: usize = 1 << 31;

/// A file's `lstat` identity: equal stamps taken before and after a read (or a copy) mean no
/// write happened in between, since any write moves the ctime and user space cannot set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    pub fn of(meta: &Metadata) -> Self {
        FileStamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    pub path: Vec<u8>,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub file_hash: Hash,
    pub chunks: Vec<ChunkRef>,
}

impl IndexRecord {
    pub fn new(path: Vec<u8>, meta: &Metadata, file_hash: Hash, chunks: Vec<ChunkRef>) -> Self {
        IndexRecord {
            path,
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            file_hash,
            chunks,
        }
    }

    /// Whether the file on disk is still the one this record describes.
    pub fn matches(&self, meta: &Metadata) -> bool {
        meta.is_file()
            && self.ino == meta.ino()
            && self.size == meta.size()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
    }
}

pub struct IndexWriter {
    out: BufWriter<File>,
    what: String,
}

impl IndexWriter {
    pub fn new(file: File, what: String) -> Self {
        IndexWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            what,
        }
    }

    pub fn append(&mut self, rec: &IndexRecord) -> Result<()> {
        let bytes = postcard::to_stdvec(rec).map_err(|e| {
            super::error::MoverError::Protocol(format!("cannot encode index record: {e}"))
        })?;
        self.out
            .write_all(&(bytes.len() as u32).to_le_bytes())
            .and_then(|()| self.out.write_all(&bytes))
            .ctx(|| format!("writing {}", self.what))
    }

    pub fn finish(mut self) -> Result<File> {
        self.out.flush().ctx(|| format!("writing {}", self.what))?;
        self.out
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("writing {}", self.what))
    }
}

/// Reads records in order; `lookup` must be called with non-decreasing paths.
pub struct IndexReader {
    input: Option<BufReader<File>>,
    peeked: Option<IndexRecord>,
}

impl IndexReader {
    pub fn empty() -> Self {
        IndexReader {
            input: None,
            peeked: None,
        }
    }

    pub fn new(file: File) -> Self {
        IndexReader {
            input: Some(BufReader::with_capacity(1 << 20, file)),
            peeked: None,
        }
    }

    fn read_next(&mut self) -> Option<IndexRecord> {
        let input = self.input.as_mut()?;
        let mut len = [0u8; 4];
        let record = match input.read_exact(&mut len) {
            Ok(()) => {
                let len = u32::from_le_bytes(len) as usize;
                let mut buf = Vec::new();
                if len <= MAX_RECORD
                    && input
                        .take(len as u64)
                        .read_to_end(&mut buf)
                        .is_ok_and(|n| n == len)
                {
                    postcard::from_bytes(&buf).ok()
                } else {
                    None
                }
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => None,
            Err(_) => None,
        };
        if record.is_none() {
            // End, or a damaged index: either way, stop trusting it. Files it no longer
            // covers are re-read from disk, which costs time, never correctness.
            self.input = None;
        }
        record
    }

    pub fn lookup(&mut self, path: &[u8]) -> Option<IndexRecord> {
        loop {
            if self.peeked.is_none() {
                self.peeked = self.read_next();
            }
            let rec = self.peeked.as_ref()?;
            match path_cmp(&rec.path, path) {
                std::cmp::Ordering::Less => self.peeked = None,
                std::cmp::Ordering::Equal => return self.peeked.take(),
                std::cmp::Ordering::Greater => return None,
            }
        }
    }
}
