//! `sovereign sandbox`: two simulated clusters (`source`, an EKS cluster in us-east-1, and
//! `target`, in Québec), a kubeconfig for them, the sample application migrated by the operator
//! running in this process with its progress shown live, then served until Ctrl-C (or, with
//! `--exit-when-done`, the migration's outcome as the exit code).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::BinaryBytes;

use super::progress::Board;
use super::{SandboxError, SimCluster, SimOptions, demo, demo_data, seed, write_kubeconfig};

#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Only serve the clusters; do not run the migration.
    #[arg(long)]
    pub no_migrate: bool,
    /// Working directory of the sandbox: the kubeconfig, and per cluster its volumes' files,
    /// pod directories and container logs.
    #[arg(long, default_value = "./sandbox")]
    pub dir: PathBuf,
    /// Total size of the files written into the sample application's volumes (e.g. 64MiB,
    /// 1GiB, 0).
    #[arg(long, default_value = "64MiB", value_parser = demo_data::parse_size)]
    pub data_size: u64,
    /// Where to write the kubeconfig (default: <dir>/kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Port of the source cluster (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub source_port: u16,
    /// Port of the target cluster (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub target_port: u16,
    /// Exit when the migration ends: 0 when it completed, non-zero with the reason otherwise.
    #[arg(long)]
    pub exit_when_done: bool,
    /// The target: `qc-sovereign` (self-managed on Québec-owned infrastructure, compliant with
    /// quebec-strict) or `ovh-bhs5` (OVHcloud Beauharnois: in Québec, French-parented, so blocked).
    #[arg(long, default_value = "qc-sovereign", value_parser = ["qc-sovereign", "ovh-bhs5"])]
    pub target_profile: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxCliError {
    #[error("the migration did not complete: {0}")]
    MigrationStopped(String),
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SandboxCliError::Runtime)?;
    let mut board = Board::new();
    // The operator's info logs would bury the progress: warnings and errors only unless RUST_LOG
    // says otherwise. Installed before the operator starts, whose own set-up then keeps this one.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(board.log_writer())
        .try_init();
    rt.block_on(serve(args, &mut board))
}

async fn serve(args: &SandboxArgs, board: &mut Board) -> Result<(), SandboxCliError> {
    let source = SimCluster::start_with(
        "source",
        SocketAddr::from(([127, 0, 0, 1], args.source_port)),
        SimOptions::in_dir(&args.dir),
    )
    .await?;
    seed::eks_us_east_1(source.api()).map_err(SandboxError::from)?;
    let target = SimCluster::start_with(
        "target",
        SocketAddr::from(([127, 0, 0, 1], args.target_port)),
        SimOptions::in_dir(&args.dir),
    )
    .await?;
    if args.target_profile == "ovh-bhs5" {
        seed::ovh_bhs5(target.api()).map_err(SandboxError::from)?;
    } else {
        seed::qc_sovereign(target.api()).map_err(SandboxError::from)?;
    }
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
    let profile = if args.target_profile == "ovh-bhs5" {
        "OVHcloud MKS, Beauharnois QC"
    } else {
        "self-managed, Québec-owned infrastructure"
    };
    println!("  target  {}  ({profile})", target.url());
    println!("Kubeconfig: {kc} (current context: target)\n");
    println!("Explore them with the real kubectl:");
    println!("  export KUBECONFIG={kc}");
    println!("  kubectl get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone");
    println!("  kubectl --context source get nodes -o wide");
    println!("  kubectl get storageclass");
    println!("  kubectl api-resources");
    println!("  kubectl apply -f crds/ && kubectl get crd");
    let mut operator = None;
    if !args.no_migrate {
        println!(
            "\nMigrating SovereignWorkload {}/{} (the operator runs in this process):",
            demo::WORKLOAD_NAMESPACE,
            demo::WORKLOAD
        );
        demo::seed_application(&source)?;
        demo_data::write(&source, "sante", args.data_size).await?;
        println!(
            "  wrote {} of sample data into the application's volumes",
            BinaryBytes(args.data_size)
        );
        demo::register(&source, &target, &args.target_profile)?;
        let started = Instant::now();
        // Ctrl-C while the migration runs stops the sandbox as it would once it is done.
        let followed = tokio::select! {
            f = demo::follow(&target, board) => f?,
            _ = wait_for_signal() => {
                println!("\nStopping.");
                source.shutdown().await;
                target.shutdown().await;
                return Err(SandboxCliError::MigrationStopped("interrupted".into()));
            }
        };
        let elapsed = started.elapsed();
        println!();
        if let Some(s) = &followed.status {
            demo::print_plan(s);
        }
        demo::print_result(&followed);
        let stopped = match &followed.outcome {
            demo::Outcome::Completed => {
                println!(
                    "\nThe migration completed in {:.1}s: the target serves, the source is kept at zero replicas.",
                    elapsed.as_secs_f64()
                );
                None
            }
            demo::Outcome::Stopped(reason) => {
                println!(
                    "\nThe migration stopped after {:.1}s: {reason}",
                    elapsed.as_secs_f64()
                );
                Some(reason.clone())
            }
        };
        operator = Some(followed.operator);
        if args.exit_when_done {
            println!(
                "\nRun without --exit-when-done to keep both clusters up and explore them with:"
            );
        } else {
            println!("\nExplore both sides:");
            println!("  export KUBECONFIG={kc}");
        }
        let ns = demo::WORKLOAD_NAMESPACE;
        println!(
            "  kubectl --context source get deploy,sts,ds,cronjob -n sante   # the source, stopped"
        );
        println!(
            "  kubectl get deploy,sts,ds,cronjob,pvc -n sante             # the target, serving"
        );
        println!("  kubectl get sw,vt -A");
        println!("  kubectl describe sw -n {ns} {}", demo::WORKLOAD);
        println!("  kubectl get events -n {ns}");
        if args.exit_when_done {
            if let Some(t) = operator {
                t.abort();
            }
            source.shutdown().await;
            target.shutdown().await;
            return match stopped {
                None => Ok(()),
                Some(reason) => Err(SandboxCliError::MigrationStopped(reason)),
            };
        }
    }
    println!("\nPress Ctrl-C to stop.");
    wait_for_signal().await;
    if let Some(t) = operator {
        t.abort();
    }
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
