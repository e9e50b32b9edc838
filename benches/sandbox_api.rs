//! Benchmark of the sandbox's API server (not a test): GET/s, writes/s, watch fan-out and memory with
//! 10,000 objects, through the real `kube` client over HTTP on loopback. Run with
//! `cargo bench --bench sandbox_api`; prints one line per measure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use sovereign::sandbox::SimCluster;

const OBJECTS: usize = 10_000;
const WRITERS: usize = 16;
const READERS: usize = 32;
const WATCHERS: usize = 100;
const WATCHED_WRITES: usize = 200;

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"bench": "yes"}}, "data": {"payload": "x".repeat(256)}})).expect("configmap")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let cluster = SimCluster::start("bench").await.expect("cluster");
    let client = cluster.client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rss_before = rss_mib();

    // Writes: 10,000 creates from 16 concurrent writers.
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= OBJECTS {
                    break;
                }
                if let Err(e) = api
                    .create(&PostParams::default(), &cm(&format!("cm-{i}")))
                    .await
                {
                    eprintln!("create failed: {e}");
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let writes = OBJECTS as f64 / start.elapsed().as_secs_f64();
    println!("writes/s     {writes:>10.0}   ({OBJECTS} creates, {WRITERS} concurrent writers)");
    println!(
        "rss          {:>10.1} MiB with {OBJECTS} objects (server and client in one process; {rss_before:.1} MiB before)",
        rss_mib()
    );

    // Reads: GET of random objects from 32 readers for 5 seconds.
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for r in 0..READERS {
        let (api, count) = (api.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = r * 97;
            while Instant::now() < deadline {
                i = (i * 31 + 7) % OBJECTS;
                if api.get(&format!("cm-{i}")).await.is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "GET/s        {:>10.0}   ({READERS} concurrent readers, 5 s)",
        count.load(Ordering::Relaxed) as f64 / 5.0
    );

    // Watch fan-out: 100 watchers each must see every one of 200 writes.
    let seen = Arc::new(AtomicU64::new(0));
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let (api, seen) = (api.clone(), seen.clone());
        watchers.push(tokio::spawn(async move {
            let cfg = watcher::Config::default().labels("bench=fanout");
            let mut stream = watcher(api, cfg).boxed();
            let mut mine = 0;
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(_)) = ev {
                    mine += 1;
                    seen.fetch_add(1, Ordering::Relaxed);
                    if mine == WATCHED_WRITES {
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    for i in 0..WATCHED_WRITES {
        let mut c = cm(&format!("fan-{i}"));
        c.metadata.labels = Some([("bench".to_string(), "fanout".to_string())].into());
        let _ = api.create(&PostParams::default(), &c).await;
    }
    let all = (WATCHERS * WATCHED_WRITES) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) < all && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = seen.load(Ordering::Relaxed);
    println!(
        "watch        {:>10}   of {all} events delivered to {WATCHERS} watchers in {:.2} s ({})",
        got,
        start.elapsed().as_secs_f64(),
        if got == all {
            "every watcher saw every event"
        } else {
            "INCOMPLETE"
        }
    );
    for w in watchers {
        w.abort();
    }
    println!("rss          {:>10.1} MiB at the end", rss_mib());
    cluster.shutdown().await;
}
