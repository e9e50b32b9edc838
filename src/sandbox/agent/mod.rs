//! The node agent: what a cluster's kubelets and its cloud do, for a cluster whose control plane
//! is upstream Kubernetes. It registers the profile's Nodes and keeps their Leases (`nodes`),
//! runs the pods scheduled to them (`pods`: this project's image as real processes, other images
//! reported running as KWOK does), serves the kubelet API so that `kubectl logs` works through
//! the API server (`kubelet_api`), provisions host-path volumes and snapshots them (`storage`),
//! and gives LoadBalancer Services an address with a TCP proxy behind it (`network`).

pub mod kubelet_api;
pub mod nodes;
pub mod pods;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::controlplane::pki::Pki;
use super::network::addresses::Block;
use super::profiles::Profile;

/// An image the agent runs for real, by the end of its repository path.
#[derive(Clone, Debug)]
pub struct ExecImage {
    /// `/sovereign-operator` matches `ghcr.io/sovereign-dev/sovereign-operator:0.1.0` (and the
    /// bare repository `sovereign-operator`).
    pub repository_suffix: String,
    /// The binary to run; None: this project's binary (`Host::sovereign`).
    pub binary: Option<PathBuf>,
}

impl ExecImage {
    pub fn new(repository_suffix: &str, binary: Option<PathBuf>) -> ExecImage {
        ExecImage {
            repository_suffix: repository_suffix.to_string(),
            binary,
        }
    }

    /// The project's own image, run with this project's binary.
    pub fn defaults() -> Vec<ExecImage> {
        vec![
            ExecImage::new("/sovereign-operator", None),
            ExecImage::new("/sovereign", None),
        ]
    }
}

/// What every part of the agent knows about its cluster.
pub struct Host {
    /// The cluster's name (`source`, `target`), for logs and messages.
    pub cluster: String,
    /// The cluster's directory: `volumes/`, `snapshots/`, `pods/` live under it.
    pub dir: PathBuf,
    pub net: Arc<Block>,
    /// The agent's own identity on the API server.
    pub client: kube::Client,
    pub pki: Arc<Pki>,
    /// The API server's address, what pods' processes reach it at.
    pub api: SocketAddr,
    pub profile: Profile,
    /// This project's binary: the supervisor of every process, and what its image runs.
    pub sovereign: PathBuf,
    pub exec_images: Vec<ExecImage>,
}

impl Host {
    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.join("volumes")
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The binary that runs this image, if it is one the agent executes.
    pub fn binary_for(&self, image: &str) -> Option<PathBuf> {
        let repo = repository(image);
        let m = self.exec_images.iter().find(|m| {
            repo.ends_with(&m.repository_suffix)
                || repo == m.repository_suffix.trim_start_matches('/')
        })?;
        Some(m.binary.clone().unwrap_or_else(|| self.sovereign.clone()))
    }
}

/// The repository of an image reference: no digest, no tag.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The running agent.
pub struct Agent {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pods: Arc<pods::Runtime>,
}

impl Agent {
    /// Registers the nodes, then runs every part until `stop`.
    pub async fn start(host: Arc<Host>) -> Result<Agent, kube::Error> {
        nodes::register(&host).await?;
        let (shutdown, rx) = watch::channel(false);
        let pods = pods::Runtime::new(host.clone());
        let mut tasks = vec![tokio::spawn(nodes::heartbeat(host.clone(), rx.clone()))];
        tasks.push(tokio::spawn(pods.clone().run(rx.clone())));
        tasks.push(tokio::spawn(kubelet_api::serve(
            host.clone(),
            pods.clone(),
            rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::sandbox::storage::run(
            host.clone(),
            rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::sandbox::network::loadbalancer::run(
            host.clone(),
            rx,
        )));
        Ok(Agent {
            shutdown,
            tasks,
            pods,
        })
    }

    pub fn pods(&self) -> &Arc<pods::Runtime> {
        &self.pods
    }

    /// Stops every part, then kills and reaps every process the pods run.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.pods.kill_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_tags_and_digests_only() {
        assert_eq!(repository("ghcr.io/x/sovereign:0.1"), "ghcr.io/x/sovereign");
        assert_eq!(
            repository("localhost:5000/sovereign"),
            "localhost:5000/sovereign"
        );
        assert_eq!(repository("r.example/a@sha256:ab"), "r.example/a");
    }
}
