//! LoadBalancer Services (placeholder).

use std::sync::Arc;

use tokio::sync::watch;

use crate::sandbox::agent::Host;

pub async fn run(_host: Arc<Host>, mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.changed().await;
}
