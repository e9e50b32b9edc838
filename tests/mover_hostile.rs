//! A hostile or broken sender: every bad input is refused with a clear reason, and nothing is
//! written outside the receiver's root. The malicious peer speaks the real protocol (with a
//! valid sender certificate) through the mover's own protocol module.

mod mover_common;

use std::path::Path;

use mover_common::*;
use sovereign::mover::certs::MigrationCerts;
use sovereign::mover::chunk::{chunk_hash, file_hash};
use sovereign::mover::protocol::{
    CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ChunkRef, Chunks, DataHeader, Entry, Hello, Kind, ManifestEnd,
    Message, VERSION, encode, encode_data, read_message,
};
use sovereign::mover::receive::ReceiverEvent;
use sovereign::mover::tls;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

type Rd = ReadHalf<TlsStream<TcpStream>>;
type Wr = WriteHalf<TlsStream<TcpStream>>;

async fn connect(addr: &str, certs: &MigrationCerts) -> (Rd, Wr) {
    let config = tls::client_config(&certs.sender).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(tls::server_name("sovereign-mover-receiver").unwrap(), tcp)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let hello = Message::Hello(Hello {
        version: VERSION,
        pass: 1,
        owner: true,
        chunk_min: CHUNK_MIN as u32,
        chunk_avg: CHUNK_AVG as u32,
        chunk_max: CHUNK_MAX as u32,
        last: false,
    });
    wr.write_all(&encode(&hello).unwrap()).await.unwrap();
    assert!(matches!(
        read_message(&mut rd, "welcome").await.unwrap(),
        Message::Welcome(_)
    ));
    (rd, wr)
}

/// Reads until the receiver gives up, returning its reason.
async fn abort_reason(rd: &mut Rd) -> String {
    for _ in 0..1000 {
        match read_message(rd, "waiting for the abort").await {
            Ok(Message::Abort(a)) => return a.reason,
            Ok(_) => continue,
            Err(e) => return format!("connection ended without a reason: {e}"),
        }
    }
    panic!("no abort");
}

fn entry(id: u64, path: &str, kind: Kind) -> Entry {
    Entry {
        id,
        path: path.as_bytes().to_vec(),
        kind,
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        uid: 0,
        gid: 0,
        mtime_sec: 1_600_000_000,
        mtime_nsec: 0,
        size: 0,
        target: None,
        hardlink: None,
        file_hash: file_hash(&[]),
        chunk_count: 0,
    }
}

async fn send_all(wr: &mut Wr, msgs: &[Message]) {
    for m in msgs {
        // The receiver may hang up as soon as it sees the bad message.
        if wr.write_all(&encode(m).unwrap()).await.is_err() {
            return;
        }
    }
    let _ = wr.flush().await;
}

struct Case {
    rx: Receiver,
    dst: tempfile::TempDir,
    outside: tempfile::TempDir,
    certs: MigrationCerts,
}

async fn case() -> Case {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    Case {
        rx,
        dst,
        outside,
        certs,
    }
}

fn assert_empty(dir: &Path) {
    let n = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(n, 0, "something was written to {}", dir.display());
}

async fn refused(manifest: Vec<Message>, expect: &str) -> Case {
    let c = case().await;
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    send_all(&mut wr, &manifest).await;
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains(expect), "expected {expect:?} in {reason:?}");
    let failed =
        c.rx.wait_for(|e| matches!(e, ReceiverEvent::PassFailed { .. }))
            .await;
    assert!(format!("{failed:?}").contains(expect), "{failed:?}");
    c
}

fn root() -> Message {
    Message::Entry(entry(0, "", Kind::Dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_paths_are_refused() {
    let c = refused(
        vec![root(), Message::Entry(entry(1, "../escape", Kind::File))],
        "unsafe path",
    )
    .await;
    assert!(!c.dst.path().parent().unwrap().join("escape").exists());
    let c2 = refused(
        vec![
            root(),
            Message::Entry(entry(1, "a/../../escape", Kind::Dir)),
        ],
        "`..`",
    )
    .await;
    drop((c, c2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_paths_are_refused() {
    let c = case().await;
    let target = c.outside.path().join("abs");
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    send_all(
        &mut wr,
        &[
            root(),
            Message::Entry(entry(1, target.to_str().unwrap(), Kind::File)),
        ],
    )
    .await;
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("absolute path"), "{reason}");
    assert_empty(c.outside.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaping_symlinks_are_refused() {
    let mut link = entry(1, "link", Kind::Symlink);
    link.target = Some(b"../../etc".to_vec());
    refused(vec![root(), Message::Entry(link)], "escapes the volume").await;
    let mut abs = entry(1, "link", Kind::Symlink);
    abs.target = Some(b"/etc/passwd".to_vec());
    refused(vec![root(), Message::Entry(abs)], "escapes the volume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_never_go_through_a_symlink() {
    let c = case().await;
    // A symlink already on the volume pointing outside, and a manifest that wants a directory
    // of that name with a file inside: the link is replaced, never followed.
    std::os::unix::fs::symlink(c.outside.path(), c.dst.path().join("evil")).unwrap();
    let data = b"payload".to_vec();
    let chunk = ChunkRef {
        hash: chunk_hash(&data),
        len: data.len() as u32,
    };
    let mut file = entry(2, "evil/pwned", Kind::File);
    file.size = data.len() as u64;
    file.chunk_count = 1;
    file.file_hash = file_hash(&[chunk]);
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    let dir = entry(1, "evil", Kind::Dir);
    let mut manifest = vec![
        root(),
        Message::Entry(dir),
        Message::Entry(file),
        Message::Chunks(Chunks {
            id: 2,
            first: 0,
            chunks: vec![chunk],
        }),
    ];
    // Root hash as the receiver will compute it is unknown to this fake sender: expect a
    // mismatch at the end, after the file was placed.
    manifest.push(Message::ManifestEnd(ManifestEnd {
        entries: 3,
        root_hash: [0; 32],
    }));
    send_all(&mut wr, &manifest).await;
    loop {
        match read_message(&mut rd, "need").await.unwrap() {
            Message::Need(n) if n.id == 2 => {
                let frame = encode_data(
                    &DataHeader {
                        id: 2,
                        index: 0,
                        compressed: false,
                    },
                    &data,
                )
                .unwrap();
                wr.write_all(&frame).await.unwrap();
                wr.flush().await.unwrap();
                break;
            }
            _ => continue,
        }
    }
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("root hash mismatch"), "{reason}");
    assert_empty(c.outside.path());
    let evil = std::fs::symlink_metadata(c.dst.path().join("evil")).unwrap();
    assert!(evil.is_dir());
    assert_eq!(
        std::fs::read(c.dst.path().join("evil/pwned")).unwrap(),
        data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_below_a_symlink_entry_is_refused() {
    let mut link = entry(1, "a", Kind::Symlink);
    link.target = Some(b"b".to_vec());
    refused(
        vec![
            root(),
            Message::Entry(link),
            Message::Entry(entry(2, "a/x", Kind::File)),
        ],
        "without its parent directory",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused() {
    let c = case().await;
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    wr.write_all(&(64u32 << 20).to_be_bytes()).await.unwrap();
    wr.flush().await.unwrap();
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("exceeds the maximum"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_are_refused() {
    let c = case().await;
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    wr.write_all(&[0, 0, 0, 3, 99, 1, 2]).await.unwrap();
    wr.flush().await.unwrap();
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("unknown message type 99"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_mismatches_are_refused_and_nothing_is_placed() {
    let c = case().await;
    let data = b"the real content".to_vec();
    let chunk = ChunkRef {
        hash: chunk_hash(&data),
        len: data.len() as u32,
    };
    let mut file = entry(1, "f", Kind::File);
    file.size = data.len() as u64;
    file.chunk_count = 1;
    file.file_hash = file_hash(&[chunk]);
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    send_all(
        &mut wr,
        &[
            root(),
            Message::Entry(file),
            Message::Chunks(Chunks {
                id: 1,
                first: 0,
                chunks: vec![chunk],
            }),
        ],
    )
    .await;
    loop {
        if let Message::Need(n) = read_message(&mut rd, "need").await.unwrap() {
            assert_eq!(n.ranges, vec![(0, 1)]);
            break;
        }
    }
    let forged = b"the forged content".to_vec();
    let frame = encode_data(
        &DataHeader {
            id: 1,
            index: 0,
            compressed: false,
        },
        &forged[..data.len()],
    )
    .unwrap();
    wr.write_all(&frame).await.unwrap();
    wr.flush().await.unwrap();
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("hash mismatch for chunk 0"), "{reason}");
    assert!(!c.dst.path().join("f").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrequested_chunks_and_bad_chunk_lists_are_refused() {
    let c = case().await;
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    send_all(&mut wr, &[root()]).await;
    let frame = encode_data(
        &DataHeader {
            id: 0,
            index: 0,
            compressed: false,
        },
        b"x",
    )
    .unwrap();
    wr.write_all(&frame).await.unwrap();
    wr.flush().await.unwrap();
    let reason = abort_reason(&mut rd).await;
    assert!(reason.contains("no chunks outstanding"), "{reason}");

    // A chunk list that does not add up to the announced size.
    let mut file = entry(1, "f", Kind::File);
    file.size = 10;
    file.chunk_count = 1;
    let chunk = ChunkRef {
        hash: [1; 32],
        len: 5,
    };
    refused(
        vec![
            root(),
            Message::Entry(file),
            Message::Chunks(Chunks {
                id: 1,
                first: 0,
                chunks: vec![chunk],
            }),
        ],
        "does not match",
    )
    .await;
    // A manifest out of order (the merge with the volume relies on it).
    refused(
        vec![
            root(),
            Message::Entry(entry(1, "b", Kind::Dir)),
            Message::Entry(entry(2, "a", Kind::Dir)),
        ],
        "out of order",
    )
    .await;
    // A decompression bomb: a compressed chunk that inflates past its declared length.
    let c = case().await;
    let (mut rd, mut wr) = connect(&c.rx.addr, &c.certs).await;
    let data = vec![0u8; 1000];
    let chunk = ChunkRef {
        hash: chunk_hash(&data),
        len: 1000,
    };
    let mut file = entry(1, "bomb", Kind::File);
    file.size = 1000;
    file.chunk_count = 1;
    file.file_hash = file_hash(&[chunk]);
    send_all(
        &mut wr,
        &[
            root(),
            Message::Entry(file),
            Message::Chunks(Chunks {
                id: 1,
                first: 0,
                chunks: vec![chunk],
            }),
        ],
    )
    .await;
    loop {
        if let Message::Need(_) = read_message(&mut rd, "need").await.unwrap() {
            break;
        }
    }
    let bomb = zstd::bulk::compress(&vec![0u8; 10 << 20], 3).unwrap();
    let frame = encode_data(
        &DataHeader {
            id: 1,
            index: 0,
            compressed: true,
        },
        &bomb,
    )
    .unwrap();
    wr.write_all(&frame).await.unwrap();
    wr.flush().await.unwrap();
    let reason = abort_reason(&mut rd).await;
    assert!(
        reason.contains("bad zstd data") || reason.contains("hash mismatch"),
        "{reason}"
    );
}
