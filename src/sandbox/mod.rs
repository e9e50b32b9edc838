//! The sandbox: two real Kubernetes clusters on loopback, a sample government application with
//! real data in its volumes, and the operator migrating it (`sovereign sandbox`); the tests run
//! on the same clusters.
//!
//! What upstream Kubernetes does, upstream Kubernetes does: `controlplane` builds etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler from pinned Go modules and runs
//! them as local processes (API semantics, RBAC, admission, CRD validation, garbage collection,
//! the workload controllers, scheduling), and external-snapshotter's CRDs and snapshot-controller. This module provides only what a cluster's nodes and
//! cloud would: the node agent (`agent`: Nodes with each provider's labels and providerIDs, pods
//! of this project's image run as processes, other pods reported running, the kubelet API for
//! logs), host-path storage and the CSI driver's side of snapshots (`storage`), load balancers and a fault-injecting
//! proxy (`network`), the providers' profiles (`profiles`), the operator's installation with Helm (`install`), and the
//! demo (`demo`, `demo_data`, `progress`, `cli`). Every process runs under `supervise`, so none outlives the sandbox.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod controlplane;
pub mod demo;
pub mod demo_data;
pub mod install;
pub mod network;
pub mod objects;
pub mod process;
pub mod profiles;
pub mod progress;
pub mod storage;
pub mod supervise;

pub use cluster::{Cluster, ClusterError, ClusterOptions, write_kubeconfig};

/// What can stop the sandbox or its demo.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Apply(#[from] objects::ApplyError),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0}")]
    Demo(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SandboxError {
        let what = what.into();
        move |e| SandboxError::Api {
            what,
            source: Box::new(e),
        }
    }
}
