//! A full volume fails the pass with the reason; the sender exits with it. Needs root to mount a
//! small tmpfs; without it the test says so and passes vacuously.

mod mover_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mover_common::*;
use sovereign::mover::MoverError;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(dir: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_pass_with_the_reason() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let Some(mount) = mount_small_tmpfs(dst.path()) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    write(src.path(), "small", b"fits");
    write(src.path(), "big.bin", &noise(4 << 20, 5));
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    let err = send(src.path(), &rx.addr, &certs).await.unwrap_err();
    assert!(matches!(err, MoverError::PeerAborted(_)), "{err}");
    let reason = err.to_string();
    assert!(
        reason.contains("no space left on the receiver's volume"),
        "{reason}"
    );
    assert!(reason.contains("big.bin"), "{reason}");
    // Nothing half-written was put in place.
    assert!(!dst.path().join("big.bin").exists());
    // The receiver is still there for the retry after the volume is grown.
    assert!(
        Command::new("mount")
            .args(["-o", "remount,size=16m"])
            .arg(dst.path())
            .status()
            .unwrap()
            .success()
    );
    let report = send(src.path(), &rx.addr, &certs)
        .await
        .expect("pass after growing the volume");
    assert!(
        report.chunk_bytes_sent < 4 << 20,
        "staged chunks were kept: {report:?}"
    );
    assert_same_tree(src.path(), dst.path());
    rx.task.abort();
    drop(mount);
}
