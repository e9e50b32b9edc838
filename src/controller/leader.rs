//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas never both act.
//!
//! `kube-lease-manager` holds the Lease with server-side apply and tolerates clock skew; this module
//! turns its state channel into "wait until leader" and "leadership lost".

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::info;

/// Seconds a Lease stays valid after its last renewal.
pub const LEASE_DURATION: u64 = 15;
/// Seconds before expiry the holder renews (also the clock skew tolerated).
pub const LEASE_GRACE: u64 = 5;

pub struct Leadership {
    rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Starts competing for the Lease `name` in `namespace` as `identity`.
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> Result<Self, LeaseManagerError> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_DURATION)
            .with_grace(LEASE_GRACE)
            .with_field_manager("sovereign-operator-lease")
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        Ok(Leadership { rx, task })
    }

    /// Resolves once this replica holds the Lease; `false` if the manager stopped first.
    pub async fn acquired(&mut self) -> bool {
        loop {
            if *self.rx.borrow_and_update() {
                info!("acquired the leader Lease");
                return true;
            }
            if self.rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Resolves when this replica no longer holds the Lease.
    pub async fn lost(&mut self) {
        loop {
            if !*self.rx.borrow_and_update() {
                return;
            }
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease up (dropping the receiver makes the manager release it) and waits for that.
    pub async fn release(self) {
        drop(self.rx);
        match self.task.await {
            Ok(Ok(_)) => info!("released the leader Lease"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the leader Lease failed; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "the lease task ended abnormally"),
        }
    }
}
