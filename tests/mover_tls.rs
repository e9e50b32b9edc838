//! Only a sender holding this migration's sender certificate gets in; plaintext, other CAs,
//! other roles and probes are refused or ignored without stopping the receiver.

mod mover_common;

use std::time::Duration;

use mover_common::*;
use sovereign::mover::MoverError;
use sovereign::mover::certs::TlsMaterial;
use sovereign::mover::receive::ReceiverEvent;
use sovereign::mover::send;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn refused(rx: &Receiver) -> Vec<String> {
    rx.events()
        .into_iter()
        .filter_map(|e| match e {
            ReceiverEvent::Refused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

fn passes(rx: &Receiver) -> usize {
    rx.events()
        .iter()
        .filter(|e| matches!(e, ReceiverEvent::PassVerified { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_from_another_migration_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write(src.path(), "f", b"data");
    let ours = certs();
    let theirs = certs();
    let rx = Receiver::start(dst.path(), &ours).await;

    // A complete set from another CA: the sender does not even trust the receiver.
    let err = send(src.path(), &rx.addr, &theirs).await.unwrap_err();
    assert!(matches!(err, MoverError::Tls(_)), "{err}");
    assert!(
        err.to_string().contains("UnknownIssuer") || err.to_string().contains("certificate"),
        "{err}"
    );

    // Trusting our CA but presenting a certificate from another one: the receiver refuses it.
    let mut opts = send_opts(src.path(), &rx.addr, &ours);
    opts.tls = TlsMaterial {
        ca_pem: ours.sender.ca_pem.clone(),
        ..theirs.sender.clone()
    };
    let err = send::send(opts).await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    rx.wait_for(|e| matches!(e, ReceiverEvent::Refused { reason, .. } if reason.contains("client certificate refused")))
        .await;

    // Our CA, but the receiver's certificate instead of the sender's: wrong role.
    let mut opts = send_opts(src.path(), &rx.addr, &ours);
    opts.tls = ours.receiver.clone();
    assert!(send::send(opts).await.is_err());

    // The receiver must be who we expect by name, not by address.
    let mut opts = send_opts(src.path(), &rx.addr, &ours);
    opts.server_name = "someone-else".into();
    let err = send::send(opts).await.unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    assert!(refused(&rx).len() >= 2, "{:?}", rx.events());
    assert_eq!(passes(&rx), 0);
    assert!(!dst.path().join("f").exists());
    // And the receiver is still serving.
    send(src.path(), &rx.addr, &ours)
        .await
        .expect("a legitimate pass after the refusals");
    rx.wait_for(|e| matches!(e, ReceiverEvent::PassVerified { .. }))
        .await;
    assert_eq!(passes(&rx), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_and_probes_are_ignored() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    write(src.path(), "f", b"data");
    let certs = certs();
    let rx = Receiver::start(dst.path(), &certs).await;

    // A plaintext client speaking our protocol gets nothing but a TLS alert and a close.
    let hello = sovereign::mover::protocol::encode(&sovereign::mover::protocol::Message::Hello(
        sovereign::mover::protocol::Hello {
            version: 1,
            pass: 1,
            owner: true,
            chunk_min: 0,
            chunk_avg: 0,
            chunk_max: 0,
            last: false,
        },
    ))
    .unwrap();
    let mut plain = tokio::net::TcpStream::connect(&rx.addr).await.unwrap();
    plain.write_all(&hello).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut reply)).await;
    assert!(
        reply.first() != Some(&0),
        "a protocol frame came back in plaintext: {reply:?}"
    );
    rx.wait_for(
        |e| matches!(e, ReceiverEvent::Refused { reason, .. } if reason.contains("plaintext")),
    )
    .await;

    // Port probes and health checks: connect and close, or connect and say nothing.
    for _ in 0..5 {
        drop(tokio::net::TcpStream::connect(&rx.addr).await.unwrap());
    }
    let silent = tokio::net::TcpStream::connect(&rx.addr).await.unwrap();
    rx.wait_for(
        |e| matches!(e, ReceiverEvent::Ignored { reason, .. } if reason.contains("in time")),
    )
    .await;
    drop(silent);
    let ignored = rx
        .events()
        .iter()
        .filter(|e| matches!(e, ReceiverEvent::Ignored { .. }))
        .count();
    assert!(ignored >= 5, "{:?}", rx.events());
    assert_eq!(passes(&rx), 0);

    send(src.path(), &rx.addr, &certs)
        .await
        .expect("a pass after the probes");
    rx.wait_for(|e| matches!(e, ReceiverEvent::PassVerified { .. }))
        .await;
    assert_eq!(passes(&rx), 1);
    assert_eq!(std::fs::read(dst.path().join("f")).unwrap(), b"data");
}
