//! `sovereign sandbox`: two simulated clusters (`source`, an EKS cluster in us-east-1, and
//! `target`, an OVHcloud cluster in Beauharnois, QC), a kubeconfig for them, served until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{SandboxError, SimCluster, seed, write_kubeconfig};

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Only serve the clusters; do not run the migration.
    #[arg(long)]
    pub no_migrate: bool,
    /// Working directory of the sandbox.
    #[arg(long, default_value = "./sandbox")]
    pub dir: PathBuf,
    /// Where to write the kubeconfig (default: <dir>/kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Port of the source cluster (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub source_port: u16,
    /// Port of the target cluster (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub target_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxCliError {
    #[error(
        "the migration part of the sandbox is not built yet: run `sovereign sandbox --no-migrate` to serve the two clusters only"
    )]
    MigrationNotBuilt,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

pub fn run(args: &SandboxArgs) -> Result<(), SandboxCliError> {
    if !args.no_migrate {
        return Err(SandboxCliError::MigrationNotBuilt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SandboxCliError::Runtime)?;
    rt.block_on(serve(args))
}

async fn serve(args: &SandboxArgs) -> Result<(), SandboxCliError> {
    let source = SimCluster::start_on(
        "source",
        SocketAddr::from(([127, 0, 0, 1], args.source_port)),
    )
    .await?;
    seed::eks_us_east_1(source.api()).map_err(SandboxError::from)?;
    let target = SimCluster::start_on(
        "target",
        SocketAddr::from(([127, 0, 0, 1], args.target_port)),
    )
    .await?;
    seed::ovh_bhs5(target.api()).map_err(SandboxError::from)?;
    let path = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.dir.join("kubeconfig"));
    std::fs::create_dir_all(&args.dir).map_err(|source| SandboxCliError::Write {
        path: args.dir.clone(),
        source,
    })?;
    write_kubeconfig(&path, &[("source", &source), ("target", &target)], "target").map_err(
        |source| SandboxCliError::Write {
            path: path.clone(),
            source,
        },
    )?;
    let kc = path.display();
    println!("Sandbox clusters are serving:");
    println!("  source  {}  (EKS, us-east-1)", source.url());
    println!("  target  {}  (OVHcloud MKS, Beauharnois QC)", target.url());
    println!("Kubeconfig: {kc} (current context: target)\n");
    println!("Explore them with the real kubectl:");
    println!("  export KUBECONFIG={kc}");
    println!("  kubectl get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone");
    println!("  kubectl --context source get nodes -o wide");
    println!("  kubectl get storageclass");
    println!("  kubectl api-resources");
    println!("  kubectl apply -f crds/ && kubectl get crd");
    println!("\nPress Ctrl-C to stop.");
    wait_for_signal().await;
    println!("Stopping.");
    source.shutdown().await;
    target.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
