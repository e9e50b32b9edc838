//! The pods scheduled to the agent's nodes (placeholder: filled in by the pod runtime).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::Host;

pub struct Runtime {
    host: Arc<Host>,
}

impl Runtime {
    pub fn new(host: Arc<Host>) -> Arc<Runtime> {
        Arc::new(Runtime { host })
    }

    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let _ = &self.host;
        let _ = shutdown.changed().await;
    }

    /// The log file of a container of a pod this node runs.
    pub fn log_path(&self, _namespace: &str, _pod: &str, _container: &str) -> Option<PathBuf> {
        None
    }

    pub async fn kill_all(&self) {}
}
