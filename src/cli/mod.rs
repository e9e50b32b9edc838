//! The `sovereign` command line: one binary for the operator, the mover, the sandbox and the
//! offline tools.

pub mod crd;
pub mod files;
pub mod plan;
pub mod report;
pub mod residency;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sovereign",
    version,
    about = "Moves Kubernetes workloads and their data to Québec-hosted clusters, with residency evidence and cost"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD with --out).
    Crd(crd::CrdArgs),
    /// Run the operator.
    Run(crate::controller::RunArgs),
    /// The migration plan, residency pre-flight and cost estimate, offline from files.
    Plan(plan::PlanArgs),
    /// Residency and jurisdiction of a cluster and its workloads.
    Residency(residency::ResidencyArgs),
    /// The signed residency-and-cost attestation of a workload (`report verify` checks one).
    Report(report::ReportArgs),
    /// Two real clusters on loopback (source and target), the sample application and the
    /// operator migrating it.
    #[cfg(feature = "sandbox")]
    Sandbox(crate::sandbox::cli::SandboxArgs),
    /// Build (once, into a cache) the upstream control plane the sandbox runs, and print where.
    #[cfg(feature = "sandbox")]
    ControlPlane(crate::sandbox::cli::ControlPlaneArgs),
    /// The data mover: certificates, send and receive.
    Mover(crate::mover::cli::MoverArgs),
    /// Run a program for the sandbox, ending it when the sandbox is gone (internal).
    #[cfg(feature = "sandbox")]
    #[command(hide = true)]
    Supervise(crate::sandbox::supervise::SuperviseArgs),
}
