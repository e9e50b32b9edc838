//! The receiver: accepts one mutually authenticated sender at a time and applies its manifest to
//! the volume.
//!
//! Per connection: the reader task assembles manifest entries and hands chunk data to a pool of
//! writers (decompress, verify BLAKE3, write at the final offset of the file's staging copy). A
//! planner thread merges the manifest with the receiver's index and its current files to answer
//! with the chunks it lacks (copying chunks it already has locally), and a committer thread walks
//! the manifest in order: it removes what the source no longer has, renames each file into place
//! once every chunk verified, sets metadata, records the index, and at the end computes the root
//! hash from the volume itself.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_channel::{Receiver, Sender};
use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::certs::TlsMaterial;
use super::checkpoint::{INDEX, INDEX_NEW, LAST_PASS, Staging, verified_chunks};
use super::chunk::{chunk_hash, digest};
use super::confined::{self, open_dir, open_file_read, os, remove_all, show};
use super::error::{IoContext, MoverError, Result};
use super::index::{FileStamp, IndexReader, IndexRecord, IndexWriter};
use super::manifest::{
    self, HardlinkTracker, RootHasher, entry_from_meta, file_name, hex, kind_of, parent, path_cmp,
    validate_path, validate_symlink_target,
};
use super::protocol::{
    self, Abort, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, ChunkRef, Chunks, Committed, DataHeader, Entry,
    Hash, Kind, ManifestEnd, Message, Need, PassResult, VERSION, WantLists, Welcome, read_message,
    write_message,
};
use super::tls;
use super::walk::{WalkEntry, Walker};

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverEvent {
    Listening(SocketAddr),
    /// Closed or stalled before completing the TLS handshake (port probes, LB health checks).
    Ignored {
        peer: SocketAddr,
        reason: String,
    },
    /// Completed enough of a handshake to be judged, and was refused.
    Refused {
        peer: SocketAddr,
        reason: String,
    },
    PassVerified {
        pass: u64,
        root_hash: String,
        entries: u64,
    },
    PassFailed {
        pass: u64,
        reason: String,
    },
}

pub type EventSink = Arc<dyn Fn(&ReceiverEvent) + Send + Sync>;

#[derive(Clone)]
pub struct ReceiveOptions {
    pub root: PathBuf,
    pub tls: TlsMaterial,
    /// Return after the first verified pass.
    pub once: bool,
    pub handshake_timeout: Duration,
    /// Longest silence from the sender while the manifest is still coming.
    pub idle_timeout: Duration,
    pub threads: usize,
    /// Must be at least the sender's window (entries in flight); sizes the queues.
    pub window: usize,
    pub events: Option<EventSink>,
}

impl ReceiveOptions {
    pub fn new(root: PathBuf, tls: TlsMaterial) -> Self {
        ReceiveOptions {
            root,
            tls,
            once: false,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            window: 4096,
            events: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveReport {
    pub pass: u64,
    pub root_hash: Hash,
    pub entries: u64,
}

fn emit(opts: &ReceiveOptions, event: ReceiverEvent) {
    if let Some(sink) = &opts.events {
        sink(&event);
    }
}

/// Explains a failed handshake; `None` when the peer just went away (a probe).
fn classify_handshake_error(e: &std::io::Error) -> Option<String> {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
    ) {
        return None;
    }
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Some(match tls {
            rustls::Error::InvalidMessage(_) => {
                "not a TLS client hello: plaintext connections are refused".to_string()
            }
            rustls::Error::NoCertificatesPresented => {
                "no client certificate: the sender must present the migration's sender certificate"
                    .to_string()
            }
            rustls::Error::InvalidCertificate(c) => {
                format!("client certificate refused (not issued by this migration's CA?): {c:?}")
            }
            other => format!("TLS handshake refused: {other}"),
        });
    }
    Some(format!("TLS handshake failed: {e}"))
}

/// Listens for senders until a verified pass (with `once`) or forever.
pub async fn serve(listener: TcpListener, opts: ReceiveOptions) -> Result<Option<ReceiveReport>> {
    let acceptor = TlsAcceptor::from(tls::server_config(&opts.tls)?);
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, root = %opts.root.display(), "receiver listening");
        emit(&opts, ReceiverEvent::Listening(addr));
    }
    let volume = Arc::new(tokio::sync::Mutex::new(()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<ReceiveReport>(4);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection accept errors (e.g. EMFILE, aborted connections) must not
                    // stop the receiver; back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(report) = done_rx.recv() => {
                if opts.once {
                    return Ok(Some(report));
                }
                continue;
            }
        };
        let (acceptor, opts, volume, done_tx) = (
            acceptor.clone(),
            opts.clone(),
            volume.clone(),
            done_tx.clone(),
        );
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // rustls reads the socket 4 KiB at a time: without a buffer underneath, a gibibyte
            // costs ~300,000 `recv` calls, each sending an ACK through the TCP stack.
            let tcp = tokio::io::BufReader::with_capacity(256 << 10, tcp);
            let stream = match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Err(_) => {
                    info!(%peer, "no TLS handshake in time; ignored");
                    emit(
                        &opts,
                        ReceiverEvent::Ignored {
                            peer,
                            reason: "no TLS handshake in time".into(),
                        },
                    );
                    return;
                }
                Ok(Err(e)) => {
                    match classify_handshake_error(&e) {
                        None => {
                            info!(%peer, "connection closed before the TLS handshake (probe or health check); ignored");
                            emit(
                                &opts,
                                ReceiverEvent::Ignored {
                                    peer,
                                    reason: "closed before the TLS handshake".into(),
                                },
                            );
                        }
                        Some(reason) => {
                            warn!(%peer, %reason, "connection refused");
                            emit(&opts, ReceiverEvent::Refused { peer, reason });
                        }
                    }
                    return;
                }
                Ok(Ok(s)) => s,
            };
            // One pass at a time per volume; a resumed sender waits for the dead session to end.
            let _guard = volume.lock().await;
            info!(%peer, "sender authenticated");
            match session(stream, &opts).await {
                Ok(report) => {
                    info!(pass = report.pass, root_hash = %hex(&report.root_hash), entries = report.entries, "pass verified");
                    emit(
                        &opts,
                        ReceiverEvent::PassVerified {
                            pass: report.pass,
                            root_hash: hex(&report.root_hash),
                            entries: report.entries,
                        },
                    );
                    let _ = done_tx.send(report).await;
                }
                Err((pass, e)) => {
                    warn!(%peer, pass, error = %e, "pass failed");
                    emit(
                        &opts,
                        ReceiverEvent::PassFailed {
                            pass,
                            reason: e.to_string(),
                        },
                    );
                }
            }
        });
    }
}

struct FileState {
    needed: Vec<bool>,
    remaining: u64,
}

struct PendingFile {
    id: u64,
    path: Vec<u8>,
    file: File,
    partial_name: String,
    chunks: Vec<ChunkRef>,
    offsets: Vec<u64>,
    state: Mutex<FileState>,
    done: Condvar,
}

enum Plan {
    /// Not a regular file with content to place (directory, symlink, hard link).
    Other,
    /// The file on the volume already has this content; only metadata may change.
    InPlace,
    /// Being assembled in the staging area.
    Staged(Arc<PendingFile>),
}

struct CommitItem {
    entry: Entry,
    chunks: Vec<ChunkRef>,
    plan: Plan,
}

enum PlanItem {
    Entry(Entry, Vec<ChunkRef>),
    /// A file entry whose chunk list the sender will send if asked.
    Deferred(Entry),
    /// (Part of) a chunk list asked for with `WantLists`.
    LateChunks(Chunks),
    End(ManifestEnd),
}

enum CommitMsg {
    Entry(CommitItem),
    End(ManifestEnd),
}

struct Shared {
    root: PathBuf,
    root_fd: OwnedFd,
    staging: Staging,
    owner: bool,
    files: Mutex<HashMap<u64, Arc<PendingFile>>>,
    cancelled: AtomicBool,
    failures: tokio::sync::mpsc::UnboundedSender<MoverError>,
    out: Sender<Vec<u8>>,
}

impl Shared {
    fn fail(&self, e: MoverError) {
        // The cause first: whoever notices the cancellation then finds it waiting.
        let _ = self.failures.send(e);
        self.cancelled.store(true, Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
    fn send(&self, msg: &Message) -> Result<()> {
        let frame = protocol::encode(msg)?;
        self.out
            .send_blocking(frame)
            .map_err(|_| MoverError::Cancelled("connection closed".into()))
    }
}

fn cancelled() -> MoverError {
    MoverError::Cancelled("the pass was stopped".into())
}

async fn session<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    opts: &ReceiveOptions,
) -> std::result::Result<ReceiveReport, (u64, MoverError)> {
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = tokio::io::BufReader::with_capacity(256 << 10, rd);
    let mut wr = BufWriter::with_capacity(64 << 10, wr);
    let hello = match tokio::time::timeout(
        opts.idle_timeout,
        read_message(&mut rd, "waiting for Hello"),
    )
    .await
    {
        Err(_) => {
            return Err((
                0,
                MoverError::Timeout("waiting for the sender's Hello".into()),
            ));
        }
        Ok(Err(e)) => return Err((0, e)),
        Ok(Ok(Message::Hello(h))) => h,
        Ok(Ok(other)) => {
            let e = MoverError::Protocol(format!("expected Hello, got {}", other.name()));
            let _ = write_message(
                &mut wr,
                &Message::Abort(Abort {
                    reason: e.to_string(),
                }),
            )
            .await;
            return Err((0, e));
        }
    };
    let pass = hello.pass;
    if hello.version != VERSION
        || (hello.chunk_min, hello.chunk_avg, hello.chunk_max)
            != (CHUNK_MIN as u32, CHUNK_AVG as u32, CHUNK_MAX as u32)
    {
        let e = MoverError::Protocol(format!(
            "the sender speaks protocol version {} with different chunking; this receiver speaks {VERSION}",
            hello.version
        ));
        let _ = write_message(
            &mut wr,
            &Message::Abort(Abort {
                reason: e.to_string(),
            }),
        )
        .await;
        return Err((pass, e));
    }
    // An index means an earlier verified pass: most files will match whole, so their chunk
    // lists are better asked for than sent. A wrong guess costs bytes or round trips, not
    // correctness.
    let defer_chunk_lists = opts.root.join(manifest::STATE_DIR).join(INDEX).is_file();
    let welcome = Message::Welcome(Welcome {
        version: VERSION,
        defer_chunk_lists,
    });
    if let Err(e) = write_message(&mut wr, &welcome).await {
        return Err((pass, e));
    }

    let (out_tx, out_rx) = async_channel::bounded::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        while let Ok(frame) = out_rx.recv().await {
            wr.write_all(&frame)
                .await
                .map_err(|e| MoverError::io("sending to the sender", e))?;
            if out_rx.is_empty() {
                wr.flush()
                    .await
                    .map_err(|e| MoverError::io("sending to the sender", e))?;
            }
        }
        wr.flush()
            .await
            .map_err(|e| MoverError::io("sending to the sender", e))?;
        let _ = wr.shutdown().await;
        Ok::<_, MoverError>(())
    });

    let result = run_pass(&mut rd, opts, hello.owner, pass, out_tx.clone()).await;
    match result {
        Ok(report) => {
            if hello.last {
                // Verified for good: the checkpoint has nothing left to resume. A failure to
                // remove it leaves a directory every root hash ignores, so it is only logged.
                let state = opts.root.join(manifest::STATE_DIR);
                if let Err(e) = std::fs::remove_dir_all(&state) {
                    tracing::warn!(path = %state.display(), error = %e, "cannot remove the mover's checkpoint after the last pass");
                }
            }
            // Only now: once the sender has this it may hang up, and that must not race
            // with the verdict.
            let frame = protocol::encode(&Message::PassResult(PassResult {
                root_hash: report.root_hash,
                entries: report.entries,
            }));
            if let Ok(frame) = frame {
                let _ = out_tx.send(frame).await;
            }
            out_tx.close();
            let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
            Ok(report)
        }
        Err(e) => {
            // Tell the sender why, so it can print the reason and exit non-zero.
            let frame = protocol::encode(&Message::Abort(Abort {
                reason: e.to_string(),
            }));
            if let Ok(frame) = frame {
                let _ = out_tx.force_send(frame);
            }
            out_tx.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
            Err((pass, e))
        }
    }
}

async fn run_pass<R: AsyncRead + Unpin>(
    rd: &mut tokio::io::BufReader<R>,
    opts: &ReceiveOptions,
    owner: bool,
    pass: u64,
    out: Sender<Vec<u8>>,
) -> Result<ReceiveReport> {
    let root = opts.root.clone();
    let root_fd = confined::open_root(&root)?;
    let staging = Staging::open(&root_fd)?;
    let old_index = match staging.open_read(INDEX)? {
        Some(f) => IndexReader::new(f),
        None => IndexReader::empty(),
    };
    let new_index = IndexWriter::new(
        staging.create(INDEX_NEW)?,
        format!("{}/{INDEX_NEW}", manifest::STATE_DIR),
    );

    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        root,
        root_fd,
        staging,
        owner,
        files: Mutex::new(HashMap::new()),
        cancelled: AtomicBool::new(false),
        failures: fail_tx,
        out,
    });
    // Items travel in batches (a wake-up per message would cost more than the work).
    let (plan_tx, plan_rx) = async_channel::bounded::<Vec<PlanItem>>(opts.window + 64);
    let (commit_tx, commit_rx) = async_channel::bounded::<Vec<CommitMsg>>(opts.window + 64);
    let (data_tx, data_rx) = async_channel::bounded::<Vec<Message>>(16);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<ReceiveReport>>();

    let spawn = |name: String, f: Box<dyn FnOnce() -> Result<()> + Send>| {
        let s = shared.clone();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = f() {
                    s.fail(e);
                }
            })
            .ctx(|| format!("starting {name}"))
    };
    {
        let s = shared.clone();
        spawn(
            "mover-plan".into(),
            Box::new(move || planner(s, plan_rx, commit_tx, old_index)),
        )?;
    }
    for n in 0..opts.threads.max(1) {
        let (s, rx) = (shared.clone(), data_rx.clone());
        spawn(
            format!("mover-write-{n}"),
            Box::new(move || writer_worker(s, rx)),
        )?;
    }
    {
        let s = shared.clone();
        spawn(
            "mover-commit".into(),
            Box::new(move || {
                let r = committer(s.clone(), commit_rx, new_index, pass);
                let failed = r.is_err();
                let _ = done_tx.send(r);
                if failed {
                    s.cancelled.store(true, Ordering::SeqCst);
                }
                Ok(())
            }),
        )?;
    }

    let result = read_loop(rd, opts, &plan_tx, &data_tx, &mut fail_rx, done_rx).await;
    // Report the cause, not the cancellation it triggered in another thread.
    let result = match result {
        // A stage that failed closes its channels before it reports why; give it a moment.
        Err(MoverError::Cancelled(_)) => {
            match tokio::time::timeout(Duration::from_millis(500), fail_rx.recv()).await {
                Ok(Some(cause)) => Err(cause),
                _ => result,
            }
        }
        r => r,
    };
    shared.cancelled.store(true, Ordering::SeqCst);
    plan_tx.close();
    data_tx.close();
    result
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut tokio::io::BufReader<R>,
    opts: &ReceiveOptions,
    plan_tx: &Sender<Vec<PlanItem>>,
    data_tx: &Sender<Vec<Message>>,
    fail_rx: &mut tokio::sync::mpsc::UnboundedReceiver<MoverError>,
    mut done_rx: tokio::sync::oneshot::Receiver<Result<ReceiveReport>>,
) -> Result<ReceiveReport> {
    let mut current: Option<(Entry, Vec<ChunkRef>)> = None;
    let mut manifest_done = false;
    let mut plans: Vec<PlanItem> = Vec::new();
    let mut data: Vec<Message> = Vec::new();
    let mut data_bytes = 0usize;
    loop {
        // Hand over what accumulated when the next frame is not already here (or a lot is).
        let more = protocol::complete_frame_buffered(rd.buffer());
        if !plans.is_empty() && (!more || plans.len() >= 256) {
            send_plan(plan_tx, std::mem::take(&mut plans)).await?;
        }
        if !data.is_empty() && (!more || data_bytes >= 1 << 20) {
            data_bytes = 0;
            if data_tx.send(std::mem::take(&mut data)).await.is_err() {
                return Err(MoverError::Cancelled("writers stopped".into()));
            }
        }
        let msg = tokio::select! {
            m = read_message(rd, "receiving the pass") => m,
            _ = tokio::time::sleep(opts.idle_timeout), if !manifest_done => {
                return Err(MoverError::Timeout(format!("the sender was silent for {:?}", opts.idle_timeout)));
            }
            Some(e) = fail_rx.recv() => return Err(e),
            r = &mut done_rx => {
                return r.map_err(|_| MoverError::Cancelled("the committer stopped".into()))?;
            }
        };
        match msg {
            Ok(Message::Entry(e)) => {
                if current.is_some() {
                    return Err(MoverError::Protocol(
                        "an entry arrived before the previous entry's chunk list was complete"
                            .into(),
                    ));
                }
                if e.chunk_count > e.size || e.chunk_count > u64::from(u32::MAX) {
                    return Err(MoverError::Protocol(format!(
                        "entry {} claims {} chunks for {} bytes",
                        show(&e.path),
                        e.chunk_count,
                        e.size
                    )));
                }
                if e.chunk_count == 0 {
                    plans.push(PlanItem::Entry(e, Vec::new()));
                } else {
                    let n = e.chunk_count as usize;
                    current = Some((e, Vec::with_capacity(n.min(1 << 16))));
                }
            }
            Ok(Message::ListDeferred(d)) => {
                let Some((e, _)) = current.take() else {
                    return Err(MoverError::Protocol("ListDeferred without an entry".into()));
                };
                if d.id != e.id {
                    return Err(MoverError::Protocol(format!(
                        "ListDeferred for entry {} after entry {}",
                        d.id, e.id
                    )));
                }
                plans.push(PlanItem::Deferred(e));
            }
            Ok(Message::Chunks(c)) if current.is_none() => {
                // A list we asked for; the planner checks that we did.
                plans.push(PlanItem::LateChunks(c));
            }
            Ok(Message::Chunks(c)) => {
                let Some((e, chunks)) = current.as_mut() else {
                    return Err(MoverError::Protocol("chunk list without an entry".into()));
                };
                if c.id != e.id
                    || c.first != chunks.len() as u64
                    || chunks.len() as u64 + c.chunks.len() as u64 > e.chunk_count
                {
                    return Err(MoverError::Protocol(format!(
                        "chunk list out of sequence for {}",
                        show(&e.path)
                    )));
                }
                chunks.extend_from_slice(&c.chunks);
                if chunks.len() as u64 == e.chunk_count
                    && let Some((e, chunks)) = current.take()
                {
                    plans.push(PlanItem::Entry(e, chunks));
                }
            }
            Ok(Message::ManifestEnd(m)) => {
                if current.is_some() {
                    return Err(MoverError::Protocol(
                        "the manifest ended inside a chunk list".into(),
                    ));
                }
                manifest_done = true;
                plans.push(PlanItem::End(m));
            }
            Ok(msg @ Message::Data { .. }) => {
                data_bytes += msg.data_payload().map_or(0, <[u8]>::len);
                data.push(msg);
            }
            Ok(Message::Abort(a)) => return Err(MoverError::PeerAborted(a.reason)),
            Ok(other) => {
                return Err(MoverError::Protocol(format!(
                    "unexpected {} from the sender",
                    other.name()
                )));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn send_plan(plan_tx: &Sender<Vec<PlanItem>>, item: Vec<PlanItem>) -> Result<()> {
    plan_tx
        .send(item)
        .await
        .map_err(|_| MoverError::Cancelled("the planner stopped".into()))
}

/// Checks an entry; with `deferred` its chunk list is not here yet (checked on arrival by
/// [`validate_chunk_list`]).
fn validate_entry(
    e: &Entry,
    chunks: &[ChunkRef],
    prev: Option<&[u8]>,
    deferred: bool,
) -> Result<()> {
    validate_path(&e.path)?;
    match prev {
        None if !e.path.is_empty() || e.kind != Kind::Dir => {
            return Err(MoverError::Protocol(
                "the manifest must start with the root directory".into(),
            ));
        }
        Some(p) if path_cmp(p, &e.path) != std::cmp::Ordering::Less => {
            return Err(MoverError::Protocol(format!(
                "manifest out of order at {}",
                show(&e.path)
            )));
        }
        _ => {}
    }
    if e.mode & !0o7777 != 0 || e.mtime_nsec >= 1_000_000_000 {
        return Err(MoverError::Protocol(format!(
            "invalid metadata for {}",
            show(&e.path)
        )));
    }
    match e.kind {
        Kind::Dir | Kind::Symlink if e.hardlink.is_some() || !chunks.is_empty() => {
            return Err(MoverError::Protocol(format!(
                "{} cannot have content",
                show(&e.path)
            )));
        }
        Kind::Symlink => match &e.target {
            Some(t) => validate_symlink_target(&e.path, t)?,
            None => {
                return Err(MoverError::Protocol(format!(
                    "symlink {} has no target",
                    show(&e.path)
                )));
            }
        },
        Kind::File => {
            if let Some(first) = &e.hardlink {
                validate_path(first)?;
                if first.is_empty()
                    || path_cmp(first, &e.path) != std::cmp::Ordering::Less
                    || !chunks.is_empty()
                {
                    return Err(MoverError::unsafe_path(
                        &e.path,
                        "hard link to something that is not an earlier file",
                    ));
                }
            } else if deferred {
                if e.chunk_count == 0 {
                    return Err(MoverError::Protocol(format!(
                        "{} has no chunks to defer",
                        show(&e.path)
                    )));
                }
            } else {
                validate_chunk_list(e, chunks)?;
            }
        }
        Kind::Dir => {}
    }
    if e.kind != Kind::Symlink && e.target.is_some() {
        return Err(MoverError::Protocol(format!(
            "{} is not a symlink but has a target",
            show(&e.path)
        )));
    }
    Ok(())
}

fn validate_chunk_list(e: &Entry, chunks: &[ChunkRef]) -> Result<()> {
    let mut total = 0u64;
    for c in chunks {
        if c.len == 0 || c.len as usize > CHUNK_MAX {
            return Err(MoverError::Protocol(format!(
                "invalid chunk length in {}",
                show(&e.path)
            )));
        }
        total += u64::from(c.len);
    }
    if total != e.size || manifest_file_hash(chunks) != e.file_hash {
        return Err(MoverError::Protocol(format!(
            "the chunk list of {} does not match its size or file hash",
            show(&e.path)
        )));
    }
    Ok(())
}

fn manifest_file_hash(chunks: &[ChunkRef]) -> Hash {
    super::chunk::file_hash(chunks)
}

/// A file whose chunk list was asked for and has not (completely) arrived.
struct Awaited {
    entry: Entry,
    chunks: Vec<ChunkRef>,
    /// The chunks of the file now at the path and its stamp then, if any. The file is reopened
    /// when the list arrives rather than held open: up to a window of files may be waiting.
    old: Option<(Vec<ChunkRef>, FileStamp)>,
}

/// Commit items in manifest order; a slot stays empty while its file waits for its chunk list.
#[derive(Default)]
struct CommitQueue {
    slots: VecDeque<Option<CommitMsg>>,
    /// Manifest id of the first slot's entry (every entry has a slot, in id order).
    first_id: u64,
}

impl CommitQueue {
    fn push(&mut self, msg: Option<CommitMsg>) {
        self.slots.push_back(msg);
    }

    fn fill(&mut self, id: u64, msg: CommitMsg) {
        if let Some(slot) = id
            .checked_sub(self.first_id)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            *slot = Some(msg);
        }
    }

    /// Moves the ready prefix to `out`.
    fn drain_ready(&mut self, out: &mut Vec<CommitMsg>) {
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(msg)) = self.slots.pop_front() {
                if matches!(msg, CommitMsg::Entry(_)) {
                    self.first_id += 1;
                }
                out.push(msg);
            }
        }
    }
}

fn planner(
    s: Arc<Shared>,
    plan_rx: Receiver<Vec<PlanItem>>,
    commit_tx: Sender<Vec<CommitMsg>>,
    mut old_index: IndexReader,
) -> Result<()> {
    let mut prev: Option<Vec<u8>> = None;
    let mut count = 0u64;
    let mut buf = Vec::new();
    let mut dirs = DirCache::default();
    let mut needs: Vec<u8> = Vec::new();
    let mut want: Vec<u64> = Vec::new();
    let mut awaited: HashMap<u64, Awaited> = HashMap::new();
    let mut queue = CommitQueue::default();
    let mut commits: Vec<CommitMsg> = Vec::new();
    while let Ok(batch) = plan_rx.recv_blocking() {
        if s.cancelled() {
            return Ok(());
        }
        for item in batch {
            match item {
                PlanItem::Entry(entry, chunks) => {
                    validate_entry(&entry, &chunks, prev.as_deref(), false)?;
                    check_id(&entry, &mut count)?;
                    prev = Some(entry.path.clone());
                    let plan = if entry.kind == Kind::File && entry.hardlink.is_none() {
                        let plan = match match_existing(
                            &s,
                            &entry,
                            &mut old_index,
                            &mut buf,
                            &mut dirs,
                        )? {
                            Existing::Same(_) => Plan::InPlace,
                            Existing::Other(old) => stage_file(&s, &entry, &chunks, old, &mut buf)?,
                        };
                        push_need(&mut needs, entry.id, &plan)?;
                        plan
                    } else {
                        Plan::Other
                    };
                    queue.push(Some(CommitMsg::Entry(CommitItem {
                        entry,
                        chunks,
                        plan,
                    })));
                }
                PlanItem::Deferred(entry) => {
                    if entry.kind != Kind::File || entry.hardlink.is_some() {
                        return Err(MoverError::Protocol(format!(
                            "{} cannot have a chunk list",
                            show(&entry.path)
                        )));
                    }
                    validate_entry(&entry, &[], prev.as_deref(), true)?;
                    check_id(&entry, &mut count)?;
                    prev = Some(entry.path.clone());
                    match match_existing(&s, &entry, &mut old_index, &mut buf, &mut dirs)? {
                        Existing::Same(chunks) => {
                            let plan = Plan::InPlace;
                            push_need(&mut needs, entry.id, &plan)?;
                            // Same file hash, so the same chunk list as the sender's: it goes
                            // to the new index without having crossed the wire.
                            queue.push(Some(CommitMsg::Entry(CommitItem {
                                entry,
                                chunks,
                                plan,
                            })));
                        }
                        Existing::Other(old) => {
                            want.push(entry.id);
                            let old = old.map(|o| (o.chunks, o.stamp));
                            let n = entry.chunk_count as usize;
                            awaited.insert(
                                entry.id,
                                Awaited {
                                    entry,
                                    chunks: Vec::with_capacity(n.min(1 << 16)),
                                    old,
                                },
                            );
                            queue.push(None);
                        }
                    }
                }
                PlanItem::LateChunks(c) => {
                    let Some(a) = awaited.get_mut(&c.id) else {
                        return Err(MoverError::Protocol(format!(
                            "a chunk list for entry {}, which was not asked for",
                            c.id
                        )));
                    };
                    if c.first != a.chunks.len() as u64
                        || a.chunks.len() as u64 + c.chunks.len() as u64 > a.entry.chunk_count
                    {
                        return Err(MoverError::Protocol(format!(
                            "chunk list out of sequence for {}",
                            show(&a.entry.path)
                        )));
                    }
                    a.chunks.extend_from_slice(&c.chunks);
                    if a.chunks.len() as u64 == a.entry.chunk_count
                        && let Some(a) = awaited.remove(&c.id)
                    {
                        validate_chunk_list(&a.entry, &a.chunks)?;
                        // Chunks copied from it are re-verified, so a file replaced meanwhile
                        // costs bytes, not correctness.
                        let old = match a.old {
                            Some((chunks, stamp)) => dirs
                                .open_file(&s.root_fd, &a.entry.path)?
                                .map(|file| OldFile {
                                    file,
                                    chunks,
                                    stamp,
                                }),
                            None => None,
                        };
                        let plan = stage_file(&s, &a.entry, &a.chunks, old, &mut buf)?;
                        push_need(&mut needs, a.entry.id, &plan)?;
                        let id = a.entry.id;
                        queue.fill(
                            id,
                            CommitMsg::Entry(CommitItem {
                                entry: a.entry,
                                chunks: a.chunks,
                                plan,
                            }),
                        );
                    }
                }
                PlanItem::End(m) => {
                    if m.entries != count {
                        return Err(MoverError::Protocol(format!(
                            "the manifest announced {} entries but sent {count}",
                            m.entries
                        )));
                    }
                    queue.push(Some(CommitMsg::End(m)));
                }
            }
        }
        if !want.is_empty() {
            needs.extend(protocol::encode(&Message::WantLists(WantLists {
                ids: std::mem::take(&mut want),
            }))?);
        }
        if !needs.is_empty() {
            s.out
                .send_blocking(std::mem::take(&mut needs))
                .map_err(|_| MoverError::Cancelled("connection closed".into()))?;
        }
        queue.drain_ready(&mut commits);
        if !commits.is_empty()
            && commit_tx
                .send_blocking(std::mem::take(&mut commits))
                .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

fn check_id(entry: &Entry, count: &mut u64) -> Result<()> {
    if entry.id != *count {
        return Err(MoverError::Protocol(format!(
            "entry {} has id {}, expected {count}",
            show(&entry.path),
            entry.id
        )));
    }
    *count += 1;
    Ok(())
}

fn push_need(needs: &mut Vec<u8>, id: u64, plan: &Plan) -> Result<()> {
    let ranges = match plan {
        Plan::Staged(pf) => needed_ranges(pf),
        _ => Vec::new(),
    };
    needs.extend(protocol::encode(&Message::Need(Need { id, ranges }))?);
    Ok(())
}

/// The planner visits files in walk order, so consecutive files mostly share a directory: keep
/// the last one open instead of walking from the root for every file.
#[derive(Default)]
struct DirCache {
    path: Option<Vec<u8>>,
    fd: Option<OwnedFd>,
}

impl DirCache {
    fn open_file(&mut self, root: &OwnedFd, rel: &[u8]) -> Result<Option<File>> {
        let dir = parent(rel);
        if self.path.as_deref() != Some(dir) {
            self.path = None;
            self.fd = match open_dir(root, dir) {
                Ok(fd) => Some(fd),
                Err(MoverError::UnsafePath { .. }) => None,
                Err(MoverError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
            self.path = Some(dir.to_vec());
        }
        match &self.fd {
            Some(fd) => confined::open_file_in(fd, file_name(rel), rel),
            None => Ok(None),
        }
    }
}

fn needed_ranges(pf: &PendingFile) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    if let Ok(state) = pf.state.lock() {
        for (i, &need) in state.needed.iter().enumerate() {
            if !need {
                continue;
            }
            match ranges.last_mut() {
                Some((start, count)) if *start + *count == i as u64 => *count += 1,
                _ => ranges.push((i as u64, 1)),
            }
        }
    }
    ranges
}

enum Existing {
    /// The volume already has this content at this path (with this chunk list).
    Same(Vec<ChunkRef>),
    /// It has something else, or nothing: the old file and its chunks, to copy matching
    /// chunks from.
    Other(Option<OldFile>),
}

/// The file at an entry's path before this pass, with the chunk list it had when `stamp` was
/// taken (from the index, or from reading it).
struct OldFile {
    file: File,
    chunks: Vec<ChunkRef>,
    stamp: FileStamp,
}

/// Compares the file at the entry's path with the entry by whole-file hash, through the index
/// when its record still describes the file (no read), else by reading it.
fn match_existing(
    s: &Shared,
    e: &Entry,
    old_index: &mut IndexReader,
    buf: &mut Vec<u8>,
    dirs: &mut DirCache,
) -> Result<Existing> {
    let indexed = old_index.lookup(&e.path);
    let Some(f) = dirs.open_file(&s.root_fd, &e.path)? else {
        return Ok(Existing::Other(None));
    };
    let meta = f.metadata().ctx(|| format!("reading {}", show(&e.path)))?;
    let (old_chunks, old_hash) = match indexed {
        Some(rec) if rec.matches(&meta) => (rec.chunks, rec.file_hash),
        _ => {
            let d = digest(&f, buf).ctx(|| format!("reading {}", show(&e.path)))?;
            (d.chunks, d.file_hash)
        }
    };
    if old_hash == e.file_hash && meta.nlink() == 1 {
        return Ok(Existing::Same(old_chunks));
    }
    Ok(Existing::Other(Some(OldFile {
        file: f,
        chunks: old_chunks,
        stamp: FileStamp::of(&meta),
    })))
}

/// Decides where each chunk of a file comes from: a staging copy left by an interrupted
/// attempt, the file's current content on the volume, or the sender.
fn stage_file(
    s: &Shared,
    e: &Entry,
    chunks: &[ChunkRef],
    old: Option<OldFile>,
    buf: &mut Vec<u8>,
) -> Result<Plan> {
    let (file, partial_name, existed) = s.staging.open_partial(&e.path, e.size)?;
    let mut offsets = Vec::with_capacity(chunks.len());
    let mut off = 0u64;
    for c in chunks {
        offsets.push(off);
        off += u64::from(c.len);
    }
    let mut have = if existed {
        verified_chunks(&file, chunks, &offsets)
    } else {
        vec![false; chunks.len()]
    };
    if let Some(old) = old {
        reuse_old_chunks(e, chunks, &offsets, old, &file, &mut have, buf)?;
    }
    let needed: Vec<bool> = have.iter().map(|h| !h).collect();
    let remaining = needed.iter().filter(|n| **n).count() as u64;
    let pf = Arc::new(PendingFile {
        id: e.id,
        path: e.path.clone(),
        file,
        partial_name,
        chunks: chunks.to_vec(),
        offsets,
        state: Mutex::new(FileState { needed, remaining }),
        done: Condvar::new(),
    });
    if remaining > 0
        && let Ok(mut files) = s.files.lock()
    {
        files.insert(e.id, pf.clone());
    }
    Ok(Plan::Staged(pf))
}

/// Copies the chunks the old file shares with the new one into the staging copy, marking them
/// in `have`.
///
/// While the old file still carries the stamp its chunk list was taken with, the list is
/// trusted: unchanged ranges are copied by the kernel (`copy_file_range`: a reflink on
/// filesystems that share extents, no trip through user space elsewhere) without reading or
/// hashing them. A stamp that differs after the copy means the file was written meanwhile; the
/// copied chunks are then asked from the sender like any other. Without a trusted stamp each
/// chunk is read and re-hashed before it is used.
fn reuse_old_chunks(
    e: &Entry,
    chunks: &[ChunkRef],
    offsets: &[u64],
    old: OldFile,
    file: &File,
    have: &mut [bool],
    buf: &mut Vec<u8>,
) -> Result<()> {
    let mut at = HashMap::with_capacity(old.chunks.len());
    let mut off = 0u64;
    for c in &old.chunks {
        at.entry(c.hash).or_insert((off, c.len));
        off += u64::from(c.len);
    }
    let stamp_now = || old.file.metadata().ok().map(|m| FileStamp::of(&m));
    if stamp_now() == Some(old.stamp) {
        // Runs of chunks contiguous in both files: (chunk indices, old offset, new offset, len).
        let mut runs: Vec<(std::ops::Range<usize>, u64, u64, u64)> = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            if have[i] {
                continue;
            }
            let Some(&(old_off, len)) = at.get(&c.hash) else {
                continue;
            };
            if len != c.len {
                continue;
            }
            match runs.last_mut() {
                Some((idx, o, n, l))
                    if idx.end == i && *o + *l == old_off && *n + *l == offsets[i] =>
                {
                    idx.end = i + 1;
                    *l += u64::from(len);
                }
                _ => runs.push((i..i + 1, old_off, offsets[i], u64::from(len))),
            }
        }
        let mut copied = Vec::new();
        for (idx, old_off, new_off, len) in runs {
            if copy_range(&old.file, old_off, file, new_off, len) {
                copied.push(idx);
            }
        }
        if stamp_now() == Some(old.stamp) {
            for idx in copied {
                have[idx].fill(true);
            }
        }
        // Chunks not copied (the kernel refused, or the file changed) fall through to the
        // verified read below, which re-checks each one.
    }
    for (i, c) in chunks.iter().enumerate() {
        if have[i] {
            continue;
        }
        if let Some(&(old_off, len)) = at.get(&c.hash) {
            buf.resize(len as usize, 0);
            // Re-verified: the old file may have changed since it was indexed.
            if old.file.read_exact_at(buf, old_off).is_ok() && chunk_hash(buf) == c.hash {
                file.write_all_at(buf, offsets[i])
                    .ctx(|| format!("writing {}", show(&e.path)))?;
                have[i] = true;
            }
        }
    }
    Ok(())
}

/// `len` bytes from `from` at `from_off` to `to` at `to_off` inside the kernel; false if the
/// kernel cannot (the caller then copies through user space).
fn copy_range(from: &File, mut from_off: u64, to: &File, mut to_off: u64, len: u64) -> bool {
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        match rustix::fs::copy_file_range(from, Some(&mut from_off), to, Some(&mut to_off), want) {
            Ok(0) => return false,
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

fn writer_worker(s: Arc<Shared>, data_rx: Receiver<Vec<Message>>) -> Result<()> {
    let mut decompressor =
        zstd::bulk::Decompressor::new().ctx(|| "creating the zstd decompressor")?;
    let mut raw = Vec::with_capacity(CHUNK_MAX);
    while let Ok(batch) = data_rx.recv_blocking() {
        for msg in batch {
            if s.cancelled() {
                return Ok(());
            }
            let Message::Data { header, .. } = &msg else {
                continue;
            };
            let DataHeader {
                id,
                index,
                compressed,
            } = *header;
            let payload = msg.data_payload().unwrap_or_default();
            let pf = s.files.lock().ok().and_then(|f| f.get(&id).cloned());
            let Some(pf) = pf else {
                return Err(MoverError::Protocol(format!(
                    "data for entry {id}, which has no chunks outstanding"
                )));
            };
            let i = index as usize;
            {
                let mut state = pf.state.lock().map_err(|_| cancelled())?;
                match state.needed.get_mut(i) {
                    Some(need @ true) => *need = false,
                    _ => {
                        return Err(MoverError::Protocol(format!(
                            "chunk {index} of {} was not requested (or was sent twice)",
                            show(&pf.path)
                        )));
                    }
                }
            }
            let (Some(c), Some(&off)) = (pf.chunks.get(i), pf.offsets.get(i)) else {
                return Err(cancelled());
            };
            let data: &[u8] = if compressed {
                // The expected length bounds the output: a decompression bomb fails here.
                raw.clear();
                raw.reserve(c.len as usize);
                let n = decompressor
                    .decompress_to_buffer(payload, &mut raw)
                    .map_err(|e| {
                        MoverError::Protocol(format!(
                            "chunk {index} of {}: bad zstd data: {e}",
                            show(&pf.path)
                        ))
                    })?;
                if n != c.len as usize {
                    return Err(MoverError::HashMismatch {
                        path: show(&pf.path),
                        index,
                    });
                }
                &raw
            } else {
                payload
            };
            if data.len() != c.len as usize || chunk_hash(data) != c.hash {
                return Err(MoverError::HashMismatch {
                    path: show(&pf.path),
                    index,
                });
            }
            pf.file
                .write_all_at(data, off)
                .ctx(|| format!("writing chunk {index} of {}", show(&pf.path)))?;
            let mut state = pf.state.lock().map_err(|_| cancelled())?;
            state.remaining -= 1;
            if state.remaining == 0 {
                if let Ok(mut files) = s.files.lock() {
                    files.remove(&pf.id);
                }
                pf.done.notify_all();
            }
        }
    }
    Ok(())
}

fn wait_complete(s: &Shared, pf: &PendingFile) -> Result<()> {
    let mut state = pf.state.lock().map_err(|_| cancelled())?;
    while state.remaining > 0 {
        if s.cancelled() {
            return Err(cancelled());
        }
        state = pf
            .done
            .wait_timeout(state, Duration::from_millis(100))
            .map_err(|_| cancelled())?
            .0;
    }
    Ok(())
}

fn timestamps(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime_sec,
        tv_nsec: i64::from(e.mtime_nsec),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Applies owner, mode and mtime to an open file or directory (owner first: chown clears
/// set-id bits).
fn set_meta_fd(s: &Shared, fd: &impl std::os::fd::AsFd, e: &Entry) -> Result<()> {
    if s.owner {
        rustix::fs::fchown(fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
            .ctx(|| format!("setting the owner of {}", show(&e.path)))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(e.mode))
        .ctx(|| format!("setting the mode of {}", show(&e.path)))?;
    rustix::fs::futimens(fd, &timestamps(e))
        .ctx(|| format!("setting the mtime of {}", show(&e.path)))
}

fn meta_differs(e: &Entry, m: &std::fs::Metadata, owner: bool) -> bool {
    (m.mode() & 0o7777) != e.mode
        || (owner && (m.uid() != e.uid || m.gid() != e.gid))
        || m.mtime() != e.mtime_sec
        || m.mtime_nsec() != i64::from(e.mtime_nsec)
}

struct Dir {
    path: Vec<u8>,
    fd: OwnedFd,
    entry: Entry,
}

fn temp_name(id: u64) -> String {
    format!(".sovereign-mover-tmp-{id}")
}

struct Committer<'a> {
    s: &'a Shared,
    disk: Walker,
    peeked: Option<WalkEntry>,
    stack: Vec<Dir>,
    index: IndexWriter,
    committed: u64,
    files: u64,
    bytes: u64,
}

impl Committer<'_> {
    fn peek(&mut self) -> Result<Option<&WalkEntry>> {
        if self.peeked.is_none() {
            self.peeked = self.disk.next_entry()?;
        }
        Ok(self.peeked.as_ref())
    }

    fn dir_fd(&self, path: &[u8]) -> Result<&OwnedFd> {
        self.stack
            .iter()
            .rev()
            .find(|d| d.path == path)
            .map(|d| &d.fd)
            .ok_or_else(|| {
                MoverError::Protocol(format!(
                    "{} arrived without its parent directory",
                    show(path)
                ))
            })
    }

    /// Removes what is on the volume but not in the manifest, up to `upto` (exclusive), and
    /// anything at `upto` whose type cannot be replaced in place.
    fn sweep(&mut self, upto: Option<&Entry>) -> Result<()> {
        loop {
            let Some(d) = self.peek()? else { return Ok(()) };
            let ord = match upto {
                Some(e) => path_cmp(&d.path, &e.path),
                None => std::cmp::Ordering::Less,
            };
            let disk_kind = kind_of(&d.meta);
            match ord {
                std::cmp::Ordering::Greater => return Ok(()),
                std::cmp::Ordering::Equal => {
                    let Some(e) = upto else { return Ok(()) };
                    let keep = match (disk_kind, e.kind) {
                        (Some(Kind::Dir), Kind::Dir) => true,
                        (Some(Kind::Dir), _) | (_, Kind::Dir) | (None, _) => false,
                        _ => true,
                    };
                    // Consumed either way; a kept directory is still descended into.
                    let path = d.path.clone();
                    self.peeked = None;
                    if !keep {
                        self.disk.skip_subtree();
                        let fd = self.dir_fd(parent(&path))?;
                        remove_all(fd, file_name(&path), &path)?;
                    }
                    return Ok(());
                }
                std::cmp::Ordering::Less => {
                    let path = d.path.clone();
                    if path.is_empty() {
                        // The root is never removed.
                        self.peeked = None;
                        continue;
                    }
                    self.disk.skip_subtree();
                    self.peeked = None;
                    let fd = self.dir_fd(parent(&path))?;
                    remove_all(fd, file_name(&path), &path)?;
                }
            }
        }
    }

    fn pop_until_parent_of(&mut self, path: &[u8]) -> Result<()> {
        let p = parent(path);
        while let Some(top) = self.stack.last() {
            if top.path.as_slice() == p || (top.path.is_empty() && !path.is_empty() && p.is_empty())
            {
                break;
            }
            let is_ancestor = top.path.is_empty()
                || (p.starts_with(&top.path) && p.get(top.path.len()) == Some(&b'/'));
            if is_ancestor {
                return Err(MoverError::Protocol(format!(
                    "{} arrived without its parent directory",
                    show(path)
                )));
            }
            self.close_dir()?;
        }
        Ok(())
    }

    fn close_dir(&mut self) -> Result<()> {
        if let Some(dir) = self.stack.pop() {
            set_meta_fd(self.s, &dir.fd, &dir.entry)?;
        }
        Ok(())
    }

    fn ack(&self) -> Result<()> {
        self.s.send(&Message::Committed(Committed {
            through: self.committed,
            files: self.files,
            bytes: self.bytes,
        }))
    }

    fn commit(&mut self, item: CommitItem) -> Result<()> {
        let CommitItem {
            entry: e,
            chunks,
            plan,
        } = item;
        self.sweep(Some(&e))?;
        if e.path.is_empty() {
            let fd = rustix::io::dup(&self.s.root_fd).ctx(|| "duplicating the root descriptor")?;
            self.stack.push(Dir {
                path: Vec::new(),
                fd,
                entry: e,
            });
            self.committed += 1;
            return Ok(());
        }
        self.pop_until_parent_of(&e.path)?;
        let s = self.s;
        let name = file_name(&e.path).to_vec();
        let parent_fd = self.dir_fd(parent(&e.path))?;
        match (e.kind, plan) {
            (Kind::Dir, _) => {
                match rustix::fs::mkdirat(parent_fd, os(&name), Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(err) => {
                        return Err(err).ctx(|| format!("creating directory {}", show(&e.path)));
                    }
                }
                let fd = confined::open_subdir(parent_fd, &name, &e.path)?;
                self.stack.push(Dir {
                    path: e.path.clone(),
                    fd,
                    entry: e,
                });
                self.committed += 1;
                return Ok(());
            }
            (Kind::Symlink, _) => {
                let target = e.target.clone().unwrap_or_default();
                let current = rustix::fs::readlinkat(parent_fd, os(&name), Vec::new()).ok();
                if current.as_ref().map(|c| c.as_bytes()) != Some(target.as_slice()) {
                    let tmp = temp_name(e.id);
                    let _ = rustix::fs::unlinkat(parent_fd, tmp.as_str(), AtFlags::empty());
                    rustix::fs::symlinkat(os(&target), parent_fd, tmp.as_str())
                        .ctx(|| format!("creating symlink {}", show(&e.path)))?;
                    rustix::fs::renameat(parent_fd, tmp.as_str(), parent_fd, os(&name))
                        .ctx(|| format!("placing symlink {}", show(&e.path)))?;
                }
                if s.owner {
                    rustix::fs::chownat(
                        parent_fd,
                        os(&name),
                        Some(Uid::from_raw(e.uid)),
                        Some(Gid::from_raw(e.gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .ctx(|| format!("setting the owner of {}", show(&e.path)))?;
                }
                rustix::fs::utimensat(
                    parent_fd,
                    os(&name),
                    &timestamps(&e),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .ctx(|| format!("setting the mtime of {}", show(&e.path)))?;
            }
            (Kind::File, Plan::Other) => {
                // A further name of a hard-linked file committed earlier.
                let first = e.hardlink.clone().unwrap_or_default();
                let first_dir = open_dir(&s.root_fd, parent(&first))?;
                let first_name = file_name(&first);
                let first_stat =
                    rustix::fs::statat(&first_dir, os(first_name), AtFlags::SYMLINK_NOFOLLOW)
                        .ctx(|| format!("reading {}", show(&first)))?;
                if rustix::fs::FileType::from_raw_mode(first_stat.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(MoverError::unsafe_path(
                        &e.path,
                        "hard link to something that is not a regular file",
                    ));
                }
                let same = rustix::fs::statat(parent_fd, os(&name), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| {
                        st.st_ino == first_stat.st_ino && st.st_dev == first_stat.st_dev
                    });
                if !same {
                    let tmp = temp_name(e.id);
                    let _ = rustix::fs::unlinkat(parent_fd, tmp.as_str(), AtFlags::empty());
                    rustix::fs::linkat(
                        &first_dir,
                        os(first_name),
                        parent_fd,
                        tmp.as_str(),
                        AtFlags::empty(),
                    )
                    .ctx(|| format!("creating hard link {}", show(&e.path)))?;
                    rustix::fs::renameat(parent_fd, tmp.as_str(), parent_fd, os(&name))
                        .ctx(|| format!("placing hard link {}", show(&e.path)))?;
                }
            }
            (Kind::File, Plan::InPlace) => {
                let f = open_file_read(&s.root_fd, &e.path)?.ok_or_else(|| {
                    MoverError::Protocol(format!("{} vanished from the volume", show(&e.path)))
                })?;
                let meta = f.metadata().ctx(|| format!("reading {}", show(&e.path)))?;
                let meta = if meta_differs(&e, &meta, s.owner) {
                    set_meta_fd(s, &f, &e)?;
                    f.metadata().ctx(|| format!("reading {}", show(&e.path)))?
                } else {
                    meta
                };
                self.index.append(&IndexRecord::new(
                    e.path.clone(),
                    &meta,
                    e.file_hash,
                    chunks,
                ))?;
                self.files += 1;
                self.bytes += e.size;
            }
            (Kind::File, Plan::Staged(pf)) => {
                wait_complete(s, &pf)?;
                set_meta_fd(s, &pf.file, &e)?;
                rustix::fs::renameat(
                    &s.staging.partial,
                    pf.partial_name.as_str(),
                    parent_fd,
                    os(&name),
                )
                .ctx(|| format!("placing {}", show(&e.path)))?;
                let meta = pf
                    .file
                    .metadata()
                    .ctx(|| format!("reading {}", show(&e.path)))?;
                self.index.append(&IndexRecord::new(
                    e.path.clone(),
                    &meta,
                    e.file_hash,
                    chunks,
                ))?;
                self.files += 1;
                self.bytes += e.size;
            }
        }
        self.committed += 1;
        Ok(())
    }
}

fn committer(
    s: Arc<Shared>,
    commit_rx: Receiver<Vec<CommitMsg>>,
    index: IndexWriter,
    pass: u64,
) -> Result<ReceiveReport> {
    let mut c = Committer {
        s: &s,
        disk: Walker::new(&s.root),
        peeked: None,
        stack: Vec::new(),
        index,
        committed: 0,
        files: 0,
        bytes: 0,
    };
    let end = 'outer: loop {
        let Ok(batch) = commit_rx.recv_blocking() else {
            return Err(cancelled());
        };
        for msg in batch {
            if s.cancelled() {
                return Err(cancelled());
            }
            match msg {
                CommitMsg::Entry(item) => {
                    c.commit(item)?;
                    if c.committed.is_multiple_of(64) {
                        c.ack()?;
                    }
                }
                CommitMsg::End(m) => break 'outer m,
            }
        }
        if commit_rx.is_empty() {
            c.ack()?;
        }
    };
    c.sweep(None)?;
    while !c.stack.is_empty() {
        c.close_dir()?;
    }
    c.ack()?;
    let index = c.index.finish()?;
    index.sync_all().ctx(|| "writing the index")?;
    drop(index);
    rustix::fs::syncfs(&s.root_fd).ctx(|| "flushing the volume")?;

    let root_hash = tree_root_hash(&s.root, &s.staging, s.owner)?;
    if root_hash != end.root_hash {
        return Err(MoverError::RootHashMismatch {
            sender: hex(&end.root_hash),
            receiver: hex(&root_hash),
        });
    }
    s.staging.rename(INDEX_NEW, INDEX)?;
    s.staging.clear()?;
    let record =
        serde_json::json!({ "pass": pass, "rootHash": hex(&root_hash), "entries": c.committed });
    let mut f = s.staging.create(LAST_PASS)?;
    std::io::Write::write_all(&mut f, record.to_string().as_bytes())
        .ctx(|| "writing the pass record")?;
    Ok(ReceiveReport {
        pass,
        root_hash,
        entries: c.committed,
    })
}

/// The root hash of the tree as it is on the volume now, using the freshly written index for
/// files it still describes and reading the others.
pub fn tree_root_hash(root: &Path, staging: &Staging, owner: bool) -> Result<Hash> {
    let mut index = match staging.open_read(INDEX_NEW)? {
        Some(f) => IndexReader::new(f),
        None => IndexReader::empty(),
    };
    compute_root_hash(root, owner, |path, meta| {
        Ok(index
            .lookup(path)
            .filter(|r| r.matches(meta))
            .map(|r| r.file_hash))
    })
}

/// Walks `root` and computes its root hash the way the sender does. `known` may supply a file's
/// content hash (from an index); otherwise the file is read.
pub fn compute_root_hash(
    root: &Path,
    owner: bool,
    mut known: impl FnMut(&[u8], &std::fs::Metadata) -> Result<Option<Hash>>,
) -> Result<Hash> {
    let mut walker = Walker::new(root);
    let mut links = HardlinkTracker::default();
    let mut hasher = RootHasher::new(owner);
    let mut buf = Vec::new();
    while let Some(w) = walker.next_entry()? {
        let Some(kind) = kind_of(&w.meta) else {
            continue;
        };
        let hardlink = links.check(&w.path, &w.meta);
        let mut e = entry_from_meta(w.path, kind, &w.meta);
        let abs = super::walk::abs(root, &e.path);
        match kind {
            Kind::Symlink => {
                let t = std::fs::read_link(&abs).ctx(|| format!("reading {}", abs.display()))?;
                e.target = Some(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str()).to_vec());
            }
            Kind::File if hardlink.is_some() => e.hardlink = hardlink,
            Kind::File => {
                e.file_hash = match known(&e.path, &w.meta)? {
                    Some(h) => h,
                    None => {
                        let f = File::open(&abs).ctx(|| format!("reading {}", abs.display()))?;
                        digest(f, &mut buf)
                            .ctx(|| format!("reading {}", abs.display()))?
                            .file_hash
                    }
                };
            }
            Kind::Dir => {}
        }
        hasher.add(&e);
    }
    Ok(hasher.finish())
}
