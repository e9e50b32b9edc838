//! Resumability and incremental passes.

mod mover_common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mover_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sovereign");

fn mover(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("mover").args(args);
    c
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Kills and reaps the process when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_receiver(addr: &str, root: &Path, certs: &Path) -> Proc {
    let child = Proc(
        mover(&[
            "receive",
            "--listen",
            addr,
            "--root",
            root.to_str().unwrap(),
            "--certs",
            certs.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Wait (bounded) until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("receiver did not start");
}

fn spawn_sender(addr: &str, root: &Path, certs: &Path, extra: &[&str]) -> Child {
    mover(
        &[
            &[
                "send",
                "--to",
                addr,
                "--root",
                root.to_str().unwrap(),
                "--certs",
                certs.to_str().unwrap(),
                "--progress-interval",
                "0.05",
            ],
            extra,
        ]
        .concat(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap()
}

fn field(line: &str, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[name].as_u64().unwrap_or(0)
}

/// Runs a sender to completion and returns (exit ok, last JSON line, stderr).
fn run_sender(addr: &str, root: &Path, certs: &Path) -> (bool, String, String) {
    let out = spawn_sender(addr, root, certs, &[])
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    (
        out.status.success(),
        last,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn make_data(root: &Path) -> u64 {
    write(root, "huge.bin", &noise(24 << 20, 11));
    for i in 0..24 {
        write(
            root,
            &format!("files/f{i:02}.bin"),
            &noise(1 << 20, 100 + i),
        );
    }
    48 << 20
}

#[test]
fn a_killed_sender_resumes_without_resending_verified_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, certs) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("certs"),
    );
    std::fs::create_dir_all(&dst).unwrap();
    let total = make_data(&src);
    assert!(
        mover(&["certs", "--out", certs.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let addr = free_addr();
    let receiver = start_receiver(&addr, &dst, &certs);

    // Throttled so that the kill lands mid-transfer whatever the machine's speed.
    let mut sender = spawn_sender(&addr, &src, &certs, &["--rate-limit-mib", "24"]);
    let stdout = sender.stdout.take().unwrap();
    let mut wire_at_kill = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        wire_at_kill = field(&line, "wireBytes");
        if wire_at_kill >= total / 2 || Instant::now() > deadline {
            break;
        }
    }
    sender.kill().unwrap();
    sender.wait().unwrap();
    assert!(
        wire_at_kill >= total / 2 && wire_at_kill < total,
        "killed at {wire_at_kill} of {total}"
    );

    let (ok, last, err) = run_sender(&addr, &src, &certs);
    assert!(ok, "resumed pass failed: {err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&last).unwrap()["event"],
        "verified"
    );
    let resumed = field(&last, "wireBytes");
    // Everything received before the kill is kept: what crosses the wire twice is at most what
    // was in flight (socket buffers) when the sender died.
    let resent = (wire_at_kill + resumed).saturating_sub(total);
    eprintln!(
        "killed at {wire_at_kill} wire bytes of {total}; resumed pass sent {resumed}; resent {resent}"
    );
    assert!(
        resent < total / 8,
        "resent {resent} bytes of {total} (before kill {wire_at_kill}, resumed {resumed})"
    );
    assert_same_tree(&src, &dst);
    drop(receiver);
}

#[test]
fn a_killed_receiver_resumes_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, certs) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("certs"),
    );
    std::fs::create_dir_all(&dst).unwrap();
    let total = make_data(&src);
    assert!(
        mover(&["certs", "--out", certs.to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    let addr = free_addr();
    let receiver = start_receiver(&addr, &dst, &certs);
    let mut sender = spawn_sender(&addr, &src, &certs, &["--rate-limit-mib", "24"]);
    let stdout = sender.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if field(&line.unwrap(), "wireBytes") >= total / 2 {
            break;
        }
    }
    drop(receiver);
    let out = sender.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the sender must fail when the receiver dies"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:"), "{err}");

    let receiver = start_receiver(&addr, &dst, &certs);
    let (ok, last, err) = run_sender(&addr, &src, &certs);
    assert!(ok, "resumed pass failed: {err}");
    let resumed = field(&last, "wireBytes");
    assert!(
        resumed < total - total / 4,
        "resumed pass sent {resumed} of {total}"
    );
    assert_same_tree(&src, &dst);
    drop(receiver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_pass_sends_only_changed_chunks() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, "big.bin", &noise(8 << 20, 1));
    write(s, "shift.bin", &noise(8 << 20, 2));
    write(s, "app.log", &text(4 << 20, 3));
    for i in 0..50 {
        write(
            s,
            &format!("small/f{i:02}"),
            &noise(2000 + i * 500, 10 + i as u64),
        );
    }
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    let first = send(s, &rx.addr, &certs).await.expect("first pass");
    assert_same_tree(s, dst.path());

    // Edit in place, shift by inserting in the middle, append, delete, add.
    let mut big = std::fs::read(s.join("big.bin")).unwrap();
    big[5 << 20..(5 << 20) + 100].copy_from_slice(&[0xAB; 100]);
    write(s, "big.bin", &big);
    let mut shifted = std::fs::read(s.join("shift.bin")).unwrap();
    shifted.splice(4 << 20..4 << 20, b"inserted in the middle".iter().copied());
    write(s, "shift.bin", &shifted);
    let mut log = std::fs::read(s.join("app.log")).unwrap();
    log.extend_from_slice(&text(100_000, 99));
    write(s, "app.log", &log);
    std::fs::remove_file(s.join("small/f07")).unwrap();
    write(s, "small/new", &noise(30_000, 77));
    write(s, "small/f08", &noise(2000 + 8 * 500, 1234)); // same size, new content

    let second = send(s, &rx.addr, &certs).await.expect("incremental pass");
    assert_same_tree(s, dst.path());
    assert_ne!(first.root_hash, second.root_hash);
    // Changed: ≤ 2 chunks per edit/shift, the log's tail, two small files.
    let budget = 2 * 2 * 256 * 1024 + 100_000 + 256 * 1024 + 30_000 + 6_000;
    assert!(second.chunk_bytes_sent <= budget, "{second:?}");
    assert!(
        second.chunk_bytes_sent < first.chunk_bytes_sent / 10,
        "{second:?}"
    );
    rx.task.abort();
}
