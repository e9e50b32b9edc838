//! sovereign-operator: moves Kubernetes workloads and the data in their volumes from clusters run by
//! US-controlled providers to Québec-hosted clusters, proves where they now live, and accounts for
//! the cost.

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controller;
pub mod cost;
pub mod migrate;
pub mod mover;
pub mod remote;
pub mod report;
pub mod residency;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod telemetry;
