//! The pods bound to the agent's nodes, run as a kubelet runs them (against the real API
//! server: a watch of the pods bound to any node, one worker per pod).
//!
//! Containers of the executed images run for real as processes (`exec`, `launch`,
//! `containers`): their exit codes, restarts with the kubelet's back-off and their termination
//! drive the status. Containers of other images are simulated as KWOK does: running and ready
//! at once; those of a Job's pods succeed after a second. The status (`status`) and Events
//! (`events`) have the kubelet's shape and wording; logs (`logs`) its CRI files.

mod containers;
mod events;
pub mod exec;
mod launch;
pub mod logs;
mod probes;
pub mod restart;
mod slots;
pub mod sources;
pub mod status;
mod tokens;
mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Host;
use containers::{RunState, Slot, Stop};
use events::Events;

/// A pod the agent runs, by name (for messages, Events and paths).
#[derive(Clone, Debug)]
pub struct PodRef {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
}

impl PodRef {
    pub fn of(cluster: &str, pod: &Pod) -> Option<PodRef> {
        Some(PodRef {
            cluster: cluster.to_string(),
            namespace: pod.metadata.namespace.clone()?,
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
            node: pod.spec.as_ref()?.node_name.clone()?,
        })
    }

    /// `namespace/name`
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The kubelet's `format.Pod`: `name_namespace(uid)`.
    pub fn kubelet_name(&self) -> String {
        format!("{}_{}({})", self.name, self.namespace, self.uid)
    }

    /// `pod ns/name in cluster c`, for errors.
    pub fn describe(&self) -> String {
        format!("pod {} in cluster {}", self.key(), self.cluster)
    }

    pub fn object_ref(&self, field_path: Option<String>) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            field_path,
            ..Default::default()
        }
    }

    pub fn api_error(&self, what: &str, source: kube::Error) -> PodError {
        PodError::Api {
            pod: self.describe(),
            what: what.to_string(),
            source: Box::new(source),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("{pod}: {what}: {source}")]
    Api {
        pod: String,
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// Why `GET /containerLogs` has nothing to read, in the kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("pod \"{0}\" does not exist")]
    NoPod(String),
    #[error("container \"{container}\" not found in pod \"{pod}\"")]
    NoContainer { pod: String, container: String },
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious { pod: String, container: String },
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}")]
    Waiting {
        pod: String,
        container: String,
        reason: String,
    },
}

impl LogError {
    /// 404 (the pod or container is unknown) rather than 400.
    pub fn not_found(&self) -> bool {
        matches!(self, LogError::NoPod(_) | LogError::NoContainer { .. })
    }
}

/// Where one container instance's log is.
pub struct LogTarget {
    /// None: a simulated container, which writes nothing.
    pub file: Option<PathBuf>,
    slot: Option<Arc<Slot>>,
    instance: i32,
}

impl LogTarget {
    /// Whether the instance may still write (a follow goes on while it does).
    pub fn writing(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| {
            let r = s.snapshot();
            r.restarts == self.instance && (r.running() || !s.launched())
        })
    }
}

/// What every worker shares.
pub struct Shared {
    pub host: Arc<Host>,
    pub events: Arc<Events>,
}

struct Entry {
    pod: Arc<PodRef>,
    dir: PathBuf,
    slots: Vec<Arc<Slot>>,
    updates: watch::Sender<Option<Arc<Pod>>>,
    worker: Option<JoinHandle<()>>,
    /// Creation order: the newest pod of a name is the one logs are read from.
    seq: u64,
}

pub struct Runtime {
    shared: Arc<Shared>,
    pods: Mutex<HashMap<String, Entry>>,
    seq: AtomicU64,
}

impl Runtime {
    pub fn new(host: Arc<Host>) -> Arc<Runtime> {
        let events = Arc::new(Events::new(&host));
        Arc::new(Runtime {
            shared: Arc::new(Shared { host, events }),
            pods: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    fn host(&self) -> &Host {
        &self.shared.host
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the pods bound to a node until shutdown and hands each of the agent's nodes'
    /// pods to its worker.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let api: Api<Pod> = Api::all(self.host().client.clone());
        let cfg = watcher::Config::default().fields("spec.nodeName!=");
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        let mut listing: Option<HashSet<String>> = None;
        loop {
            let ev = tokio::select! {
                ev = stream.next() => ev,
                _ = shutdown.changed() => return,
            };
            match ev {
                Some(Ok(watcher::Event::Apply(p))) => self.seen(p, &shutdown),
                Some(Ok(watcher::Event::InitApply(p))) => {
                    if let (Some(l), Some(uid)) = (listing.as_mut(), p.metadata.uid.clone()) {
                        l.insert(uid);
                    }
                    self.seen(p, &shutdown);
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    self.gone(p.metadata.uid.as_deref().unwrap_or_default())
                }
                Some(Ok(watcher::Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitDone)) => {
                    // Pods deleted while the watch was down.
                    let listed = listing.take().unwrap_or_default();
                    let known: Vec<String> = self.lock().keys().cloned().collect();
                    for uid in known.iter().filter(|u| !listed.contains(*u)) {
                        self.gone(uid);
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(cluster = %self.host().cluster, error = %e, "the pod watch failed; retrying");
                }
                None => return,
            }
        }
    }

    fn ours(&self, pod: &Pod) -> bool {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        node.is_some_and(|n| self.host().profile.nodes.iter().any(|s| s.name == n))
    }

    /// A pod was added or changed: to its worker (started on first sight).
    fn seen(self: &Arc<Self>, pod: Pod, shutdown: &watch::Receiver<bool>) {
        if !self.ours(&pod) {
            return;
        }
        let Some(r) = PodRef::of(&self.host().cluster, &pod) else {
            return;
        };
        let pod = Arc::new(pod);
        let mut pods = self.lock();
        if let Some(e) = pods.get(&r.uid) {
            e.updates.send_replace(Some(pod));
            return;
        }
        let r = Arc::new(r);
        let host = &self.shared.host;
        let slots: Vec<Arc<Slot>> =
            slots::slots(&pod, &|image| host.binary_for(image), containers::now())
                .into_iter()
                .map(Arc::new)
                .collect();
        let dir = host.pod_dir(&r.uid);
        let (tx, rx) = watch::channel(Some(pod));
        let w = worker::Worker::new(self.shared.clone(), r.clone(), dir.clone(), slots.clone());
        let me: Weak<Runtime> = Arc::downgrade(self);
        let uid = r.uid.clone();
        let shutdown = shutdown.clone();
        let task = tokio::spawn(async move {
            // On shutdown the entry stays: `kill_all` finds its processes there.
            if w.run(rx, shutdown).await
                && let Some(rt) = me.upgrade()
            {
                rt.lock().remove(&uid);
            }
        });
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        pods.insert(
            r.uid.clone(),
            Entry {
                pod: r,
                dir,
                slots,
                updates: tx,
                worker: Some(task),
                seq,
            },
        );
    }

    /// A pod was deleted for good: its worker kills what still runs and cleans up.
    fn gone(&self, uid: &str) {
        if let Some(e) = self.lock().get(uid) {
            e.updates.send_replace(None);
        }
    }

    /// The newest pod of that name, with what logs need of it.
    fn find(&self, namespace: &str, name: &str) -> Option<(PathBuf, Vec<Arc<Slot>>)> {
        self.lock()
            .values()
            .filter(|e| e.pod.namespace == namespace && e.pod.name == name)
            .max_by_key(|e| e.seq)
            .map(|e| (e.dir.clone(), e.slots.clone()))
    }

    /// Where a container's log is: its current instance's, or with `previous` the one before.
    pub fn logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogTarget, LogError> {
        let (dir, slots) = self
            .find(namespace, pod)
            .ok_or_else(|| LogError::NoPod(pod.to_string()))?;
        let slot =
            slots
                .iter()
                .find(|s| s.name == container)
                .ok_or_else(|| LogError::NoContainer {
                    pod: pod.to_string(),
                    container: container.to_string(),
                })?;
        if slot.binary.is_none() {
            return Ok(LogTarget {
                file: None,
                slot: None,
                instance: 0,
            });
        }
        let run = slot.snapshot();
        // While it waits (created, or in back-off) the latest instance is the one that ended.
        let current = match (&run.state, &run.last) {
            (RunState::Waiting { .. }, Some(RunState::Terminated { instance, .. })) => *instance,
            (RunState::Waiting { reason, .. }, _) if !previous => {
                return Err(LogError::Waiting {
                    pod: pod.to_string(),
                    container: container.to_string(),
                    reason: reason.clone(),
                });
            }
            _ => run.restarts,
        };
        let instance = if previous { current - 1 } else { current };
        let file = logs::instance_file(&logs::container_dir(&dir, container), instance);
        if previous && (instance < 0 || !file.exists()) {
            return Err(LogError::NoPrevious {
                pod: pod.to_string(),
                container: container.to_string(),
            });
        }
        Ok(LogTarget {
            file: Some(file),
            slot: Some(slot.clone()),
            instance,
        })
    }

    /// The log file of a container's current instance (None for an unknown or simulated one).
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
        self.logs(namespace, pod, container, false).ok()?.file
    }

    /// The supervisors' process ids of a pod's running containers.
    pub fn pids(&self, namespace: &str, pod: &str) -> Vec<u32> {
        self.find(namespace, pod)
            .map(|(_, slots)| slots.iter().filter_map(|s| s.pid()).collect())
            .unwrap_or_default()
    }

    /// Kills every process and waits until each is reaped (no orphans, no zombies).
    pub async fn kill_all(&self) {
        let (workers, slots): (Vec<JoinHandle<()>>, Vec<Arc<Slot>>) = {
            let mut pods = self.lock();
            let workers = pods.values_mut().filter_map(|e| e.worker.take()).collect();
            let slots = pods
                .values()
                .flat_map(|e| e.slots.iter().cloned())
                .collect();
            (workers, slots)
        };
        // No worker may start a container after this.
        for w in workers {
            w.abort();
            let _ = w.await;
        }
        for s in &slots {
            s.stop(Stop::Kill);
        }
        for s in &slots {
            s.join().await;
        }
    }
}
