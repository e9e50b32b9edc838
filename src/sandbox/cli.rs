//! `sovereign sandbox`: two real clusters on loopback (`source`, an EKS cluster in us-east-1,
//! and `target`, in Québec: upstream etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler each, with the node agent), a kubeconfig for them, the operator installed with
//! Helm from its chart (its Deployment's pod runs as the chart's ServiceAccount, with the least
//! rights in the source that `charts/sovereign-source-access` grants), the sample application
//! migrated by it with its progress shown live, then served
//! until Ctrl-C (or, with `--exit-when-done`, the migration's outcome as the exit code). A second
//! start on the same `--dir` resumes both clusters as they were.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::BinaryBytes;
use kube::Api;

use super::controlplane::binaries::{self, Binaries};
use super::demo::Names;
use super::progress::Board;
use super::{
    Cluster, ClusterOptions, SandboxError, demo, demo_data, install, profiles, write_kubeconfig,
};
use crate::api::SovereignWorkload;

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
    /// Port of the source cluster's API server on its own loopback address (0: 6443).
    #[arg(long, default_value_t = 0)]
    pub source_port: u16,
    /// Port of the target cluster's API server on its own loopback address (0: 6443).
    #[arg(long, default_value_t = 0)]
    pub target_port: u16,
    /// A directory with etcd, kube-apiserver, kube-controller-manager and kube-scheduler to run
    /// instead of the ones built from the pinned modules (such as setup-envtest's, plus the two
    /// controllers).
    #[arg(long, env = binaries::BIN_ENV)]
    pub control_plane_bin: Option<PathBuf>,
    /// Exit when the migration ends: 0 when it completed, non-zero with the reason otherwise.
    #[arg(long)]
    pub exit_when_done: bool,
    /// The target: `qc-sovereign` (self-managed on Québec-owned infrastructure, compliant with
    /// quebec-strict) or `ovh-bhs5` (OVHcloud Beauharnois: in Québec, French-parented, so blocked).
    #[arg(long, default_value = "qc-sovereign", value_parser = ["qc-sovereign", "ovh-bhs5"])]
    pub target_profile: String,
}

#[derive(clap::Args, Debug)]
pub struct ControlPlaneArgs {
    /// Use (and check) this directory of programs instead of building them.
    #[arg(long, env = binaries::BIN_ENV)]
    pub control_plane_bin: Option<PathBuf>,
}

/// `sovereign control-plane`: builds the programs when the cache lacks them, then prints their
/// directory and releases.
pub fn control_plane(args: &ControlPlaneArgs) -> Result<(), SandboxCliError> {
    let started = Instant::now();
    let bins = binaries::locate(args.control_plane_bin.as_deref(), &mut |m| println!("{m}"))?;
    println!(
        "{} (Kubernetes {}, etcd {}), ready in {:.1}s",
        bins.dir().display(),
        binaries::KUBERNETES_RELEASE,
        binaries::ETCD_RELEASE,
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
    #[error(transparent)]
    Binaries(#[from] binaries::BinariesError),
    #[error("cannot tell where this program is (it supervises the clusters' processes): {0}")]
    Exe(std::io::Error),
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
        // kube's client logs every 5xx it gets (the API servers answer /readyz with 500 while
        // they start); the operator says what failed in its own words.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(board.log_writer())
        .try_init();
    let bins = binaries::locate(args.control_plane_bin.as_deref(), &mut |m| println!("{m}"))?;
    rt.block_on(serve(args, &bins, &mut board))
}

fn options(
    args: &SandboxArgs,
    name: &str,
    profile: &str,
    port: u16,
    me: &Path,
) -> Result<ClusterOptions, SandboxCliError> {
    let profile = profiles::by_id(profile, 1)
        .ok_or_else(|| SandboxCliError::MigrationStopped(format!("no profile {profile}")))?;
    let dir = std::path::absolute(&args.dir)
        .map_err(|source| SandboxCliError::Write {
            path: args.dir.clone(),
            source,
        })?
        .join(name);
    let mut o = ClusterOptions::new(name, profile, &dir, me);
    o.durable = true;
    if port != 0 {
        o.api_port = port;
    }
    Ok(o)
}

async fn start_clusters(
    args: &SandboxArgs,
    bins: &Binaries,
) -> Result<(Cluster, Cluster), SandboxCliError> {
    let me = std::env::current_exe().map_err(SandboxCliError::Exe)?;
    let source = options(args, "source", "eks-us-east-1", args.source_port, &me)?;
    let target = options(args, "target", &args.target_profile, args.target_port, &me)?;
    let started = Instant::now();
    let (s, t) = tokio::join!(Cluster::start(source, bins), Cluster::start(target, bins));
    match (s, t) {
        (Ok(s), Ok(t)) => {
            let resumed = if s.started_in().1 {
                " (resumed from the directory)"
            } else {
                ""
            };
            println!(
                "Both clusters are ready in {:.1}s{resumed}: Kubernetes {} (etcd, kube-apiserver, kube-controller-manager, kube-scheduler each).",
                started.elapsed().as_secs_f64(),
                binaries::KUBERNETES_RELEASE
            );
            Ok((s, t))
        }
        (Ok(c), Err(e)) | (Err(e), Ok(c)) => {
            c.shutdown().await;
            Err(SandboxError::from(e).into())
        }
        (Err(e), Err(_)) => Err(SandboxError::from(e).into()),
    }
}

async fn serve(
    args: &SandboxArgs,
    bins: &Binaries,
    board: &mut Board,
) -> Result<(), SandboxCliError> {
    let (source, target) = start_clusters(args, bins).await?;
    let result = demo_and_wait(args, bins, &source, &target, board).await;
    println!("Stopping.");
    source.shutdown().await;
    target.shutdown().await;
    result
}

async fn demo_and_wait(
    args: &SandboxArgs,
    bins: &Binaries,
    source: &Cluster,
    target: &Cluster,
    board: &mut Board,
) -> Result<(), SandboxCliError> {
    let path = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.dir.join("kubeconfig"));
    std::fs::create_dir_all(&args.dir).map_err(|source| SandboxCliError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let entries = [
        source.kubeconfig_entry("source"),
        target.kubeconfig_entry("target"),
    ];
    write_kubeconfig(&path, &entries, "target").map_err(|source| SandboxCliError::Write {
        path: path.clone(),
        source,
    })?;
    let kc = path.display();
    let kubectl = bins.kubectl().unwrap_or_else(|| PathBuf::from("kubectl"));
    println!("Sandbox clusters are serving:");
    println!("  source  {}  (EKS, us-east-1)", source.url());
    let profile = if args.target_profile == "ovh-bhs5" {
        "OVHcloud MKS, Beauharnois QC"
    } else {
        "self-managed, Québec-owned infrastructure"
    };
    println!("  target  {}  ({profile})", target.url());
    println!("Kubeconfig: {kc} (current context: target)\n");
    println!(
        "Explore them with kubectl of the same release ({}):",
        kubectl.display()
    );
    println!("  export KUBECONFIG={kc}");
    println!("  kubectl get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone");
    println!("  kubectl --context source get nodes -o wide");
    println!("  kubectl get storageclass");
    println!("  kubectl api-resources");
    println!("  kubectl apply -f crds/ && kubectl get crd");
    if !args.no_migrate {
        let helm = install::Helm::new(bins.helm(), &path, &args.dir);
        let outcome = migrate(args, &helm, source, target, board).await?;
        let names = Names::sandbox();
        if args.exit_when_done {
            println!(
                "\nRun without --exit-when-done to keep both clusters up and explore them with:"
            );
        } else {
            println!("\nExplore both sides:");
            println!("  export KUBECONFIG={kc}");
        }
        let (app, ns) = (&names.app, &names.workloads);
        println!(
            "  kubectl --context source get deploy,sts,ds,cronjob -n {app}   # the source, stopped"
        );
        println!(
            "  kubectl get deploy,sts,ds,cronjob,pvc -n {}             # the target, serving",
            names.target_app
        );
        println!("  kubectl get sw,vt -A");
        println!("  kubectl describe sw -n {ns} {}", names.workload);
        println!("  kubectl get events -n {ns}");
        println!(
            "  kubectl logs -n {} deploy/{}        # the operator",
            names.operator,
            install::OPERATOR_RELEASE
        );
        if args.exit_when_done {
            return outcome;
        }
    }
    println!("\nPress Ctrl-C to stop.");
    wait_for_signal().await;
    Ok(())
}

/// Installs the operator and its source credentials with Helm, seeds the application and
/// registers the workload (unless a previous run on the same directory did), then follows the
/// operator until the migration settles.
async fn migrate(
    args: &SandboxArgs,
    helm: &install::Helm,
    source: &Cluster,
    target: &Cluster,
    board: &mut Board,
) -> Result<Result<(), SandboxCliError>, SandboxCliError> {
    let names = Names::sandbox();
    let (src, dst) = (
        source.client().await.map_err(SandboxError::from)?,
        target.client().await.map_err(SandboxError::from)?,
    );
    let existing = match Api::<SovereignWorkload>::namespaced(dst.clone(), &names.workloads)
        .get_opt(&names.workload)
        .await
    {
        Ok(w) => w,
        // No CRD yet: a fresh cluster (the API server's bare 404 for an unknown resource).
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(SandboxError::api("reading the workload")(e).into()),
    };
    if existing.is_none() {
        demo::seed_application(&src, &names).await?;
        demo_data::write(&src, &names.app, args.data_size).await?;
        println!(
            "\n  wrote {} of sample data into the application's volumes",
            BinaryBytes(args.data_size)
        );
    }
    let installed = Instant::now();
    let source_kubeconfig = install::source_access(
        helm,
        &args.dir,
        &src,
        &source.kubeconfig_entry("source"),
        &names.operator,
        &[names.app.as_str()],
    )
    .await?;
    install::operator(helm, &args.dir, &names.operator, demo::SANTE_REGISTRY).await?;
    println!(
        "  installed with Helm {} in {:.1}s: {} in the source (ServiceAccount {}/{}, the rights of {}), {} in the target (its Deployment runs as ServiceAccount {}/{})",
        binaries::HELM_RELEASE,
        installed.elapsed().as_secs_f64(),
        install::SOURCE_RELEASE,
        names.operator,
        install::SOURCE_ACCOUNT,
        names.app,
        install::OPERATOR_RELEASE,
        names.operator,
        install::OPERATOR_RELEASE,
    );
    println!(
        "\nMigrating SovereignWorkload {}/{} (the operator runs as the chart's Deployment in the target):",
        names.workloads, names.workload
    );
    if existing.is_some() {
        println!("  the workload exists from a previous run on this directory: following it");
    } else {
        demo::register_with_chart(&source_kubeconfig, &dst, &names, &args.target_profile).await?;
    }
    let started = Instant::now();
    // Ctrl-C while the migration runs stops the sandbox as it would once it is done.
    let followed = tokio::select! {
        f = demo::follow(&dst, &names, board) => f?,
        _ = wait_for_signal() => {
            println!("\nInterrupted.");
            return Ok(Err(SandboxCliError::MigrationStopped("interrupted".into())));
        }
    };
    let elapsed = started.elapsed();
    println!();
    if let Some(s) = &followed.status {
        demo::print_plan(s);
    }
    demo::print_result(&followed);
    Ok(match &followed.outcome {
        demo::Outcome::Completed => {
            println!(
                "\nThe migration completed in {:.1}s: the target serves, the source is kept at zero replicas.",
                elapsed.as_secs_f64()
            );
            Ok(())
        }
        demo::Outcome::Stopped(reason) => {
            println!(
                "\nThe migration stopped after {:.1}s: {reason}",
                elapsed.as_secs_f64()
            );
            Err(SandboxCliError::MigrationStopped(reason.clone()))
        }
    })
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
