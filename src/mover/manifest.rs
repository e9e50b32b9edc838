//! What a tree is, for the mover: the entries of a walk (type, mode, owner, mtime, size, symlink
//! target, hard-link identity, content hash) and the root hash over them. Both sides build
//! entries with the same function from what `lstat` and the content say, so the two root hashes
//! agree exactly when the trees do.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use super::error::{MoverError, Result};
use super::protocol::{Entry, Hash, Kind};

/// The receiver's staging area at the root of the volume; never part of the tree.
pub const STATE_DIR: &str = ".sovereign-mover";

pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
        p.extend_from_slice(dir);
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

pub fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Walk order: component by component, bytes within a component. Equals a depth-first walk with
/// siblings sorted by name, parents before children.
pub fn path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    components(a).cmp(components(b))
}

pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

pub fn file_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Checks a path from the peer: relative, no empty, `.` or `..` components, no NUL, not inside
/// the staging area. The root itself is the empty path.
pub fn validate_path(path: &[u8]) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > 4096 {
        return Err(MoverError::unsafe_path(path, "longer than PATH_MAX"));
    }
    if path[0] == b'/' {
        return Err(MoverError::unsafe_path(path, "absolute path"));
    }
    if path.contains(&0) {
        return Err(MoverError::unsafe_path(path, "contains a NUL byte"));
    }
    for (i, c) in path.split(|&b| b == b'/').enumerate() {
        match c {
            b"" => return Err(MoverError::unsafe_path(path, "empty path component")),
            b"." | b".." => return Err(MoverError::unsafe_path(path, "`.` or `..` component")),
            _ if c.len() > 255 => {
                return Err(MoverError::unsafe_path(path, "name longer than 255 bytes"));
            }
            _ if i == 0 && c == STATE_DIR.as_bytes() => {
                return Err(MoverError::unsafe_path(
                    path,
                    "inside the mover's staging area",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses symlink targets that resolve outside the volume: absolute targets, and relative ones
/// whose `..` climb above the root from where the link sits. (The receiver never follows a link
/// when writing; this keeps the migrated volume from pointing the workload outside itself.)
pub fn validate_symlink_target(link: &[u8], target: &[u8]) -> Result<()> {
    if target.is_empty() || target.contains(&0) || target.len() > 4096 {
        return Err(MoverError::unsafe_path(link, "invalid symlink target"));
    }
    if target[0] == b'/' {
        return Err(MoverError::unsafe_path(
            link,
            format!(
                "symlink to the absolute path {:?} escapes the volume",
                String::from_utf8_lossy(target)
            ),
        ));
    }
    let mut depth = components(parent(link)).count() as i64;
    for c in components(target) {
        match c {
            b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(MoverError::unsafe_path(
                        link,
                        format!(
                            "symlink target {:?} escapes the volume",
                            String::from_utf8_lossy(target)
                        ),
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

pub fn kind_of(meta: &Metadata) -> Option<Kind> {
    let t = meta.file_type();
    if t.is_file() {
        Some(Kind::File)
    } else if t.is_dir() {
        Some(Kind::Dir)
    } else if t.is_symlink() {
        Some(Kind::Symlink)
    } else {
        None
    }
}

/// Builds an entry from `lstat` data; content hash, symlink target and hard link are the
/// caller's. Sizes of directories are filesystem-specific, so they are zero.
pub fn entry_from_meta(path: Vec<u8>, kind: Kind, meta: &Metadata) -> Entry {
    Entry {
        id: 0,
        path,
        kind,
        mode: if kind == Kind::Symlink {
            0
        } else {
            meta.mode() & 0o7777
        },
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        size: if kind == Kind::Dir { 0 } else { meta.size() },
        target: None,
        hardlink: None,
        file_hash: [0; 32],
        chunk_count: 0,
    }
}

/// Remembers the first name of every multiply-linked file so later names become hard links.
#[derive(Default)]
pub struct HardlinkTracker {
    first: HashMap<(u64, u64), Vec<u8>>,
}

impl HardlinkTracker {
    /// Returns the first name if this inode was seen before, else records it.
    pub fn check(&mut self, path: &[u8], meta: &Metadata) -> Option<Vec<u8>> {
        if !meta.is_file() || meta.nlink() < 2 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        if let Some(first) = self.first.get(&key) {
            return Some(first.clone());
        }
        self.first.insert(key, path.to_vec());
        None
    }
}

/// The root hash: BLAKE3 over every entry in walk order.
pub struct RootHasher {
    hasher: blake3::Hasher,
    owner: bool,
    entries: u64,
}

impl RootHasher {
    pub fn new(owner: bool) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"sovereign-mover tree v1");
        RootHasher {
            hasher,
            owner,
            entries: 0,
        }
    }

    pub fn add(&mut self, e: &Entry) {
        let h = &mut self.hasher;
        let bytes = |h: &mut blake3::Hasher, b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        bytes(h, &e.path);
        h.update(&[match e.kind {
            Kind::File => 1,
            Kind::Dir => 2,
            Kind::Symlink => 3,
        }]);
        h.update(&e.mode.to_le_bytes());
        if self.owner {
            h.update(&e.uid.to_le_bytes());
            h.update(&e.gid.to_le_bytes());
        }
        // The root directory's mtime belongs to the mount point and the staging area changes it.
        if !e.path.is_empty() {
            h.update(&e.mtime_sec.to_le_bytes());
            h.update(&e.mtime_nsec.to_le_bytes());
        }
        h.update(&e.size.to_le_bytes());
        bytes(h, e.target.as_deref().unwrap_or_default());
        match &e.hardlink {
            Some(first) => {
                h.update(&[1]);
                bytes(h, first);
            }
            None => {
                h.update(&[0]);
                h.update(&e.file_hash);
            }
        }
        self.entries += 1;
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    pub fn finish(&self) -> Hash {
        let mut h = self.hasher.clone();
        h.update(&self.entries.to_le_bytes());
        *h.finalize().as_bytes()
    }
}

pub fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_is_depth_first_sorted() {
        let mut paths: Vec<&[u8]> = vec![b"a-b", b"a/c", b"", b"a", b"a/b/z", b"b", b"a/b"];
        paths.sort_by(|a, b| path_cmp(a, b));
        let expect: Vec<&[u8]> = vec![b"", b"a", b"a/b", b"a/b/z", b"a/c", b"a-b", b"b"];
        assert_eq!(paths, expect);
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            &b"/etc/passwd"[..],
            b"a/../../x",
            b"..",
            b"a//b",
            b"a/./b",
            b".sovereign-mover/x",
            b"a\0b",
        ] {
            assert!(
                validate_path(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(validate_path(b"a/b.c/.hidden").is_ok());
        assert!(validate_path(b"x/.sovereign-mover").is_ok());
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        assert!(validate_symlink_target(b"l", b"/etc").is_err());
        assert!(validate_symlink_target(b"l", b"../x").is_err());
        assert!(validate_symlink_target(b"a/b/l", b"../../../x").is_err());
        assert!(validate_symlink_target(b"a/b/l", b"../../x").is_ok());
        assert!(validate_symlink_target(b"a/l", b"./c/../d").is_ok());
    }
}
