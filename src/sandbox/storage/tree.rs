//! Directory trees as a CSI driver's data: a copy that is either absent or complete (volumes
//! restored from snapshots, snapshots of volumes), its removal, and its size.
//!
//! Blocking: callers run these on a blocking thread.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a copy to `to` is built before it is renamed into place.
pub fn partial_of(to: &Path) -> PathBuf {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// Copies the tree at `from` to `to`, which must not exist: into `<to>.partial` first (a leftover
/// of an interrupted copy is removed), then renamed, so that `to` is either absent or complete
/// whenever the process dies. Regular files, directories and symlinks are copied with their
/// modes and modification times (other kinds are skipped); owners too when running as root.
pub fn copy_into(from: &Path, to: &Path) -> io::Result<()> {
    let partial = partial_of(to);
    remove_if_present(&partial)?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    copy_dir(from, &partial, rustix::process::geteuid().is_root())?;
    std::fs::rename(&partial, to)
}

fn copy_dir(from: &Path, to: &Path, owners: bool) -> io::Result<()> {
    // Created owner-writable so that it can be filled; its own mode is set last.
    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let m = std::fs::symlink_metadata(&src)?;
        let t = m.file_type();
        if t.is_dir() {
            copy_dir(&src, &dst, owners)?;
            continue;
        }
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if t.is_file() {
            // Copies the permission bits too.
            std::fs::copy(&src, &dst)?;
        } else {
            tracing::debug!(path = %src.display(), "not a file, directory or symlink: not copied");
            continue;
        }
        if owners {
            std::os::unix::fs::lchown(&dst, Some(m.uid()), Some(m.gid()))?;
        }
        set_times(&dst, &m)?;
    }
    let m = std::fs::symlink_metadata(from)?;
    if owners {
        std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()))?;
    }
    std::fs::set_permissions(to, m.permissions())?;
    set_times(to, &m)
}

fn set_times(path: &Path, m: &std::fs::Metadata) -> io::Result<()> {
    let t = |sec: i64, nsec: i64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let times = rustix::fs::Timestamps {
        last_access: t(m.atime(), m.atime_nsec()),
        last_modification: t(m.mtime(), m.mtime_nsec()),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Removes a tree, making read-only directories writable first (a copied tree keeps the modes
/// of its source). A symlink is removed, never followed.
pub fn remove(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            unlock(dir);
            std::fs::remove_dir_all(dir)
        }
        r => r,
    }
}

/// `remove`, with an absent tree as success.
pub fn remove_if_present(dir: &Path) -> io::Result<()> {
    match remove(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn unlock(dir: &Path) {
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let mode = m.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            unlock(&e.path());
        }
    }
}

/// The bytes of the regular files in a tree (what a pre-provisioned snapshot restores).
pub fn size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let m = std::fs::symlink_metadata(entry.path())?;
        if m.is_dir() {
            total += size(&entry.path())?;
        } else if m.is_file() {
            total += m.len();
        }
    }
    Ok(total)
}

/// Whether `dir` is a directory directly inside `root`, named `name` (the only directories the
/// agent ever removes).
pub fn is_own_dir(root: &Path, dir: &Path, name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".." && dir == root.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(path: &Path, sec: i64, nsec: i64) {
        let t = rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .expect("utimensat");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_copy_keeps_bytes_modes_links_and_mtimes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
        std::fs::write(src.join("a/b/f.txt"), b"hello").expect("write");
        std::fs::set_permissions(
            src.join("a/b/f.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("a/b/f.txt", src.join("link")).expect("symlink");
        stamp(&src.join("a/b/f.txt"), 1_000_000_000, 5);
        stamp(&src.join("link"), 1_100_000_000, 7);
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o550))
            .expect("chmod");
        stamp(&src.join("a"), 1_200_000_000, 9);

        let dst = tmp.path().join("snaps/dst");
        copy_into(&src, &dst).expect("copy");

        assert_eq!(
            std::fs::read(dst.join("a/b/f.txt")).expect("read"),
            b"hello"
        );
        assert_eq!(mode(&dst.join("a/b/f.txt")), 0o640);
        assert_eq!(
            mode(&dst.join("a")),
            0o550,
            "a read-only directory stays read-only"
        );
        let m = std::fs::metadata(dst.join("a/b/f.txt")).expect("meta");
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 5));
        let d = std::fs::metadata(dst.join("a")).expect("meta");
        assert_eq!((d.mtime(), d.mtime_nsec()), (1_200_000_000, 9));
        let l = std::fs::symlink_metadata(dst.join("link")).expect("meta");
        assert!(l.file_type().is_symlink());
        assert_eq!((l.mtime(), l.mtime_nsec()), (1_100_000_000, 7));
        assert_eq!(
            std::fs::read_link(dst.join("link")).expect("link"),
            PathBuf::from("a/b/f.txt")
        );
        assert!(!partial_of(&dst).exists());
        assert_eq!(size(&dst).expect("size"), 5);

        remove(&dst).expect("remove a tree with a read-only directory");
        assert!(!dst.exists());
        remove_if_present(&dst).expect("absent is fine");
    }

    #[test]
    fn an_interrupted_copy_is_redone_from_scratch() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), b"x").expect("write");
        let dst = tmp.path().join("dst");
        // What a killed copy leaves: a partial tree with a stray file, and no `dst`.
        std::fs::create_dir_all(partial_of(&dst).join("stray")).expect("mkdir");
        copy_into(&src, &dst).expect("copy");
        assert!(dst.join("f").is_file());
        assert!(!dst.join("stray").exists());
        assert!(!partial_of(&dst).exists());
    }

    #[test]
    fn only_a_named_child_of_the_root_is_the_agents() {
        let root = Path::new("/data/c/volumes");
        assert!(is_own_dir(root, &root.join("pvc-1"), "pvc-1"));
        assert!(!is_own_dir(root, root, ""));
        assert!(!is_own_dir(root, &root.join("pvc-1"), "pvc-2"));
        assert!(!is_own_dir(root, Path::new("/etc"), "etc"));
        assert!(!is_own_dir(root, &root.join("../x"), "../x"));
        assert!(!is_own_dir(root, &root.join(".."), ".."));
    }
}
