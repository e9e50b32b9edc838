//! `sovereign supervise`: the watchdog between the sandbox and every process it starts (etcd, the
//! control-plane programs, the pods' containers).
//!
//! The sandbox is a library in the tests and a command for users; either can end without running
//! any destructor (a test binary exits, a terminal closes). A child of a vanished parent would
//! live on, holding ports and memory. So every program runs under this small supervisor, which
//! - watches its own parent and kills the program when the parent is gone (the parent process,
//!   not a thread: `PR_SET_PDEATHSIG` follows the forking thread, which a runtime may retire);
//! - forwards SIGTERM and SIGINT to the program (graceful stop), then waits for it;
//! - writes the program's stdout and stderr to a log file: plain, or in the CRI format a kubelet
//!   reads (`<RFC 3339 time> stdout|stderr F <line>`), so that `kubectl logs` can serve
//!   timestamps and streams as a real node does;
//! - exits with the program's exit code, or 128 + the signal that ended it (what a container
//!   runtime reports).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How the program's output is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// The bytes as written.
    Plain,
    /// One CRI log line per output line.
    Cri,
}

#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    /// Append the program's stdout and stderr to this file.
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// The program and its arguments.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

/// How often the parent is looked for.
const PARENT_CHECK: Duration = Duration::from_millis(250);

pub fn run(args: &SuperviseArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("supervise: cannot start the runtime: {e}");
            return 125;
        }
    };
    rt.block_on(supervise(args))
}

async fn supervise(args: &SuperviseArgs) -> u8 {
    let parent = rustix::process::getppid();
    let Some((program, rest)) = args.command.split_first() else {
        return 125;
    };
    let log = match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .await
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("supervise: cannot open {}: {e}", args.log.display());
            return 125;
        }
    };
    let mut child = match tokio::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            // What a runtime says when the entrypoint is missing; 127 as a shell reports it.
            let line = format!("exec {program}: {e}\n");
            let mut log = log;
            let _ = log
                .write_all(format_line(args.log_format, "stderr", line.trim_end()).as_bytes())
                .await;
            return 127;
        }
    };
    let (tx, rx) = mpsc::channel::<(&'static str, Vec<u8>)>(64);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(pump(
            out,
            "stdout",
            args.log_format,
            tx.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(pump(
            err,
            "stderr",
            args.log_format,
            tx.clone(),
        )));
    }
    drop(tx);
    let writer = tokio::spawn(write_log(log, rx));

    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            let _ = child.start_kill();
            return 125;
        }
    };
    let mut tick = tokio::time::interval(PARENT_CHECK);
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            _ = term.recv() => forward(&child, rustix::process::Signal::TERM),
            _ = int.recv() => forward(&child, rustix::process::Signal::INT),
            _ = tick.tick() => {
                if rustix::process::getppid() != parent {
                    let _ = child.start_kill();
                    break child.wait().await;
                }
            }
        }
    };
    for r in readers {
        let _ = r.await;
    }
    let _ = writer.await;
    match status {
        Ok(st) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => u8::try_from(c).unwrap_or(255),
                (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
                _ => 255,
            }
        }
        Err(_) => 255,
    }
}

fn forward(child: &tokio::process::Child, sig: rustix::process::Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Reads one stream: whole lines for the CRI format, chunks as they come otherwise.
async fn pump(
    stream: impl AsyncRead + Unpin,
    name: &'static str,
    format: LogFormat,
    tx: mpsc::Sender<(&'static str, Vec<u8>)>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match format {
            LogFormat::Cri => reader.read_until(b'\n', &mut buf).await,
            LogFormat::Plain => {
                use tokio::io::AsyncReadExt;
                buf.resize(16 << 10, 0);
                let r = reader.read(&mut buf).await;
                if let Ok(n) = r {
                    buf.truncate(n);
                }
                r
            }
        };
        match n {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let chunk = match format {
                    LogFormat::Plain => std::mem::take(&mut buf),
                    LogFormat::Cri => {
                        let text = String::from_utf8_lossy(&buf);
                        format_line(format, name, text.trim_end_matches(['\n', '\r'])).into_bytes()
                    }
                };
                if tx.send((name, chunk)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_log(mut log: tokio::fs::File, mut rx: mpsc::Receiver<(&'static str, Vec<u8>)>) {
    while let Some((_, chunk)) = rx.recv().await {
        if log.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = log.flush().await;
}

/// One log line in the given format (with its newline).
pub fn format_line(format: LogFormat, stream: &str, line: &str) -> String {
    match format {
        LogFormat::Plain => format!("{line}\n"),
        LogFormat::Cri => {
            let now = jiff::Timestamp::now();
            format!(
                "{} {stream} F {line}\n",
                now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_carry_time_stream_and_tag() {
        let l = format_line(LogFormat::Cri, "stderr", "boom");
        let parts: Vec<&str> = l.trim_end().splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{l}");
        assert!(parts[0].parse::<jiff::Timestamp>().is_ok(), "{l}");
        assert_eq!(&parts[1..], ["stderr", "F", "boom"]);
    }
}
