//! Shared helpers for the mover tests: certificates in memory, a receiver on an ephemeral port,
//! a tree builder, and an independent tree comparison that does not use the mover's hashes.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sovereign::mover::certs::{self, MigrationCerts};
use sovereign::mover::receive::{self, ReceiveOptions, ReceiverEvent};
use sovereign::mover::send::{self, SendOptions, SendReport};

pub fn certs() -> MigrationCerts {
    certs::generate("test", 2).expect("certificates")
}

pub struct Receiver {
    pub addr: String,
    pub events: Arc<Mutex<Vec<ReceiverEvent>>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(root: &Path, certs: &MigrationCerts) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut opts = ReceiveOptions::new(root.to_path_buf(), certs.receiver.clone());
        opts.handshake_timeout = Duration::from_secs(3);
        let sink = events.clone();
        opts.events = Some(Arc::new(move |e: &ReceiverEvent| {
            sink.lock().unwrap().push(e.clone())
        }));
        let task = tokio::spawn(async move {
            let _ = receive::serve(listener, opts).await;
        });
        Receiver { addr, events, task }
    }

    pub fn events(&self) -> Vec<ReceiverEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until an event matching `pred` was recorded.
    pub async fn wait_for(&self, pred: impl Fn(&ReceiverEvent) -> bool) -> ReceiverEvent {
        for _ in 0..200 {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("event not seen; events: {:?}", self.events());
    }
}

pub fn send_opts(root: &Path, addr: &str, certs: &MigrationCerts) -> SendOptions {
    let mut o = SendOptions::new(root.to_path_buf(), addr.to_string(), certs.sender.clone());
    o.window = 64;
    o.compress_below = None;
    o
}

pub async fn send(
    root: &Path,
    addr: &str,
    certs: &MigrationCerts,
) -> Result<SendReport, sovereign::mover::MoverError> {
    send::send(send_opts(root, addr, certs)).await
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-11-29T00:00:{:02}Z INFO request {i} served in {} ms\n",
                i % 60,
                i % 97
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
}

pub fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    let f = fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .unwrap();
    f.set_modified(t).unwrap();
}

/// A tree with every kind of thing the mover must carry.
pub fn build_tree(root: &Path) {
    write(root, "big.bin", &noise(3 << 20, 1));
    write(root, "logs/app.log", &text(2 << 20, 2));
    for i in 0..40 {
        let data = if i % 2 == 0 {
            noise(1000 + i * 997, i as u64)
        } else {
            text(1000 + i * 1500, i as u64)
        };
        write(root, &format!("small/d{}/f{i:03}", i % 5), &data);
    }
    write(root, "empty-file", b"");
    fs::create_dir_all(root.join("empty/dir/deep")).unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link-to-big")).unwrap();
    std::os::unix::fs::symlink("../big.bin", root.join("logs/up-link")).unwrap();
    std::os::unix::fs::symlink("missing-target", root.join("dangling")).unwrap();
    fs::hard_link(root.join("small/d0/f000"), root.join("hard-a")).unwrap();
    fs::hard_link(root.join("small/d0/f000"), root.join("small/d1/hard-b")).unwrap();
    fs::set_permissions(root.join("big.bin"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("logs/app.log"), fs::Permissions::from_mode(0o640)).unwrap();
    write(root, "bin/tool", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("empty/dir"), fs::Permissions::from_mode(0o750)).unwrap();
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(root.join("logs/app.log"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("link-to-big"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::lchown(root.join("empty"), Some(7), Some(8)).unwrap();
    }
    set_mtime(&root.join("big.bin"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("logs/app.log"), 1_700_000_000, 1);
    touch_dirs(root);
}

/// Gives directories distinctive mtimes after their content is in place.
pub fn touch_dirs(root: &Path) {
    for (i, d) in ["empty/dir/deep", "empty/dir", "empty", "logs", "small/d3"]
        .iter()
        .enumerate()
    {
        let p = root.join(d);
        if p.is_dir() {
            set_mtime(&p, 1_500_000_000 + i as u64, 42);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    target: Option<PathBuf>,
    content: Option<Vec<u8>>,
}

/// Describes a tree by walking it with std only: type, mode, owner, mtime (except the root's),
/// content, symlink targets, and the hard-link groups as sets of paths.
pub fn describe(root: &Path) -> (BTreeMap<PathBuf, Node>, BTreeSet<BTreeSet<PathBuf>>) {
    let mut nodes = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), BTreeSet<PathBuf>> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "file"
        };
        if ft.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                let e = e.unwrap();
                if rel.as_os_str().is_empty() && e.file_name() == ".sovereign-mover" {
                    continue;
                }
                stack.push(rel.join(e.file_name()));
            }
        }
        if ft.is_file() {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .insert(rel.clone());
        }
        nodes.insert(
            rel.clone(),
            Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: if rel.as_os_str().is_empty() {
                    (0, 0)
                } else {
                    (m.mtime(), m.mtime_nsec())
                },
                size: if ft.is_dir() { 0 } else { m.size() },
                target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                content: ft.is_file().then(|| fs::read(&p).unwrap()),
            },
        );
    }
    let links = inodes.into_values().filter(|s| s.len() > 1).collect();
    (nodes, links)
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let (na, la) = describe(a);
    let (nb, lb) = describe(b);
    let ka: Vec<_> = na.keys().collect();
    let kb: Vec<_> = nb.keys().collect();
    assert_eq!(ka, kb, "different paths");
    for (k, va) in &na {
        let vb = &nb[k];
        if va != vb {
            let mut da = format!(
                "{:?}",
                Node {
                    content: None,
                    ..clone_node(va)
                }
            );
            let db = format!(
                "{:?}",
                Node {
                    content: None,
                    ..clone_node(vb)
                }
            );
            if va.content != vb.content {
                da.push_str(" (content differs)");
            }
            panic!("{} differs:\n source {da}\n target {db}", k.display());
        }
    }
    assert_eq!(la, lb, "different hard-link groups");
}

fn clone_node(n: &Node) -> Node {
    Node {
        kind: n.kind,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        mtime: n.mtime,
        size: n.size,
        target: n.target.clone(),
        content: n.content.clone(),
    }
}
