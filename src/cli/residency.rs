//! `sovereign residency scan`: the operator's residency evaluation from the command line, against a
//! live cluster or a file of objects. Exit code 0 compliant, 1 non-compliant, 2 unknown or bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::files::{FileError, parse_yaml, read};
use crate::api::{ResidencyPolicy, Severity, SovereignCluster, Verdict};
use crate::residency::policy::{QUEBEC_STRICT, quebec_strict};
use crate::residency::{Catalog, Evaluation, Inventory, evaluate};

#[derive(clap::Args, Debug)]
pub struct ResidencyArgs {
    #[command(subcommand)]
    pub command: ResidencyCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ResidencyCommand {
    /// Judge a cluster (live, or objects in a file) against a residency policy.
    Scan(ScanArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Objects as `kubectl get … -o yaml` prints them (a List or multi-document YAML); may include the
    /// cluster's SovereignCluster. Without it, the live cluster of the kubeconfig is scanned.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Kubeconfig of the live cluster (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub context: Option<String>,
    /// Namespaces whose workload objects are judged (repeatable; default all).
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    /// A ResidencyPolicy manifest, or `quebec-strict` (the built-in default).
    #[arg(long, default_value = QUEBEC_STRICT)]
    pub policy: String,
    /// The cluster's SovereignCluster manifest (its declared provider, location, jurisdiction).
    #[arg(long)]
    pub declared: Option<PathBuf>,
    /// A catalog override (the ConfigMap's `catalog.yaml` shape).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Catalog(#[from] crate::residency::catalog::CatalogError),
    #[error("{0}")]
    Inventory(#[from] crate::residency::inventory::InventoryError),
    #[error("cannot reach the cluster: {0}")]
    Cluster(String),
}

/// Runs the scan; the exit code carries the verdict.
pub async fn run(args: &ScanArgs) -> ExitCode {
    match scan(args).await {
        Ok(e) => {
            match args.output {
                Output::Json => match serde_json::to_string_pretty(&e) {
                    Ok(s) => println!("{s}"),
                    Err(err) => {
                        eprintln!("error: cannot print the result: {err}");
                        return ExitCode::from(2);
                    }
                },
                Output::Table => print!("{}", table(&e)),
            }
            ExitCode::from(match e.verdict {
                Verdict::Compliant => 0,
                Verdict::NonCompliant => 1,
                Verdict::Unknown => 2,
            })
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

pub async fn scan(args: &ScanArgs) -> Result<Evaluation, ScanError> {
    let catalog_owned;
    let catalog: &Catalog = match &args.catalog {
        Some(p) => {
            catalog_owned = Catalog::with_override(&read(p)?)?;
            &catalog_owned
        }
        None => Catalog::embedded(),
    };
    let policy = if args.policy == QUEBEC_STRICT {
        quebec_strict()
    } else {
        parse_yaml::<ResidencyPolicy>(Path::new(&args.policy), "ResidencyPolicy")?.spec
    };
    let mut inv = match &args.file {
        Some(path) => {
            Inventory::from_yaml(&read(path)?).map_err(|e| FileError::parse(path, e.to_string()))?
        }
        None => live(args).await?,
    };
    let mut declared = inv.clusters.first().map(|c| c.spec.clone());
    if let Some(path) = &args.declared {
        let c: SovereignCluster = parse_yaml(path, "SovereignCluster")?;
        declared = Some(c.spec);
    }
    inv.clusters.clear();
    Ok(evaluate(&inv, declared.as_ref(), &policy, catalog))
}

async fn live(args: &ScanArgs) -> Result<Inventory, ScanError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let k = Kubeconfig::read_from(path).map_err(|e| ScanError::Cluster(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(k, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| ScanError::Cluster(e.to_string()))?;
    let host = config.cluster_url.host().map(String::from);
    let client = kube::Client::try_from(config).map_err(|e| ScanError::Cluster(e.to_string()))?;
    let mut inv = crate::residency::collect::collect(&client, &args.namespaces)
        .await
        .map_err(|e| ScanError::Cluster(e.to_string()))?;
    inv.api_server_host = host;
    Ok(inv)
}

/// The human-readable report.
pub fn table(e: &Evaluation) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "VERDICT       {:?}\nLOCATION      {}{}\nJURISDICTION  {}\nPROVIDER      {}\nREGION        {}\n",
        e.verdict,
        dash(&e.location),
        if e.declared { " (declared)" } else { "" },
        dash(&e.jurisdiction),
        dash(&e.provider),
        dash(&e.region),
    );
    if e.findings.is_empty() {
        out.push_str("\nNo findings.\n");
        return out;
    }
    out.push_str(&format!("\nFINDINGS ({})\n", e.findings.len()));
    for f in &e.findings {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARN ",
            Severity::Info => "INFO ",
        };
        out.push_str(&format!(
            "{sev} {}{}\n",
            f.object,
            if f.field.is_empty() {
                String::new()
            } else {
                format!(" {}", f.field)
            }
        ));
        out.push_str(&format!(
            "      rule:     {}\n      evidence: {}\n",
            f.rule, f.evidence
        ));
        if !f.remediation.is_empty() {
            out.push_str(&format!("      fix:      {}\n", f.remediation));
        }
    }
    out
}
