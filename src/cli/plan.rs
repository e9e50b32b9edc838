//! `sovereign plan`: the migration plan, the residency pre-flight and the cost estimate, offline, from
//! files — so a team can price and review a move before it has credentials for the target.
//! Exit code 0: the plan could run; 1: it would be stopped (plan errors, residency under Block, over
//! budget); 2: bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use super::files::{FileError, parse_yaml, read};
use crate::api::workload::{Mode, SovereignWorkloadSpec};
use crate::api::{Severity, SovereignCluster, SovereignWorkload, Verdict};
use crate::cost::{self, Estimate, FxTable};
use crate::migrate::{self, Plan, PlanInput};
use crate::residency::policy::{QUEBEC_STRICT, quebec_strict};
use crate::residency::{Catalog, Inventory, evaluate, preflight};

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The source objects as `kubectl get … -o yaml` prints them (a List or multi-document YAML).
    #[arg(long)]
    pub objects: PathBuf,
    /// The source's SovereignCluster manifest.
    #[arg(long)]
    pub source_cluster: PathBuf,
    /// The target's SovereignCluster manifest.
    #[arg(long)]
    pub target_cluster: PathBuf,
    /// The SovereignWorkload (selector, mappings, rewrites, budget); defaults apply without it.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// A ResidencyPolicy manifest, or `quebec-strict` (built in).
    #[arg(long, default_value = QUEBEC_STRICT)]
    pub policy: String,
    /// An exchange rate overriding the built-in table, e.g. `USD:CAD=1.38` (repeatable).
    #[arg(long = "fx")]
    pub fx: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value_t = super::residency::Output::Table)]
    pub output: super::residency::Output,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    Cost(#[from] cost::CostError),
}

/// Objects of a `kubectl get -o yaml` file, Lists flattened.
fn objects(path: &Path) -> Result<Vec<Value>, PlanError> {
    use serde::Deserialize;
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| {
            FileError::parse(path, format!("document {} is not valid YAML: {e}", i + 1))
        })?;
        match v["items"].as_array() {
            Some(items) if v["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
                out.extend(items.iter().cloned())
            }
            _ if v.is_null() => {}
            _ => out.push(v),
        }
    }
    if out.is_empty() {
        return Err(FileError::parse(path, "holds no Kubernetes objects").into());
    }
    Ok(out)
}

/// The complete offline report.
pub struct Report {
    pub plan: Plan,
    pub residency: (Verdict, Vec<crate::api::Finding>),
    pub estimate: Estimate,
    pub budget: Option<cost::BudgetCheck>,
    pub blocked: Vec<String>,
    pub notes: Vec<String>,
}

pub fn build(args: &PlanArgs) -> Result<Report, PlanError> {
    let objs = objects(&args.objects)?;
    let source: SovereignCluster = parse_yaml(&args.source_cluster, "SovereignCluster")?;
    let target: SovereignCluster = parse_yaml(&args.target_cluster, "SovereignCluster")?;
    let workload: Option<SovereignWorkload> = args
        .workload
        .as_ref()
        .map(|p| parse_yaml(p, "SovereignWorkload"))
        .transpose()?;
    let policy = if args.policy == QUEBEC_STRICT {
        quebec_strict()
    } else {
        parse_yaml::<crate::api::ResidencyPolicy>(Path::new(&args.policy), "ResidencyPolicy")?.spec
    };
    // Without a workload: the namespace the objects are in, moved as it is.
    let namespace = objs
        .iter()
        .find_map(|o| o["metadata"]["namespace"].as_str())
        .unwrap_or("default")
        .to_string();
    let source_name = source.metadata.name.clone().unwrap_or_default();
    let target_name = target.metadata.name.clone().unwrap_or_default();
    let spec: SovereignWorkloadSpec = match &workload {
        Some(w) => w.spec.clone(),
        None => serde_json::from_value(json!({"source": {"cluster": source_name, "namespace": namespace}, "target": {"cluster": target_name}}))
            .map_err(|e| FileError::parse(&args.objects, e.to_string()))?,
    };
    let workload_key = workload
        .as_ref()
        .map(|w| {
            format!(
                "{}/{}",
                w.metadata.namespace.as_deref().unwrap_or("default"),
                w.metadata.name.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_else(|| format!("offline/{namespace}"));
    let objs: Vec<Value> = objs
        .into_iter()
        .filter(|o| {
            o["metadata"]["namespace"]
                .as_str()
                .is_none_or(|n| n == spec.source.namespace)
        })
        .collect();
    let target_status = target.status.clone().unwrap_or_default();
    let target_namespace = spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| spec.source.namespace.clone());
    let catalog = Catalog::embedded();
    let plan = migrate::build(&PlanInput {
        objects: &objs,
        source_namespace: &spec.source.namespace,
        target_namespace: &target_namespace,
        target_cluster: &target_name,
        selector: spec.source.selector.as_ref(),
        include_kinds: &spec.source.include_kinds,
        exclude_kinds: &spec.source.exclude_kinds,
        storage_class_map: &spec.target.storage_class_map,
        target_storage_classes: &target_status.storage_classes,
        image_rewrites: &spec.target.image_rewrites,
        // As in the operator: only a region the target's nodes are seen to carry.
        target_region: target_status
            .nodes
            .as_ref()
            .filter(|n| n.regions.len() == 1)
            .and_then(|n| n.regions.first())
            .map(String::as_str),
        patches: &spec.target.patches,
        workload: &workload_key,
        catalog,
    });

    // Residency: the target as declared (offline) and the planned objects' dependencies.
    let declared_target = crate::api::cluster::SovereignClusterStatus {
        location: target.spec.location.as_ref().map(|l| l.code()),
        jurisdiction: target.spec.jurisdiction.clone(),
        ..target_status.clone()
    };
    let (mut verdict, mut findings) =
        preflight::target(&target_name, Some(&declared_target), &policy);
    let mut inv = Inventory::default();
    for o in &plan.objects {
        // The planned objects were built from valid source objects; one that does not re-read is
        // simply not judged.
        let _ = inv.add(o.object.clone());
    }
    let deps = evaluate(&inv, Some(&target.spec), &policy, catalog);
    for f in deps
        .findings
        .into_iter()
        .filter(|f| !f.object.starts_with("SovereignCluster") && f.object != "Cluster")
    {
        if f.severity == Severity::Error {
            verdict = Verdict::NonCompliant;
        } else if f.severity == Severity::Warning && verdict == Verdict::Compliant {
            verdict = Verdict::Unknown;
        }
        findings.push(f);
    }

    // Cost: both sides' prices, the workload's usage before and after.
    let fx = FxTable::builtin().with_overrides(
        args.fx
            .iter()
            .map(|s| cost::parse_override(s))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let currency = spec
        .cost
        .as_ref()
        .map(|c| c.currency.clone())
        .unwrap_or_else(|| "CAD".into());
    let estimate = cost::estimate_plan(&plan, &source, &target, &currency, &fx, true)?;
    let budget = spec
        .cost
        .as_ref()
        .and_then(|c| c.budget.as_ref())
        .map(|b| cost::check_estimate(&estimate, b, &fx))
        .transpose()?;

    let mut blocked = Vec::new();
    if plan.has_errors() {
        blocked.push("the plan has errors".to_string());
    }
    if verdict != Verdict::Compliant
        && policy.enforcement == crate::api::policy::Enforcement::Block
        && spec.mode != Mode::Plan
    {
        blocked.push(format!("residency is {verdict:?} under a Block policy"));
    }
    if let Some(b) = budget.as_ref().filter(|b| !b.within) {
        blocked.push(b.message.clone());
    }
    let mut notes =
        vec!["offline: each PVC's requested capacity stands in for the bytes to move".to_string()];
    notes.extend(estimate.assumptions.iter().cloned());
    Ok(Report {
        plan,
        residency: (verdict, findings),
        estimate,
        budget,
        blocked,
        notes,
    })
}

pub fn to_json(r: &Report) -> Value {
    let e = r.estimate.rounded();
    json!({
        "hash": r.plan.hash,
        "objects": r.plan.objects.iter().map(|o| json!({"kind": o.kind, "name": o.name, "apiVersion": o.api_version, "transforms": o.transforms})).collect::<Vec<_>>(),
        "volumes": r.plan.volumes,
        "transforms": r.plan.transforms,
        "findings": r.plan.findings,
        "skipped": r.plan.skipped,
        "residency": {"verdict": r.residency.0, "findings": r.residency.1},
        "cost": {
            "currency": e.currency,
            "oneTime": {"total": e.one_time.total, "items": e.one_time.items},
            "monthlyBefore": e.monthly_before.total,
            "monthlyAfter": e.monthly_after.total,
            "monthlyBeforeItems": e.monthly_before.items,
            "monthlyAfterItems": e.monthly_after.items,
            "unpriced": e.unpriced,
            "complete": r.estimate.is_complete(),
            "budget": r.budget.as_ref().map(|b| json!({"within": b.within, "message": b.message})),
        },
        "blocked": r.blocked,
        "notes": r.notes,
    })
}

pub fn to_table(r: &Report) -> String {
    use std::fmt::Write;
    let e = r.estimate.rounded();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "PLAN {}  {} object(s), {} volume(s), {} byte(s)",
        &r.plan.hash[..12],
        r.plan.objects.len(),
        r.plan.volumes.len(),
        r.plan.bytes()
    );
    let _ = writeln!(out, "\n{:<28} {:<40} TRANSFORMS", "KIND", "NAME");
    for o in &r.plan.objects {
        let _ = writeln!(
            out,
            "{:<28} {:<40} {}",
            o.kind,
            o.name,
            o.transforms.join(",")
        );
    }
    if !r.plan.volumes.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<40} {:<24} {:<24} CAPACITY",
            "VOLUME", "FROM CLASS", "TO CLASS"
        );
        for v in &r.plan.volumes {
            let _ = writeln!(
                out,
                "{:<40} {:<24} {:<24} {}",
                v.pvc,
                v.source_storage_class.as_deref().unwrap_or("-"),
                v.target_storage_class.as_deref().unwrap_or("-"),
                v.capacity_bytes
            );
        }
    }
    let _ = writeln!(out, "\nRESIDENCY {:?}", r.residency.0);
    for f in r.residency.1.iter().chain(r.plan.findings.iter()) {
        let _ = writeln!(
            out,
            "  {:?} {} {}: {} — {}",
            f.severity, f.object, f.evidence, f.rule, f.remediation
        );
    }
    let _ = writeln!(out, "\nCOST ({})", e.currency);
    let _ = writeln!(
        out,
        "  {:<44} {:>14} {:>14} {:>12}",
        "ONE-TIME", "QUANTITY", "UNIT PRICE", "AMOUNT"
    );
    for i in &e.one_time.items {
        let _ = writeln!(
            out,
            "  {:<44} {:>10.2} {:<3} {:>14.4} {:>12.2}",
            i.name, i.quantity, i.unit, i.unit_price, i.amount
        );
    }
    let _ = writeln!(out, "  {:<44} {:>42.2}", "total", e.one_time.total);
    let _ = writeln!(
        out,
        "  monthly before {:.2}, after {:.2}",
        e.monthly_before.total, e.monthly_after.total
    );
    if let Some(b) = &r.budget {
        let _ = writeln!(out, "  budget: {}", b.message);
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    for b in &r.blocked {
        let _ = writeln!(out, "BLOCKED: {b}");
    }
    out
}

pub fn run(args: &PlanArgs) -> ExitCode {
    match build(args) {
        Ok(r) => {
            match args.output {
                super::residency::Output::Json => {
                    match serde_json::to_string_pretty(&to_json(&r)) {
                        Ok(s) => println!("{s}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                super::residency::Output::Table => print!("{}", to_table(&r)),
            }
            ExitCode::from(if r.blocked.is_empty() { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
