//! The command line: `certs`, `receive --once`, `send` with JSON progress and exit codes.

mod mover_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mover_common::*;

const BIN: &str = env!("CARGO_BIN_EXE_sovereign");

fn mover(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("mover").args(args);
    c
}

#[test]
fn certs_receive_once_and_send() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst, certs) = (
        tmp.path().join("src"),
        tmp.path().join("dst"),
        tmp.path().join("certs"),
    );
    std::fs::create_dir_all(&dst).unwrap();
    build_tree(&src);
    let status = mover(&["certs", "--out", certs.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    for f in [
        "ca.crt",
        "sender.crt",
        "sender.key",
        "receiver.crt",
        "receiver.key",
    ] {
        assert!(certs.join(f).exists(), "{f}");
    }
    assert!(
        !certs.join("ca.key").exists(),
        "the CA key must not outlive issuance"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(certs.join("sender.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut receiver = mover(&[
        "receive",
        "--listen",
        &addr,
        "--root",
        dst.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
        "--once",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }

    // Wrong address first: non-zero exit with the reason.
    let bad = mover(&[
        "send",
        "--to",
        "127.0.0.1:1",
        "--root",
        src.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error: connecting to 127.0.0.1:1"));

    let out = mover(&[
        "send",
        "--to",
        &addr,
        "--root",
        src.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
        "--pass",
        "3",
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
        .collect();
    let last = lines.last().expect("progress lines");
    assert_eq!(last["event"], "verified");
    assert_eq!(last["pass"], 3);
    assert_eq!(last["filesDone"], last["filesTotal"]);
    assert_eq!(last["bytesDone"], last["bytesTotal"]);
    assert_eq!(last["rootHash"].as_str().unwrap().len(), 64);

    // `--once`: the receiver exits 0 after that verified pass (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = receiver.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = receiver.kill();
            let _ = receiver.wait();
            panic!("receiver --once did not exit");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(status.success());
    assert_same_tree(&src, &dst);
}
