//! The simulated cluster's behaviour: the controllers of kube-controller-manager (deployments,
//! replica sets, stateful sets, daemon sets, jobs, cron jobs, endpoints, the volume provisioner
//! and binder), the CSI snapshot controller, the scheduler, the cloud load balancer, the kubelet and kube-proxy.
//!
//! Each runs as a task holding only a `Weak<Cluster>`: a loop that wakes on the store's watch
//! events of the resources it follows (or on a periodic resync), then makes one level-triggered
//! pass over the current objects and writes through the in-process API, so resourceVersions,
//! generations and watch events are exactly what clients would see from real controllers.

pub mod cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod exec;
pub mod job;
pub mod kubelet;
pub mod loadbalancer;
pub mod net;
pub mod objects;
pub mod proxy;
pub mod replicaset;
pub mod scheduler;
pub mod snapshots;
pub mod statefulset;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::api::Cluster;
pub use exec::ExecImage;

/// How often every controller makes a pass even without events (time-driven behaviour: cron
/// schedules, simulated job completion, back-off).
const RESYNC: Duration = Duration::from_millis(500);

/// One level-triggered pass of a controller; true when it wrote something.
type Pass = Box<dyn FnMut(&Arc<Cluster>) -> bool + Send>;

/// What the node-side simulation needs besides the API: where files live, the loopback addresses,
/// which images run for real, and the processes it started.
pub struct Host {
    /// `<data_dir>/<cluster>`: volumes, pod directories, container logs.
    pub dir: PathBuf,
    pub net: net::Block,
    pub exec: exec::ExecConfig,
    pub processes: exec::Processes,
    /// The API server's address (children get it as KUBERNETES_SERVICE_HOST/PORT).
    pub api_addr: std::net::SocketAddr,
}

impl Host {
    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.join("volumes")
    }

    /// Where the CSI snapshots of the cluster's volumes are kept, one directory per handle.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.dir.join("pods").join(uid)
    }

    /// The directory behind a PersistentVolume the sandbox provisioned.
    pub fn volume_dir(&self, pv: &str) -> PathBuf {
        self.volumes_dir().join(pv)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Start every controller; they stop when the cluster is dropped or their handles are aborted.
pub fn start(cluster: &Arc<Cluster>, host: &Arc<Host>) -> Vec<JoinHandle<()>> {
    cluster
        .kubelet
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let weak = Arc::downgrade(cluster);
    let mut tasks = Vec::new();
    let mut spawn = |name: &'static str, watches: &'static [&'static str], pass: Pass| {
        tasks.push(tokio::spawn(drive(weak.clone(), name, watches, pass)));
    };
    spawn(
        "deployment",
        &["deployments.apps", "replicasets.apps"],
        Box::new(deployment::pass),
    );
    spawn(
        "replicaset",
        &["replicasets.apps", "pods"],
        Box::new(replicaset::pass),
    );
    spawn(
        "statefulset",
        &["statefulsets.apps", "pods", "persistentvolumeclaims"],
        Box::new(statefulset::pass),
    );
    spawn(
        "daemonset",
        &["daemonsets.apps", "pods", "nodes"],
        Box::new(daemonset::pass),
    );
    spawn("job", &["jobs.batch", "pods"], Box::new(job::pass));
    spawn(
        "cronjob",
        &["cronjobs.batch", "jobs.batch"],
        Box::new(cronjob::pass),
    );
    spawn(
        "scheduler",
        &[
            "pods",
            "nodes",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
        Box::new(scheduler::pass),
    );
    let h = host.clone();
    spawn(
        "volumes",
        &[
            "persistentvolumeclaims",
            "persistentvolumes",
            "pods",
            "volumesnapshots.snapshot.storage.k8s.io",
        ],
        Box::new(move |c: &Arc<Cluster>| volumes::pass(c, &h)),
    );
    let h = host.clone();
    spawn(
        "snapshots",
        &[
            "volumesnapshots.snapshot.storage.k8s.io",
            "volumesnapshotclasses.snapshot.storage.k8s.io",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
        Box::new(move |c: &Arc<Cluster>| snapshots::pass(c, &h)),
    );
    let h = host.clone();
    spawn(
        "loadbalancer",
        &["services"],
        Box::new(move |c: &Arc<Cluster>| loadbalancer::pass(c, &h)),
    );
    spawn(
        "endpoints",
        &[
            "services",
            "pods",
            "endpoints",
            "endpointslices.discovery.k8s.io",
        ],
        Box::new(endpoints::pass),
    );
    let h = host.clone();
    spawn(
        "kubelet",
        &[
            "pods",
            "nodes",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
        Box::new(move |c: &Arc<Cluster>| kubelet::pass(c, &h)),
    );
    let proxy = Arc::new(proxy::Proxy::new(weak.clone()));
    spawn(
        "kube-proxy",
        &["services", "nodes"],
        Box::new(move |c: &Arc<Cluster>| proxy.pass(c)),
    );
    tasks
}

/// The loop every controller shares: a pass, then wait for an event of interest or the resync.
async fn drive(
    cluster: Weak<Cluster>,
    name: &'static str,
    watches: &'static [&'static str],
    mut pass: Pass,
) {
    let Some(c) = cluster.upgrade() else { return };
    let mut rx = c.store.subscribe();
    drop(c);
    tracing::debug!(controller = name, "simulated controller started");
    loop {
        {
            let Some(c) = cluster.upgrade() else { return };
            // A pass that changed something may have enabled the next step (a created pod
            // gets scheduled, a scheduled pod gets started): a few passes, then wait.
            for _ in 0..4 {
                if !pass(&c) {
                    break;
                }
            }
        }
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) if watches.contains(&ev.resource.as_str()) => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
                _ = &mut resync => break,
            }
        }
        // Let a burst of writes settle into one pass.
        tokio::time::sleep(Duration::from_millis(2)).await;
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            rx.try_recv()
        {}
    }
}
