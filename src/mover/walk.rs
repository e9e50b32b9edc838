//! A depth-first walk of a tree in a fixed order (siblings sorted by name bytes), never
//! following symlinks, holding one sorted directory listing per level: memory grows with the
//! depth and the width of a directory, not with the size of the tree.
//!
//! Both sides walk in this order, which is what lets the receiver merge the incoming manifest
//! with its own tree and with its index as sorted streams instead of loading either.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};
use super::manifest::{STATE_DIR, join};

pub struct WalkEntry {
    /// Relative `/`-separated path; empty for the root.
    pub path: Vec<u8>,
    pub meta: Metadata,
}

struct Level {
    dir: Vec<u8>,
    names: Vec<Vec<u8>>,
    next: usize,
}

pub struct Walker {
    root: PathBuf,
    stack: Vec<Level>,
    descend: Option<Vec<u8>>,
    started: bool,
}

pub fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

impl Walker {
    pub fn new(root: &Path) -> Self {
        Walker {
            root: root.to_path_buf(),
            stack: Vec::new(),
            descend: None,
            started: false,
        }
    }

    /// Do not descend into the directory returned last (it is being deleted or replaced).
    pub fn skip_subtree(&mut self) {
        self.descend = None;
    }

    pub fn next_entry(&mut self) -> Result<Option<WalkEntry>> {
        if !self.started {
            self.started = true;
            let meta = fs::symlink_metadata(&self.root)
                .ctx(|| format!("reading {}", self.root.display()))?;
            if meta.is_dir() {
                self.descend = Some(Vec::new());
            }
            return Ok(Some(WalkEntry {
                path: Vec::new(),
                meta,
            }));
        }
        if let Some(dir) = self.descend.take() {
            let abs_dir = abs(&self.root, &dir);
            let mut names = Vec::new();
            let listing = match fs::read_dir(&abs_dir) {
                Ok(listing) => Some(listing),
                // Removed since we saw it: nothing to walk.
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).ctx(|| format!("listing {}", abs_dir.display())),
            };
            for item in listing.into_iter().flatten() {
                let item = item.ctx(|| format!("listing {}", abs_dir.display()))?;
                let name = item.file_name().as_bytes().to_vec();
                if dir.is_empty() && name == STATE_DIR.as_bytes() {
                    continue;
                }
                names.push(name);
            }
            names.sort_unstable();
            self.stack.push(Level {
                dir,
                names,
                next: 0,
            });
        }
        while let Some(level) = self.stack.last_mut() {
            let Some(name) = level.names.get(level.next) else {
                self.stack.pop();
                continue;
            };
            level.next += 1;
            let path = join(&level.dir, name);
            let abs_path = abs(&self.root, &path);
            let meta = match fs::symlink_metadata(&abs_path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("reading {}", abs_path.display())),
            };
            if meta.is_dir() {
                self.descend = Some(path.clone());
            }
            return Ok(Some(WalkEntry { path, meta }));
        }
        Ok(None)
    }
}
