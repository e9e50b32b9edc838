//! Reaching the clusters a `SovereignCluster` points at: its kubeconfig Secret turned into a client,
//! and the probe that reads what the cluster shows.

pub mod kubeconfig;
pub mod probe;

pub use kubeconfig::{Access, KubeconfigError, client_for};
pub use probe::{Observation, ProbeError, probe};
