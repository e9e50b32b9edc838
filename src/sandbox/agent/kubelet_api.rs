//! The kubelet API (placeholder).

use std::sync::Arc;

use tokio::sync::watch;

use super::Host;
use super::pods::Runtime;

pub async fn serve(_host: Arc<Host>, _pods: Arc<Runtime>, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.changed().await;
}
