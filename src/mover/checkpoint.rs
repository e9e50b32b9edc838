//! Resumability. The receiver keeps the files it is building in a staging area on the volume
//! (`.sovereign-mover/partial/`, one file per destination path, named by a hash of the path).
//! Chunks are written at their final offsets after they verified, so when a pass is interrupted
//! (either side killed, connection dropped) the next attempt finds them, re-verifies them against
//! the new manifest and asks only for what is missing. Files already renamed into place are
//! found by the normal incremental logic. The staging area is excluded from the tree and from the
//! root hash, and emptied after a verified pass.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::chunk::chunk_hash;
use super::confined::{os, remove_all};
use super::error::{IoContext, Result};
use super::manifest::STATE_DIR;
use super::protocol::ChunkRef;

pub const PARTIAL_DIR: &str = "partial";
pub const INDEX: &str = "index";
pub const INDEX_NEW: &str = "index.new";
pub const LAST_PASS: &str = "last-pass.json";

pub struct Staging {
    pub state: OwnedFd,
    pub partial: OwnedFd,
}

fn mkdir_open(parent: &OwnedFd, name: &str, what: &str) -> Result<OwnedFd> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e).ctx(|| format!("creating {what}")),
    }
    super::confined::open_subdir(parent, name.as_bytes(), what.as_bytes())
}

impl Staging {
    pub fn open(root: &OwnedFd) -> Result<Staging> {
        let state = mkdir_open(root, STATE_DIR, STATE_DIR)?;
        let partial = mkdir_open(&state, PARTIAL_DIR, "the staging area")?;
        Ok(Staging { state, partial })
    }

    pub fn partial_name(path: &[u8]) -> String {
        let h = blake3::hash(path);
        hex::encode(&h.as_bytes()[..16])
    }

    /// Opens (creating if needed) the partial file for `path`, sized to `size`. Returns whether
    /// it already existed, i.e. whether an earlier attempt may have left verified chunks in it.
    pub fn open_partial(&self, path: &[u8], size: u64) -> Result<(File, String, bool)> {
        let name = Self::partial_name(path);
        let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let show = || {
            format!(
                "creating the staging file for {}",
                String::from_utf8_lossy(path)
            )
        };
        let (fd, existed) = match rustix::fs::openat(
            &self.partial,
            name.as_str(),
            flags | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => (fd, false),
            Err(Errno::EXIST) => (
                rustix::fs::openat(&self.partial, name.as_str(), flags, Mode::empty()).ctx(show)?,
                true,
            ),
            Err(e) => return Err(e).ctx(show),
        };
        let file = File::from(fd);
        // A new file grows as chunks land at their offsets; an old one is cut to size.
        if existed {
            file.set_len(size).ctx(show)?;
        }
        Ok((file, name, existed))
    }

    pub fn remove_partial(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.partial, name, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e).ctx(|| "removing a staging file"),
        }
    }

    /// Empties the staging area (after a verified pass, nothing in it is useful any more).
    pub fn clear(&self) -> Result<()> {
        remove_all(
            &self.state,
            PARTIAL_DIR.as_bytes(),
            b".sovereign-mover/partial",
        )?;
        match rustix::fs::mkdirat(&self.state, PARTIAL_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e).ctx(|| "recreating the staging area"),
        }
    }

    pub fn create(&self, name: &str) -> Result<File> {
        let fd = rustix::fs::openat(
            &self.state,
            os(name.as_bytes()),
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx(|| format!("creating {STATE_DIR}/{name}"))?;
        Ok(File::from(fd))
    }

    pub fn open_read(&self, name: &str) -> Result<Option<File>> {
        match rustix::fs::openat(
            &self.state,
            os(name.as_bytes()),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e).ctx(|| format!("opening {STATE_DIR}/{name}")),
        }
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        rustix::fs::renameat(&self.state, from, &self.state, to)
            .ctx(|| format!("renaming {STATE_DIR}/{from}"))
    }
}

/// Which chunks of a partial file left by an earlier attempt are already correct.
pub fn verified_chunks(file: &File, chunks: &[ChunkRef], offsets: &[u64]) -> Vec<bool> {
    let mut buf = Vec::new();
    chunks
        .iter()
        .zip(offsets)
        .map(|(c, &off)| {
            buf.resize(c.len as usize, 0);
            file.read_exact_at(&mut buf, off).is_ok() && chunk_hash(&buf) == c.hash
        })
        .collect()
}
