//! A full pass produces an identical tree, checked by walking both trees independently.

mod mover_common;

use mover_common::*;
use sovereign::mover::receive::ReceiverEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_produces_an_identical_tree() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;

    let report = send(src.path(), &rx.addr, &certs)
        .await
        .expect("pass verified");
    assert_same_tree(src.path(), dst.path());
    assert!(report.chunk_bytes_sent >= 5 << 20, "{report:?}");
    // The log compresses, the noise does not: the wire carries less than the chunks.
    assert!(report.wire_bytes < report.chunk_bytes_sent, "{report:?}");
    rx.wait_for(|e| matches!(e, ReceiverEvent::PassVerified { .. }))
        .await;

    // A second pass with nothing changed sends no chunk data at all.
    let again = send(src.path(), &rx.addr, &certs)
        .await
        .expect("second pass verified");
    assert_eq!(again.chunks_sent, 0, "{again:?}");
    assert_eq!(again.root_hash, report.root_hash);
    assert_same_tree(src.path(), dst.path());
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_replaces_and_removes_what_the_source_does_not_have() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_tree(src.path());
    // The target starts with unrelated content, including a directory where the source has a
    // file, a file where it has a directory, and a symlink pointing out of the volume.
    write(dst.path(), "stale/old.txt", b"old");
    write(dst.path(), "big.bin/inner", b"a directory in the way");
    write(dst.path(), "small", b"a file in the way");
    std::os::unix::fs::symlink("/etc", dst.path().join("logs")).unwrap();
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    send(src.path(), &rx.addr, &certs)
        .await
        .expect("pass verified");
    assert_same_tree(src.path(), dst.path());
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_cache_skips_unchanged_files_and_notices_changed_ones() {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    let mut opts = send_opts(src.path(), &rx.addr, &certs);
    opts.cache = Some(state.path().join("cache"));

    let first = sovereign::mover::send::send(opts.clone())
        .await
        .expect("first pass verified");
    assert!(state.path().join("cache").is_file());
    assert_eq!(first.cached_files, 0, "{first:?}");
    // A pass that never verified left its unfinished cache behind: the next one removes it.
    std::fs::write(state.path().join("cache.new.1-2"), b"half-written").unwrap();

    // Same size, same inode, mtime put back: only the ctime shows the edit. Trusting the cache
    // here would make the sender claim the old content, and the root hashes would differ.
    let path = src.path().join("big.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"edited in place", 1000).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let second = sovereign::mover::send::send(opts.clone())
        .await
        .expect("second pass verified");
    assert!(second.chunks_sent >= 1, "{second:?}");
    assert_ne!(second.root_hash, first.root_hash);
    assert_same_tree(src.path(), dst.path());
    assert!(second.cached_files > 0, "{second:?}");
    let left: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("cache")], "{left:?}");

    // Nothing changed since: the chunk lists come from the cache and nothing is sent.
    let third = sovereign::mover::send::send(opts)
        .await
        .expect("third pass verified");
    assert_eq!(third.chunks_sent, 0, "{third:?}");
    assert_eq!(third.root_hash, second.root_hash);
    // The file read again in the second pass is the only one the third takes from the cache
    // that the second did not.
    assert_eq!(third.cached_files, second.cached_files + 1, "{third:?}");
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_written_costs_time_not_the_pass() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    let mut opts = send_opts(src.path(), &rx.addr, &certs);
    // Its directory does not exist (a volume that was not mounted, say).
    let cache = src.path().join("no-such-dir").join("cache");
    opts.cache = Some(cache.clone());
    let report = sovereign::mover::send::send(opts)
        .await
        .expect("verified without a cache");
    assert_eq!(report.cached_files, 0);
    assert!(!cache.exists());
    assert_same_tree(src.path(), dst.path());
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_pass_leaves_only_the_applications_files() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    let state = dst.path().join(sovereign::mover::manifest::STATE_DIR);
    send(src.path(), &rx.addr, &certs)
        .await
        .expect("pre-copy verified");
    assert!(
        state.is_dir(),
        "a pre-copy keeps its checkpoint for the next pass"
    );
    let mut last = send_opts(src.path(), &rx.addr, &certs);
    last.pass = 2;
    last.last = true;
    sovereign::mover::send::send(last)
        .await
        .expect("last pass verified");
    rx.wait_for(|e| matches!(e, ReceiverEvent::PassVerified { pass: 2, .. }))
        .await;
    assert!(
        !state.exists(),
        "the checkpoint is gone after the last pass"
    );
    assert_same_tree(src.path(), dst.path());
    rx.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_file_edited_behind_the_index_is_not_reused_blindly() {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, "big.bin", &noise(4 << 20, 1));
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;
    send(s, &rx.addr, &certs).await.expect("first pass");
    assert_same_tree(s, dst.path());

    // Someone edits the copy (same size, mtime put back): only its ctime tells. Its indexed
    // chunk list no longer describes it, so unchanged ranges must not be copied on trust.
    let copy = dst.path().join("big.bin");
    let mtime = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
    f.write_all_at(&[0x55; 4096], 1 << 20).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    // The source changes elsewhere, so the file is staged from the old copy.
    let mut big = std::fs::read(s.join("big.bin")).unwrap();
    big[3 << 20..(3 << 20) + 100].copy_from_slice(&[0xAB; 100]);
    write(s, "big.bin", &big);

    send(s, &rx.addr, &certs)
        .await
        .expect("second pass verified");
    assert_same_tree(s, dst.path());
    rx.task.abort();
}
