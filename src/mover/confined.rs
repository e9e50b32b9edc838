//! Filesystem operations confined to the receiver's volume.
//!
//! Every write goes through a directory file descriptor reached from the root one component at a
//! time with `O_NOFOLLOW | O_DIRECTORY`, and names are created with `*at` calls that never follow
//! a final symlink. So neither a symlink in the manifest nor one planted on the volume can make
//! the mover write outside the root: at worst the operation fails with a clear error.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::{IoContext, MoverError, Result};
use super::manifest::components;

pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

pub fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

pub fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the volume root {}", root.display()))
}

/// Opens the directory at `rel` below `root`, refusing to traverse a symlink.
pub fn open_dir(root: &impl AsFd, rel: &[u8]) -> Result<OwnedFd> {
    let mut fd = rustix::io::dup(root).ctx(|| "duplicating the root descriptor")?;
    for c in components(rel) {
        fd = match rustix::fs::openat(&fd, os(c), DIR_FLAGS, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                return Err(MoverError::unsafe_path(
                    rel,
                    format!(
                        "{:?} is not a directory (refusing to follow a symlink)",
                        show(c)
                    ),
                ));
            }
            Err(e) => return Err(e).ctx(|| format!("opening directory {}", show(rel))),
        };
    }
    Ok(fd)
}

pub fn open_subdir(dir: &impl AsFd, name: &[u8], what: &[u8]) -> Result<OwnedFd> {
    match rustix::fs::openat(dir, os(name), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => Err(MoverError::unsafe_path(
            what,
            "is not a directory (refusing to follow a symlink)",
        )),
        Err(e) => Err(e).ctx(|| format!("opening directory {}", show(what))),
    }
}

/// Opens a regular file for reading without following a symlink; `None` if it is missing or is
/// not a regular file.
pub fn open_file_read(root: &impl AsFd, rel: &[u8]) -> Result<Option<File>> {
    let parent = match open_dir(root, super::manifest::parent(rel)) {
        Ok(fd) => fd,
        Err(MoverError::UnsafePath { .. }) => return Ok(None),
        Err(MoverError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    open_file_in(&parent, super::manifest::file_name(rel), rel)
}

/// Opens the regular file `name` in `dir` for reading, never following a symlink.
pub fn open_file_in(dir: &impl AsFd, name: &[u8], rel: &[u8]) -> Result<Option<File>> {
    match rustix::fs::openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let file = File::from(fd);
            let meta = file.metadata().ctx(|| format!("reading {}", show(rel)))?;
            Ok(meta.is_file().then_some(file))
        }
        Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::NXIO) => Ok(None),
        Err(e) => Err(e).ctx(|| format!("opening {}", show(rel))),
    }
}

/// What is at `name` in `dir`, without following a symlink.
pub fn file_type_at(dir: &impl AsFd, name: &[u8]) -> Result<Option<FileType>> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e).ctx(|| format!("reading {}", show(name))),
    }
}

/// Removes `name` from `dir`, recursively for a directory, never following a symlink.
pub fn remove_all(dir: &impl AsFd, name: &[u8], what: &[u8]) -> Result<()> {
    match file_type_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let sub = open_subdir(dir, name, what)?;
            let mut names = Vec::new();
            for entry in
                rustix::fs::Dir::read_from(&sub).ctx(|| format!("listing {}", show(what)))?
            {
                let entry = entry.ctx(|| format!("listing {}", show(what)))?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
            for n in names {
                let child = super::manifest::join(what, &n);
                remove_all(&sub, &n, &child)?;
            }
            rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)
                .ctx(|| format!("removing directory {}", show(what)))
        }
        Some(_) => rustix::fs::unlinkat(dir, os(name), AtFlags::empty())
            .ctx(|| format!("removing {}", show(what))),
    }
}
