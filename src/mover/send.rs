//! The sender: walks the source tree, streams the manifest, and sends the chunks the receiver
//! says it lacks.
//!
//! Pipeline (every queue bounded, so memory does not grow with the tree):
//! walker thread → hashing pool (FastCDC + BLAKE3, one file per worker) → assembler thread
//! (restores walk order, feeds the root hash, emits `Entry`/`Chunks` frames, respects the
//! in-flight window) → TLS writer task. In the other direction the reader task turns `Need`
//! answers into jobs for the sending pool (read, zstd when it pays, frame) which feeds the same
//! writer. Reading, hashing, compressing, encrypting and (on the receiver) writing overlap.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use super::certs::{RECEIVER_NAME, TlsMaterial};
use super::chunk::{FileDigest, digest, digest_bytes};
use super::error::{IoContext, MoverError, Result};
use super::index::{IndexReader, IndexRecord, IndexWriter};
use super::manifest::{HardlinkTracker, RootHasher, entry_from_meta, hex, kind_of};
use super::progress::{Progress, ProgressSink, Tracker};
use super::protocol::{
    self, CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CHUNKS_PER_FRAME, ChunkRef, Chunks, DataHeader, Entry,
    Hash, Hello, Kind, ListDeferred, ManifestEnd, Message, VERSION, read_message, write_message,
};
use super::tls;
use super::walk::{Walker, abs};

#[derive(Clone)]
pub struct SendOptions {
    pub root: PathBuf,
    /// `host:port` of the receiver.
    pub to: String,
    /// The name the receiver's certificate must carry.
    pub server_name: String,
    pub tls: TlsMaterial,
    pub pass: u64,
    /// The migration's last pass (the receiver then drops its checkpoint).
    pub last: bool,
    /// Preserve and verify uid/gid.
    pub owner: bool,
    /// zstd level for chunks that compress; 0 never compresses.
    pub compress_level: i32,
    /// Compress only while the connection drains slower than this (bytes/s): on a fast link
    /// (loopback, 10 Gbit/s) compressing costs more CPU than the bytes it saves. `None`: always.
    pub compress_below: Option<u64>,
    /// Entries sent but not yet committed by the receiver.
    pub window: u64,
    pub threads: usize,
    pub progress: Option<ProgressSink>,
    pub progress_interval: Duration,
    pub connect_timeout: Duration,
    /// Cap on bytes per second written to the connection (to leave room on a shared link).
    pub rate_limit: Option<u64>,
    /// The sender's stat cache: files whose inode, size, mtime and ctime are unchanged since the
    /// cache was written are not read again (their chunk lists come from the cache). Replaced
    /// after each verified pass. `None`: every file is read and hashed. A cache that cannot be
    /// read or written costs time, never the pass: it is then ignored, with a warning.
    pub cache: Option<PathBuf>,
}

impl SendOptions {
    pub fn new(root: PathBuf, to: String, tls: TlsMaterial) -> Self {
        SendOptions {
            root,
            to,
            server_name: RECEIVER_NAME.to_string(),
            tls,
            pass: 1,
            last: false,
            owner: true,
            compress_level: 1,
            compress_below: Some(192 << 20),
            window: 2048,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            progress: None,
            progress_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            rate_limit: None,
            cache: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendReport {
    pub root_hash: Hash,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// Bytes written to the TLS stream.
    pub wire_bytes: u64,
    /// Bytes read from it.
    pub wire_bytes_in: u64,
    /// Chunks and their uncompressed bytes actually sent.
    pub chunks_sent: u64,
    pub chunk_bytes_sent: u64,
    /// Regular files whose chunk list came from the stat cache: not read, not hashed.
    pub cached_files: u64,
    pub elapsed_seconds: f64,
}

struct SendFile {
    path: PathBuf,
    chunks: Vec<ChunkRef>,
    offsets: Vec<u64>,
    /// The bytes that were hashed, when kept: chunks are then sent from memory, not read again.
    held: Option<Held>,
}

/// Files up to this size are read whole and kept until the receiver says what it needs (most
/// files of a tree are small; their second open and read cost more than the copy held).
const HOLD_MAX: u64 = 256 << 10;
/// Bytes kept for files in flight at most; beyond it files are read again when sent.
const HOLD_BUDGET: usize = 48 << 20;

/// A small file's bytes, counted against [`HOLD_BUDGET`] until dropped.
struct Held {
    data: Vec<u8>,
    budget: Arc<AtomicU64>,
}

impl Held {
    /// Takes `data` if the budget has room; otherwise gives it back.
    fn take(data: Vec<u8>, budget: &Arc<AtomicU64>) -> std::result::Result<Held, Vec<u8>> {
        let n = data.len() as u64;
        let granted = budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= HOLD_BUDGET as u64).then_some(used + n)
            })
            .is_ok();
        if granted {
            Ok(Held {
                data,
                budget: budget.clone(),
            })
        } else {
            Err(data)
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.data.len() as u64, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct Stats {
    /// How fast the connection takes bytes while we write (EWMA, bytes/s).
    drain_rate: AtomicU64,
    wire_bytes: AtomicU64,
    wire_bytes_in: AtomicU64,
    chunks_sent: AtomicU64,
    chunk_bytes_sent: AtomicU64,
    cached_files: AtomicU64,
}

struct Shared {
    files: Mutex<HashMap<u64, Arc<SendFile>>>,
    committed: Mutex<u64>,
    committed_cond: Condvar,
    cancelled: AtomicBool,
    stats: Stats,
    failures: tokio::sync::mpsc::UnboundedSender<MoverError>,
    /// Data batches the writer is done with, for the send workers to fill again: a fresh
    /// megabyte per batch cost a page fault and a zeroed page every 4 KiB (10% of the CPU).
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

/// A data batch is handed to the writer once it holds this much.
const BATCH: usize = 1 << 20;

impl Shared {
    fn batch(&self) -> Vec<u8> {
        self.spare
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH + CHUNK_MAX + 64))
    }

    fn recycle(&self, mut frame: Vec<u8>) {
        if frame.capacity() >= BATCH {
            frame.clear();
            let _ = self.spare.0.try_send(frame);
        }
    }

    fn fail(&self, e: MoverError) {
        let _ = self.failures.send(e);
        self.cancelled.store(true, Ordering::SeqCst);
        self.committed_cond.notify_all();
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Counts files and bytes up front (metadata only) so progress has totals and an ETA.
fn prescan(root: &Path) -> Result<(u64, u64)> {
    let mut walker = Walker::new(root);
    let (mut files, mut bytes) = (0, 0);
    let mut links = HardlinkTracker::default();
    while let Some(e) = walker.next_entry()? {
        if e.meta.is_file() && links.check(&e.path, &e.meta).is_none() {
            files += 1;
            bytes += e.meta.len();
        }
    }
    Ok((files, bytes))
}

enum Ordered {
    Ready(Entry),
    /// A regular file with content, with the `lstat` it was walked with (for the cache).
    File(Entry, Box<Metadata>, Digested),
}

enum Digested {
    /// From the stat cache: the file was not read.
    Cached(FileDigest),
    /// Being hashed with the other files of its group: result `index` of what `Group` answers.
    Hashing(Group, usize),
}

/// One hand-off per group of small files, not per file: a wake-up per file across the walker,
/// the hashers and the assembler cost more than hashing a small file.
#[derive(Clone)]
struct Group {
    id: u64,
    reply: Receiver<Vec<Result<Hashed>>>,
}

/// Small files are hashed in groups of at most this many files …
const GROUP_FILES: usize = 64;
/// … or this many bytes; a file larger than [`HOLD_MAX`] is a group of its own, so the workers
/// share large files.
const GROUP_BYTES: u64 = 1 << 20;

/// A hashed file, with its bytes when they were kept.
struct Hashed {
    digest: FileDigest,
    held: Option<Held>,
}

/// First bytes of the stat cache; a cache written with other chunking parameters is ignored.
fn cache_header() -> Vec<u8> {
    let mut h = b"sovereign-mover sender cache\n".to_vec();
    for v in [
        VERSION,
        CHUNK_MIN as u32,
        CHUNK_AVG as u32,
        CHUNK_MAX as u32,
    ] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// Opens the stat cache; missing, unreadable or from another version means an empty one (every
/// file is then read, which costs time, never correctness).
fn open_cache(path: Option<&Path>) -> IndexReader {
    let Some(path) = path else {
        return IndexReader::empty();
    };
    let Ok(mut f) = File::open(path) else {
        return IndexReader::empty();
    };
    let want = cache_header();
    let mut got = vec![0u8; want.len()];
    match f.read_exact(&mut got) {
        Ok(()) if got == want => IndexReader::new(f),
        _ => IndexReader::empty(),
    }
}

/// `<cache>.new.`: the prefix of the files a pass writes its cache to before it verifies.
fn cache_new_prefix(path: &Path) -> std::ffi::OsString {
    let mut p = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    p.push(".new.");
    p
}

/// A name of its own for this pass's new cache: a sender of an earlier attempt that is still
/// being stopped may be writing its own, and two writers of one file would interleave.
fn cache_new_path(path: &Path) -> PathBuf {
    let mut name = cache_new_prefix(path);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    name.push(format!("{}-{nanos}", std::process::id()));
    path.with_file_name(name)
}

/// Starts this pass's new cache, after removing those that passes which never verified left
/// behind (a writer still running keeps its unlinked file and fails to rename it, harmlessly).
fn create_cache(path: &Path) -> Result<(IndexWriter, PathBuf)> {
    let prefix = cache_new_prefix(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str())
                .starts_with(std::os::unix::ffi::OsStrExt::as_bytes(prefix.as_os_str()))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let new = cache_new_path(path);
    let mut f = File::create(&new).ctx(|| format!("creating {}", new.display()))?;
    f.write_all(&cache_header())
        .ctx(|| format!("writing {}", new.display()))?;
    Ok((IndexWriter::new(f, new.display().to_string()), new))
}

struct HashJob {
    /// Each file with its size at `lstat` (a hint: what is read is what counts).
    files: Vec<(PathBuf, u64)>,
    reply: Sender<Vec<Result<Hashed>>>,
}

/// The walker's group in the making: files in walk order, sent as one job.
#[derive(Default)]
struct Pending {
    files: Vec<(Entry, Box<Metadata>, PathBuf)>,
    bytes: u64,
    next_id: u64,
}

impl Pending {
    /// Sends the group's job, then its entries in order; false when the pass stopped.
    fn flush(&mut self, hash_jobs: &Sender<HashJob>, ordered: &Sender<Ordered>) -> bool {
        if self.files.is_empty() {
            return true;
        }
        let (tx, rx) = async_channel::bounded(1);
        let files = std::mem::take(&mut self.files);
        self.bytes = 0;
        let job = HashJob {
            files: files.iter().map(|(_, m, p)| (p.clone(), m.len())).collect(),
            reply: tx,
        };
        if hash_jobs.send_blocking(job).is_err() {
            return false;
        }
        let group = Group {
            id: self.next_id,
            reply: rx,
        };
        self.next_id += 1;
        for (i, (entry, meta, _)) in files.into_iter().enumerate() {
            let item = Ordered::File(entry, meta, Digested::Hashing(group.clone(), i));
            if ordered.send_blocking(item).is_err() {
                return false;
            }
        }
        true
    }
}

fn walker_thread(
    root: PathBuf,
    hash_jobs: Sender<HashJob>,
    ordered: Sender<Ordered>,
    shared: Arc<Shared>,
    mut cache: IndexReader,
) -> Result<()> {
    let mut walker = Walker::new(&root);
    let mut links = HardlinkTracker::default();
    let mut group = Pending::default();
    while let Some(w) = walker.next_entry()? {
        if shared.cancelled() {
            return Ok(());
        }
        let Some(kind) = kind_of(&w.meta) else {
            warn!(path = %String::from_utf8_lossy(&w.path), "skipping a special file (device, FIFO or socket)");
            continue;
        };
        let hardlink = links.check(&w.path, &w.meta);
        let mut entry = entry_from_meta(w.path, kind, &w.meta);
        let item = match kind {
            Kind::Symlink => {
                let path = abs(&root, &entry.path);
                let target =
                    std::fs::read_link(&path).ctx(|| format!("reading {}", path.display()))?;
                entry.target =
                    Some(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec());
                Ordered::Ready(entry)
            }
            Kind::File if hardlink.is_some() => {
                entry.hardlink = hardlink;
                Ordered::Ready(entry)
            }
            Kind::File => match cache.lookup(&entry.path).filter(|r| r.matches(&w.meta)) {
                Some(rec) => {
                    shared.stats.cached_files.fetch_add(1, Ordering::Relaxed);
                    let digest = FileDigest {
                        chunks: rec.chunks,
                        file_hash: rec.file_hash,
                        size: rec.size,
                    };
                    Ordered::File(entry, Box::new(w.meta), Digested::Cached(digest))
                }
                None => {
                    let path = abs(&root, &entry.path);
                    let size = w.meta.len();
                    if size > HOLD_MAX && !group.flush(&hash_jobs, &ordered) {
                        return Ok(());
                    }
                    group.bytes += size;
                    group.files.push((entry, Box::new(w.meta), path));
                    if (size > HOLD_MAX
                        || group.files.len() >= GROUP_FILES
                        || group.bytes >= GROUP_BYTES)
                        && !group.flush(&hash_jobs, &ordered)
                    {
                        return Ok(());
                    }
                    continue;
                }
            },
            Kind::Dir => Ordered::Ready(entry),
        };
        // Entries go out in walk order: the files grouped so far first.
        if !group.flush(&hash_jobs, &ordered) || ordered.send_blocking(item).is_err() {
            return Ok(());
        }
    }
    group.flush(&hash_jobs, &ordered);
    Ok(())
}

fn hash_worker(jobs: Receiver<HashJob>, budget: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    while let Ok(job) = jobs.recv_blocking() {
        let results = job
            .files
            .iter()
            .map(|(path, size)| {
                hash_file(path, *size, &mut buf, &budget)
                    .ctx(|| format!("reading {}", path.display()))
            })
            .collect();
        let _ = job.reply.send_blocking(results);
    }
}

/// A small file is read whole, hashed from memory and kept (budget permitting) so that sending
/// it needs no second read: the bytes sent are exactly the bytes hashed, even if the file
/// changes meanwhile. Larger files stream through `buf` and are read again when sent (the
/// receiver then rejects chunks that no longer match their hash).
fn hash_file(
    path: &Path,
    size: u64,
    buf: &mut Vec<u8>,
    budget: &Arc<AtomicU64>,
) -> std::io::Result<Hashed> {
    let mut f = File::open(path)?;
    if size > HOLD_MAX {
        return Ok(Hashed {
            digest: digest(f, buf)?,
            held: None,
        });
    }
    // One byte more than expected shows a file that grew since `lstat`.
    let mut data = Vec::with_capacity(size as usize + 1);
    (&mut f).take(HOLD_MAX + 1).read_to_end(&mut data)?;
    if data.len() as u64 > HOLD_MAX {
        // It grew past the limit: hash it the streaming way, from the start.
        drop(data);
        return Ok(Hashed {
            digest: digest(File::open(path)?, buf)?,
            held: None,
        });
    }
    let digest = digest_bytes(&data);
    Ok(Hashed {
        digest,
        held: Held::take(data, budget).ok(),
    })
}

struct AssemblerOptions {
    owner: bool,
    window: u64,
    /// Send `ListDeferred` instead of chunk lists (the receiver asks for those it needs).
    defer_lists: bool,
}

fn assembler_thread(
    root: PathBuf,
    ordered: Receiver<Ordered>,
    out: Sender<Vec<u8>>,
    shared: Arc<Shared>,
    o: AssemblerOptions,
    mut cache: Option<IndexWriter>,
) -> Result<(Hash, Option<IndexWriter>)> {
    let AssemblerOptions {
        owner,
        window,
        defer_lists,
    } = o;
    let mut root_hasher = RootHasher::new(owner);
    let mut id = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    // The results of the group being assembled (its members arrive one after the other).
    let mut group: Option<(u64, Vec<Option<Result<Hashed>>>)> = None;
    while let Ok(item) = ordered.recv_blocking() {
        let (mut entry, digest) = match item {
            Ordered::Ready(e) => (e, None),
            Ordered::File(e, meta, digested) => {
                let (d, h) = match digested {
                    Digested::Cached(d) => (d, None),
                    Digested::Hashing(g, index) => {
                        if group.as_ref().is_none_or(|(id, _)| *id != g.id) {
                            let results = g
                                .reply
                                .recv_blocking()
                                .map_err(|_| MoverError::Cancelled("hashing stopped".into()))?;
                            group = Some((g.id, results.into_iter().map(Some).collect()));
                        }
                        let hashed = group
                            .as_mut()
                            .and_then(|(_, r)| r.get_mut(index))
                            .and_then(Option::take)
                            .ok_or_else(|| {
                                MoverError::Cancelled("a hashed file went missing".into())
                            })??;
                        (hashed.digest, hashed.held)
                    }
                };
                // A file that changed size while it was read is not cached: its `lstat` does
                // not describe what was hashed (a change of the same size moves the ctime
                // past the recorded one, which the next pass notices).
                if let Some(c) = cache.as_mut()
                    && d.size == meta.len()
                    && let Err(err) = c.append(&IndexRecord::new(
                        e.path.clone(),
                        &meta,
                        d.file_hash,
                        d.chunks.clone(),
                    ))
                {
                    // A full cache volume: the pass goes on without writing a cache.
                    warn!(error = %err, "the stat cache cannot be written; the next pass reads every file again");
                    cache = None;
                }
                (e, Some((d, h)))
            }
        };
        entry.id = id;
        if let Some((d, _)) = &digest {
            // What was read is what is sent: if the file grew or shrank since `lstat`, the
            // chunks are the truth (a snapshot avoids this; `Quiesce` mode repeats the pass).
            entry.size = d.size;
            entry.file_hash = d.file_hash;
            entry.chunk_count = d.chunks.len() as u64;
        }
        root_hasher.add(&entry);

        // Wait for room in the window: the receiver sizes its queues for it, and it bounds
        // what both sides hold for files in flight. What is pending goes out first: the
        // receiver cannot commit entries it has not seen.
        if id >= window / 2 && !pending.is_empty() {
            let full = shared
                .committed
                .lock()
                .map_or(true, |c| id >= *c + window / 2);
            if full && out.send_blocking(std::mem::take(&mut pending)).is_err() {
                return Err(MoverError::Cancelled("connection closed".into()));
            }
        }
        {
            let mut committed = shared
                .committed
                .lock()
                .map_err(|_| MoverError::Cancelled("lock poisoned".into()))?;
            while id >= *committed + window {
                if shared.cancelled() {
                    return Err(MoverError::Cancelled("window wait".into()));
                }
                committed = shared
                    .committed_cond
                    .wait_timeout(committed, Duration::from_millis(200))
                    .map_err(|_| MoverError::Cancelled("lock poisoned".into()))?
                    .0;
            }
        }

        let (chunks, held) = digest.map(|(d, h)| (d.chunks, h)).unwrap_or_default();
        if entry.kind == Kind::File && entry.hardlink.is_none() {
            let mut offsets = Vec::with_capacity(chunks.len());
            let mut off = 0u64;
            for c in &chunks {
                offsets.push(off);
                off += u64::from(c.len);
            }
            let file = Arc::new(SendFile {
                path: abs(&root, &entry.path),
                chunks: chunks.clone(),
                offsets,
                held,
            });
            if let Ok(mut files) = shared.files.lock() {
                files.insert(id, file);
            }
        }
        let deferred = defer_lists && entry.hardlink.is_none() && !chunks.is_empty();
        pending.extend(protocol::encode(&Message::Entry(entry))?);
        if deferred {
            pending.extend(protocol::encode(&Message::ListDeferred(ListDeferred {
                id,
            }))?);
        } else {
            encode_chunk_list(&mut pending, id, &chunks)?;
        }
        if (pending.len() >= 64 << 10 || ordered.is_empty())
            && out.send_blocking(std::mem::take(&mut pending)).is_err()
        {
            return Err(MoverError::Cancelled("connection closed".into()));
        }
        id += 1;
    }
    if shared.cancelled() {
        return Err(MoverError::Cancelled("manifest".into()));
    }
    let root_hash = root_hasher.finish();
    pending.extend(protocol::encode(&Message::ManifestEnd(ManifestEnd {
        entries: id,
        root_hash,
    }))?);
    out.send_blocking(pending)
        .map_err(|_| MoverError::Cancelled("connection closed".into()))?;
    Ok((root_hash, cache))
}

/// Appends the `Chunks` frames of one file.
fn encode_chunk_list(buf: &mut Vec<u8>, id: u64, chunks: &[ChunkRef]) -> Result<()> {
    for (n, batch) in chunks.chunks(CHUNKS_PER_FRAME).enumerate() {
        buf.extend(protocol::encode(&Message::Chunks(Chunks {
            id,
            first: (n * CHUNKS_PER_FRAME) as u64,
            chunks: batch.to_vec(),
        }))?);
    }
    Ok(())
}

/// The `Chunks` frames of the deferred lists the receiver asked for.
fn chunk_lists(shared: &Shared, ids: &[u64]) -> Result<Vec<u8>> {
    let mut frames = Vec::new();
    for &id in ids {
        let file = shared.files.lock().ok().and_then(|f| f.get(&id).cloned());
        let Some(file) = file else {
            return Err(MoverError::Protocol(format!(
                "the receiver asked for the chunk list of entry {id}, which is not a file in flight"
            )));
        };
        encode_chunk_list(&mut frames, id, &file.chunks)?;
    }
    Ok(frames)
}

struct NeedJob {
    id: u64,
    file: Arc<SendFile>,
    ranges: Vec<(u64, u64)>,
}

/// Compresses only when it pays: a 4 KiB probe from the middle must shrink by 10% before the
/// whole chunk is tried, and the result is kept only if at least 5% smaller. Incompressible
/// data (media, encrypted, already compressed) thus costs one tiny probe, not a full attempt.
fn compress_if_it_pays(
    compressor: &mut Option<zstd::bulk::Compressor<'static>>,
    data: &[u8],
) -> Option<Vec<u8>> {
    let c = compressor.as_mut()?;
    if data.len() < 1024 {
        return None;
    }
    if data.len() > 16 << 10 {
        let mid = data.len() / 2 - 2048;
        let probe = c.compress(&data[mid..mid + 4096]).ok()?;
        if probe.len() * 10 > 4096 * 9 {
            return None;
        }
    }
    let out = c.compress(data).ok()?;
    (out.len() * 100 < data.len() * 95).then_some(out)
}

/// `Need` answers handed to a send worker at once, at most (the other worker takes the next).
const NEED_BATCH: usize = 16;

fn send_worker(
    jobs: Receiver<Vec<NeedJob>>,
    out: Sender<Vec<u8>>,
    shared: Arc<Shared>,
    level: i32,
    compress_below: Option<u64>,
) -> Result<()> {
    let mut compressor = if level != 0 {
        Some(zstd::bulk::Compressor::new(level).ctx(|| "creating the zstd compressor")?)
    } else {
        None
    };
    let mut raw = Vec::with_capacity(CHUNK_MAX);
    let mut batch = shared.batch();
    loop {
        // Small chunks of many files travel together, but never sleep on a held batch: the
        // receiver may be waiting for exactly that data.
        let group = match jobs.try_recv() {
            Ok(group) => group,
            Err(async_channel::TryRecvError::Empty) => {
                if !batch.is_empty()
                    && out
                        .send_blocking(std::mem::replace(&mut batch, shared.batch()))
                        .is_err()
                {
                    return Ok(());
                }
                match jobs.recv_blocking() {
                    Ok(group) => group,
                    Err(_) => break,
                }
            }
            Err(async_channel::TryRecvError::Closed) => break,
        };
        for job in group {
            let f = &job.file;
            let file = match &f.held {
                Some(_) => None,
                None => Some(File::open(&f.path).ctx(|| format!("opening {}", f.path.display()))?),
            };
            for &(start, count) in &job.ranges {
                for index in start..start + count {
                    if shared.cancelled() {
                        return Ok(());
                    }
                    let i = index as usize;
                    let (Some(c), Some(&off)) = (f.chunks.get(i), f.offsets.get(i)) else {
                        return Err(MoverError::Protocol(format!(
                            "the receiver asked for chunk {index} of {}, which has {} chunks",
                            f.path.display(),
                            f.chunks.len()
                        )));
                    };
                    let data: &[u8] = match (&f.held, &file) {
                        (Some(h), _) => h
                            .data
                            .get(off as usize..off as usize + c.len as usize)
                            .ok_or_else(|| {
                                MoverError::Protocol(format!(
                                    "chunk {index} of {} lies outside the bytes read",
                                    f.path.display()
                                ))
                            })?,
                        (None, Some(file)) => {
                            raw.resize(c.len as usize, 0);
                            file.read_exact_at(&mut raw, off).ctx(|| {
                                format!(
                                    "reading {} (did it shrink during the pass?)",
                                    f.path.display()
                                )
                            })?;
                            &raw
                        }
                        (None, None) => return Err(cancelled_send()),
                    };
                    let link_is_the_limit = compress_below.is_none_or(|limit| {
                        shared.stats.drain_rate.load(Ordering::Relaxed) < limit
                    });
                    let compressed = if link_is_the_limit {
                        compress_if_it_pays(&mut compressor, data)
                    } else {
                        None
                    };
                    let header = DataHeader {
                        id: job.id,
                        index,
                        compressed: compressed.is_some(),
                    };
                    protocol::append_data(
                        &mut batch,
                        &header,
                        compressed.as_deref().unwrap_or(data),
                    )?;
                    shared.stats.chunks_sent.fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .chunk_bytes_sent
                        .fetch_add(u64::from(c.len), Ordering::Relaxed);
                    if batch.len() >= BATCH
                        && out
                            .send_blocking(std::mem::replace(&mut batch, shared.batch()))
                            .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.send_blocking(batch);
    }
    Ok(())
}

fn cancelled_send() -> MoverError {
    MoverError::Cancelled("no source for a chunk".into())
}

fn spawn<T: Send + 'static>(
    name: &str,
    shared: &Arc<Shared>,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<std::thread::JoinHandle<Option<T>>> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || match f() {
            Ok(v) => Some(v),
            Err(e) => {
                shared.fail(e);
                None
            }
        })
        .ctx(|| format!("starting the {name} thread"))
}

/// Runs one pass: returns when the receiver reports the same root hash, or with the reason.
pub async fn send(opts: SendOptions) -> Result<SendReport> {
    let started = Instant::now();
    let root = opts.root.clone();
    let (files_total, bytes_total) = tokio::task::spawn_blocking(move || prescan(&root))
        .await
        .map_err(|e| MoverError::Cancelled(e.to_string()))??;
    let tracker = Tracker::new(opts.pass, files_total, bytes_total);
    info!(files_total, bytes_total, to = %opts.to, pass = opts.pass, "starting pass");

    let config = tls::client_config(&opts.tls)?;
    let tcp = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(&opts.to))
        .await
        .map_err(|_| MoverError::Timeout(format!("connecting to {}", opts.to)))?
        .map_err(|e| MoverError::io(format!("connecting to {}", opts.to), e))?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(
        opts.connect_timeout,
        TlsConnector::from(config).connect(tls::server_name(&opts.server_name)?, tcp),
    )
    .await
    .map_err(|_| MoverError::Timeout(format!("TLS handshake with {}", opts.to)))?
    .map_err(|e| MoverError::Tls(format!("handshake with {} failed: {e}", opts.to)))?;
    let (mut rd, wr) = tokio::io::split(stream);
    let mut wr = BufWriter::with_capacity(256 << 10, wr);

    write_message(
        &mut wr,
        &Message::Hello(Hello {
            version: VERSION,
            pass: opts.pass,
            owner: opts.owner,
            chunk_min: CHUNK_MIN as u32,
            chunk_avg: CHUNK_AVG as u32,
            chunk_max: CHUNK_MAX as u32,
            last: opts.last,
        }),
    )
    .await?;
    // With TLS 1.3 the receiver judges our certificate after our side of the handshake is done,
    // so a refusal shows up here, as an alert on the first read.
    let defer_lists = match read_message(&mut rd, "waiting for the receiver's welcome").await {
        Ok(Message::Welcome(w)) if w.version == VERSION => w.defer_chunk_lists,
        Ok(Message::Welcome(w)) => {
            return Err(MoverError::Protocol(format!(
                "the receiver speaks protocol version {}, we speak {VERSION}",
                w.version
            )));
        }
        Ok(Message::Abort(a)) => return Err(MoverError::PeerAborted(a.reason)),
        Ok(other) => {
            return Err(MoverError::Protocol(format!(
                "expected Welcome, got {}",
                other.name()
            )));
        }
        Err(MoverError::Io { source, .. }) => {
            return Err(MoverError::Tls(format!(
                "the receiver refused the connection: {source}"
            )));
        }
        Err(e) => return Err(e),
    };

    let cache_in = open_cache(opts.cache.as_deref());
    // A cache that cannot be written (a full or read-only volume) is a slower next pass, not a
    // failed one.
    let (cache_out, cache_new) = match opts.cache.as_deref().map(create_cache) {
        Some(Ok((w, new))) => (Some(w), Some(new)),
        Some(Err(e)) => {
            warn!(error = %e, "the stat cache cannot be written; the next pass reads every file again");
            (None, None)
        }
        None => (None, None),
    };
    let (fail_tx, mut fail_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        files: Mutex::new(HashMap::new()),
        committed: Mutex::new(0),
        committed_cond: Condvar::new(),
        cancelled: AtomicBool::new(false),
        stats: Stats {
            // Unknown until measured: compress meanwhile (a small pass never measures, and
            // there the bytes matter more than the CPU).
            drain_rate: AtomicU64::new(0),
            ..Stats::default()
        },
        failures: fail_tx,
        spare: async_channel::bounded(32),
    });
    let (out_tx, out_rx) = async_channel::bounded::<Vec<u8>>(16);
    let (hash_tx, hash_rx) = async_channel::bounded::<HashJob>(opts.threads * 2);
    let (ord_tx, ord_rx) = async_channel::bounded::<Ordered>(256);
    let (need_tx, need_rx) = async_channel::unbounded::<Vec<NeedJob>>();

    let writer_stats = shared.clone();
    let rate_limit = opts.rate_limit.filter(|r| *r > 0);
    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let mut written = 0u64;
        let (mut window_bytes, mut window_time) = (0u64, Duration::ZERO);
        while let Ok(frame) = out_rx.recv().await {
            let t0 = Instant::now();
            if let Some(rate) = rate_limit {
                written += frame.len() as u64;
                let due = Duration::from_secs_f64(written as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    wr.flush()
                        .await
                        .map_err(|e| MoverError::io("sending to the receiver", e))?;
                    tokio::time::sleep(wait).await;
                }
            }
            wr.write_all(&frame)
                .await
                .map_err(|e| MoverError::io("sending to the receiver", e))?;
            writer_stats
                .stats
                .wire_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
            let frame_len = frame.len();
            writer_stats.recycle(frame);
            if out_rx.is_empty() {
                wr.flush()
                    .await
                    .map_err(|e| MoverError::io("sending to the receiver", e))?;
            }
            // Time spent handing bytes to the connection, not waiting for frames: its rate
            // is what the link (or the receiver) can take.
            window_bytes += frame_len as u64;
            window_time += t0.elapsed();
            if window_bytes >= 16 << 20 {
                let rate = (window_bytes as f64 / window_time.as_secs_f64().max(1e-6)) as u64;
                let old = writer_stats.stats.drain_rate.load(Ordering::Relaxed);
                let ewma = if old == 0 {
                    rate
                } else {
                    (old / 2).saturating_add(rate / 2)
                };
                writer_stats.stats.drain_rate.store(ewma, Ordering::Relaxed);
                (window_bytes, window_time) = (0, Duration::ZERO);
            }
        }
        wr.flush()
            .await
            .map_err(|e| MoverError::io("sending to the receiver", e))?;
        Ok::<_, MoverError>(wr)
    });

    let mut threads = Vec::new();
    {
        let (root, s) = (opts.root.clone(), shared.clone());
        threads.push(spawn("mover-walk", &shared, move || {
            walker_thread(root, hash_tx, ord_tx, s, cache_in)
        })?);
    }
    let budget = Arc::new(AtomicU64::new(0));
    for n in 0..opts.threads.max(1) {
        let (jobs, budget) = (hash_rx.clone(), budget.clone());
        threads.push(spawn(&format!("mover-hash-{n}"), &shared, move || {
            hash_worker(jobs, budget);
            Ok(())
        })?);
    }
    drop(hash_rx);
    let assembler = {
        let (root, out, s) = (opts.root.clone(), out_tx.clone(), shared.clone());
        let o = AssemblerOptions {
            owner: opts.owner,
            window: opts.window.max(1),
            defer_lists,
        };
        spawn("mover-manifest", &shared, move || {
            assembler_thread(root, ord_rx, out, s, o, cache_out)
        })?
    };
    for n in 0..opts.threads.max(1) {
        let (jobs, out, s) = (need_rx.clone(), out_tx.clone(), shared.clone());
        let (level, below) = (opts.compress_level, opts.compress_below);
        threads.push(spawn(&format!("mover-send-{n}"), &shared, move || {
            send_worker(jobs, out, s, level, below)
        })?);
    }
    drop(need_rx);
    // Kept for the chunk lists the receiver asks for; dropped when the pass ends so the writer
    // sees the end of its input.
    let lists_tx = out_tx;

    let emit = |p: &Progress| {
        if let Some(sink) = &opts.progress {
            sink(p);
        }
    };
    let mut last_emit = Instant::now();
    let (mut files_done, mut bytes_done) = (0u64, 0u64);
    // Frames are read in their own task: `read_message` is not cancel-safe, and the loop
    // below also wakes up for the progress timer.
    let (msg_tx, mut msg_rx) = tokio::sync::mpsc::channel::<Result<Message>>(64);
    let reader_shared = shared.clone();
    let reader_need = need_tx.clone();
    let reader = tokio::spawn(async move {
        let need_tx = reader_need;
        let mut rd = tokio::io::BufReader::with_capacity(64 << 10, rd);
        // The receiver's answers (`Need`, one per file) go to the send workers from here, in
        // batches of what arrived together: a hop per file through the main loop and a
        // wake-up per file of a send worker cost more than sending a small file.
        let mut jobs: Vec<NeedJob> = Vec::new();
        loop {
            let more = protocol::complete_frame_buffered(rd.buffer());
            if !jobs.is_empty()
                && (!more || jobs.len() >= NEED_BATCH)
                && need_tx.send(std::mem::take(&mut jobs)).await.is_err()
            {
                return;
            }
            let m = read_message(&mut rd, "transferring").await;
            if let Ok(msg) = &m {
                // Answers are small; re-encoding them is the simplest exact count.
                let n = protocol::encode(msg).map_or(0, |f| f.len() as u64);
                reader_shared
                    .stats
                    .wire_bytes_in
                    .fetch_add(n, Ordering::Relaxed);
            }
            let m = match m {
                Ok(Message::Need(need)) => {
                    let file = reader_shared
                        .files
                        .lock()
                        .ok()
                        .and_then(|mut f| f.remove(&need.id));
                    match file {
                        // Nothing needed: the file leaves the in-flight set, that is all.
                        Some(_) if need.ranges.is_empty() => continue,
                        Some(file) => {
                            jobs.push(NeedJob {
                                id: need.id,
                                file,
                                ranges: need.ranges,
                            });
                            continue;
                        }
                        None => Err(MoverError::Protocol(format!(
                            "the receiver answered for entry {} which is not a file in flight",
                            need.id
                        ))),
                    }
                }
                other => other,
            };
            // What was asked before this message is on its way before it is acted on.
            if !jobs.is_empty() && need_tx.send(std::mem::take(&mut jobs)).await.is_err() {
                return;
            }
            let stop = m.is_err();
            if msg_tx.send(m).await.is_err() || stop {
                return;
            }
        }
    });
    let mut ticker = tokio::time::interval(opts.progress_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: Result<(Hash, u64)> = loop {
        let msg = tokio::select! {
            m = msg_rx.recv() => m.unwrap_or_else(|| Err(MoverError::Closed("transferring".into()))),
            Some(e) = fail_rx.recv() => Err(e),
            _ = ticker.tick() => {
                // Also on a timer: a large file commits only at its end.
                if last_emit.elapsed() >= opts.progress_interval {
                    last_emit = Instant::now();
                    emit(&tracker.event(
                        files_done,
                        bytes_done,
                        shared.stats.wire_bytes.load(Ordering::Relaxed),
                        shared.stats.wire_bytes_in.load(Ordering::Relaxed),
                    ));
                }
                continue;
            }
        };
        match msg {
            Ok(Message::Committed(c)) => {
                if let Ok(mut committed) = shared.committed.lock() {
                    *committed = c.through;
                }
                shared.committed_cond.notify_all();
                files_done = c.files;
                bytes_done = c.bytes;
                if last_emit.elapsed() >= opts.progress_interval {
                    last_emit = Instant::now();
                    emit(&tracker.event(
                        files_done,
                        bytes_done,
                        shared.stats.wire_bytes.load(Ordering::Relaxed),
                        shared.stats.wire_bytes_in.load(Ordering::Relaxed),
                    ));
                }
            }
            Ok(Message::WantLists(want)) => match chunk_lists(&shared, &want.ids) {
                Ok(frames) => {
                    if lists_tx.send(frames).await.is_err() {
                        break Err(MoverError::Closed("sending chunk lists".into()));
                    }
                }
                Err(e) => break Err(e),
            },
            Ok(Message::PassResult(r)) => break Ok((r.root_hash, r.entries)),
            Ok(Message::Abort(a)) => break Err(MoverError::PeerAborted(a.reason)),
            Ok(other) => {
                break Err(MoverError::Protocol(format!(
                    "unexpected {} from the receiver",
                    other.name()
                )));
            }
            Err(e) => break Err(e),
        }
    };
    need_tx.close();
    drop(lists_tx);

    let (receiver_hash, entries) = match result {
        Ok(r) => r,
        Err(e) => {
            shared.cancelled.store(true, Ordering::SeqCst);
            shared.committed_cond.notify_all();
            // Prefer the receiver's reason if it sent one just before closing.
            let e = match e {
                MoverError::Closed(_) | MoverError::Io { .. } => {
                    match tokio::time::timeout(Duration::from_secs(2), msg_rx.recv()).await {
                        Ok(Some(Ok(Message::Abort(a)))) => MoverError::PeerAborted(a.reason),
                        _ => e,
                    }
                }
                e => e,
            };
            writer.abort();
            reader.abort();
            return Err(e);
        }
    };
    let (sender_hash, cache) = tokio::task::spawn_blocking(move || assembler.join())
        .await
        .map_err(|e| MoverError::Cancelled(e.to_string()))?
        .map_err(|_| MoverError::Cancelled("manifest thread panicked".into()))?
        .ok_or_else(|| MoverError::Cancelled("manifest thread failed".into()))?;
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    reader.abort();
    if let Ok(Ok(mut wr)) = writer.await {
        let _ = wr.shutdown().await;
    }
    if sender_hash != receiver_hash {
        return Err(MoverError::RootHashMismatch {
            sender: hex(&sender_hash),
            receiver: hex(&receiver_hash),
        });
    }
    if let (Some(new), Some(path)) = (cache_new, &opts.cache) {
        // Only after a verified pass: a cache from a pass that failed may describe a tree the
        // next pass should read again anyway. The pass itself is verified whatever happens here.
        let replaced = cache.map(|c| {
            c.finish().and_then(|_| {
                std::fs::rename(&new, path).ctx(|| format!("replacing {}", path.display()))
            })
        });
        if !matches!(replaced, Some(Ok(()))) {
            // Given up while writing (already said), or failing now: the old cache stays.
            let _ = std::fs::remove_file(&new);
        }
        if let Some(Err(e)) = replaced {
            warn!(error = %e, "the stat cache was not updated; the next pass reads the files it lacks");
        }
    }
    let report = SendReport {
        root_hash: sender_hash,
        entries,
        files: files_done,
        bytes: bytes_done,
        wire_bytes: shared.stats.wire_bytes.load(Ordering::Relaxed),
        wire_bytes_in: shared.stats.wire_bytes_in.load(Ordering::Relaxed),
        chunks_sent: shared.stats.chunks_sent.load(Ordering::Relaxed),
        chunk_bytes_sent: shared.stats.chunk_bytes_sent.load(Ordering::Relaxed),
        cached_files: shared.stats.cached_files.load(Ordering::Relaxed),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let mut done = tracker.event(
        files_total,
        bytes_total,
        report.wire_bytes,
        report.wire_bytes_in,
    );
    done.event = "verified";
    done.files_done = files_done;
    done.bytes_done = bytes_done;
    done.root_hash = Some(hex(&sender_hash));
    done.receiver_root_hash = Some(hex(&receiver_hash));
    done.chunks_sent = Some(report.chunks_sent);
    done.chunk_bytes_sent = Some(report.chunk_bytes_sent);
    done.cached_files = Some(report.cached_files);
    emit(&done);
    debug!(?report, "pass verified");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mover::chunk::chunk_hash;

    use crate::mover::chunk::tests::pseudo_random as noise;

    /// Hashes `path` like the pool does, rewrites the file, then sends every chunk: returns the
    /// chunk list and the payloads that went out.
    fn hash_change_send(path: &Path, size: usize) -> (Vec<ChunkRef>, Vec<Vec<u8>>) {
        std::fs::write(path, noise(size, 1)).unwrap();
        let budget = Arc::new(AtomicU64::new(0));
        let hashed = hash_file(path, size as u64, &mut Vec::new(), &budget).unwrap();
        // The file changes (same size) after it was hashed and before it is sent.
        std::fs::write(path, noise(size, 2)).unwrap();

        let chunks = hashed.digest.chunks.clone();
        let mut offsets = Vec::new();
        let mut off = 0u64;
        for c in &chunks {
            offsets.push(off);
            off += u64::from(c.len);
        }
        let (fail_tx, _fail_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            files: Mutex::new(HashMap::new()),
            committed: Mutex::new(0),
            committed_cond: Condvar::new(),
            cancelled: AtomicBool::new(false),
            stats: Stats::default(),
            failures: fail_tx,
            spare: async_channel::bounded(4),
        });
        let (jobs_tx, jobs_rx) = async_channel::unbounded();
        let (out_tx, out_rx) = async_channel::unbounded();
        jobs_tx
            .send_blocking(vec![NeedJob {
                id: 0,
                file: Arc::new(SendFile {
                    path: path.to_path_buf(),
                    chunks: chunks.clone(),
                    offsets,
                    held: hashed.held,
                }),
                ranges: vec![(0, chunks.len() as u64)],
            }])
            .unwrap();
        jobs_tx.close();
        // Level 0: payloads are the raw chunk bytes.
        send_worker(jobs_rx, out_tx, shared, 0, None).unwrap();
        let mut payloads = Vec::new();
        while let Ok(frames) = out_rx.try_recv() {
            let mut rest = &frames[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                let msg = protocol::decode(rest[4..4 + len].to_vec()).unwrap();
                payloads.push(msg.data_payload().unwrap().to_vec());
                rest = &rest[4 + len..];
            }
        }
        assert_eq!(budget.load(Ordering::Relaxed), 0, "held bytes released");
        (chunks, payloads)
    }

    #[test]
    fn a_small_file_changed_after_hashing_is_sent_as_it_was_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let (chunks, payloads) = hash_change_send(&dir.path().join("small"), 100 << 10);
        assert_eq!(chunks.len(), payloads.len());
        for (c, p) in chunks.iter().zip(&payloads) {
            assert_eq!(chunk_hash(p), c.hash, "what is sent is what was hashed");
        }
    }

    #[test]
    fn a_large_file_changed_after_hashing_sends_chunks_the_receiver_rejects() {
        // Read again when sent: the new bytes go out under the old hashes, which the receiver
        // checks per chunk (HashMismatch), so the pass fails instead of verifying wrongly.
        let dir = tempfile::tempdir().unwrap();
        let size = (HOLD_MAX + (300 << 10)) as usize;
        let (chunks, payloads) = hash_change_send(&dir.path().join("large"), size);
        assert_eq!(chunks.len(), payloads.len());
        assert!(
            chunks
                .iter()
                .zip(&payloads)
                .all(|(c, p)| chunk_hash(p) != c.hash)
        );
    }
}
