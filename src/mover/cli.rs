//! `sovereign mover certs|send|receive`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::telemetry::logging::LogFormat;

use super::certs::{self, RECEIVER_NAME, Role};
use super::error::{MoverError, Result};
use super::manifest::hex;
use super::progress::Progress;
use super::receive::{self, ReceiveOptions};
use super::send::{self, SendOptions};

#[derive(Args, Debug)]
pub struct MoverArgs {
    #[command(subcommand)]
    pub command: MoverCommand,
    /// Log format on stderr (stdout carries the sender's progress).
    #[arg(long, value_enum, default_value_t, global = true)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum MoverCommand {
    /// Write a fresh migration CA certificate and the sender's and receiver's certificates and keys.
    Certs(CertsArgs),
    /// Send a tree to a receiver; exits 0 once both root hashes match. Progress as JSON lines on stdout.
    Send(SendArgs),
    /// Receive trees from an authenticated sender into a directory.
    Receive(ReceiveArgs),
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// Name of the migration, recorded in the CA's subject.
    #[arg(long, default_value = "local")]
    pub migration: String,
    #[arg(long, default_value_t = 30)]
    pub validity_days: u32,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Receiver address, host:port.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub root: PathBuf,
    /// Directory with ca.crt, sender.crt and sender.key.
    #[arg(long)]
    pub certs: PathBuf,
    /// Name the receiver's certificate must carry (not its address).
    #[arg(long, default_value = RECEIVER_NAME)]
    pub server_name: String,
    /// Pass number, reported in progress (the operator counts pre-copy and final passes).
    #[arg(long, default_value_t = 1)]
    pub pass: u64,
    /// The migration's last pass: once it verifies, the receiver removes its checkpoint directory
    /// from the volume.
    #[arg(long = "final")]
    pub last: bool,
    /// zstd level for compressible chunks; 0 disables compression.
    #[arg(long, default_value_t = 1)]
    pub compress_level: i32,
    /// Compress only while the connection takes fewer than this many MiB/s (faster links are
    /// better served raw); 0 compresses whatever the link.
    #[arg(long, default_value_t = 192)]
    pub compress_below_mib: u64,
    /// Do not preserve or verify file owners (uid/gid).
    #[arg(long)]
    pub no_owner: bool,
    /// Worker threads for hashing and for sending (each).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 1.0)]
    pub progress_interval: f64,
    /// Limit on the bytes sent per second, in MiB/s.
    #[arg(long)]
    pub rate_limit_mib: Option<f64>,
    /// Stat cache of the source (a file, written after each verified pass): files whose inode,
    /// size, mtime and ctime did not change since are not read and hashed again. Keep it off the
    /// source volume (which may be read-only) and with the sender across passes.
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {
    /// Address to listen on, host:port.
    #[arg(long)]
    pub listen: String,
    #[arg(long)]
    pub root: PathBuf,
    /// Directory with ca.crt, receiver.crt and receiver.key.
    #[arg(long)]
    pub certs: PathBuf,
    /// Exit 0 after one verified pass.
    #[arg(long)]
    pub once: bool,
    /// Worker threads writing chunks.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds a connection may take to complete its TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
}

pub async fn run(args: MoverArgs) -> Result<()> {
    crate::telemetry::logging::init(args.log_format);
    match args.command {
        MoverCommand::Certs(a) => {
            let set = certs::generate(&a.migration, a.validity_days)?;
            certs::write_dir(&set, &a.out)?;
            eprintln!(
                "wrote the migration CA and the sender and receiver certificates to {}",
                a.out.display()
            );
            Ok(())
        }
        MoverCommand::Send(a) => {
            let tls = certs::load_dir(&a.certs, Role::Sender)?;
            let mut opts = SendOptions::new(a.root, a.to, tls);
            opts.server_name = a.server_name;
            opts.pass = a.pass;
            opts.last = a.last;
            opts.compress_level = a.compress_level;
            opts.compress_below = (a.compress_below_mib > 0).then_some(a.compress_below_mib << 20);
            opts.owner = !a.no_owner;
            if let Some(t) = a.threads {
                opts.threads = t.max(1);
            }
            opts.progress_interval = Duration::from_secs_f64(a.progress_interval.max(0.05));
            opts.rate_limit = a.rate_limit_mib.map(|m| (m * 1048576.0) as u64);
            opts.cache = a.cache;
            opts.progress = Some(Arc::new(|p: &Progress| {
                if let Ok(line) = serde_json::to_string(p) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }));
            let report = send::send(opts).await?;
            eprintln!(
                "pass verified: root hash {}, {} entries ({} files from the stat cache), {} bytes of chunks sent, {} bytes on the wire, {:.2}s",
                hex(&report.root_hash),
                report.entries,
                report.cached_files,
                report.chunk_bytes_sent,
                report.wire_bytes,
                report.elapsed_seconds
            );
            Ok(())
        }
        MoverCommand::Receive(a) => {
            let tls = certs::load_dir(&a.certs, Role::Receiver)?;
            let mut opts = ReceiveOptions::new(a.root, tls);
            opts.once = a.once;
            opts.handshake_timeout = Duration::from_secs(a.handshake_timeout.max(1));
            if let Some(t) = a.threads {
                opts.threads = t.max(1);
            }
            let listener = tokio::net::TcpListener::bind(&a.listen)
                .await
                .map_err(|e| MoverError::io(format!("listening on {}", a.listen), e))?;
            receive::serve(listener, opts).await?;
            Ok(())
        }
    }
}
