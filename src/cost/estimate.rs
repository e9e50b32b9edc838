//! The estimate of a migration: a one-time cost (egress, both sides running in parallel, the
//! mover's pods) and the monthly run-rate before (source) and after (target), each as line items
//! in the report currency.
//!
//! Not priced: the small claim in which the sender keeps its stat cache between passes
//! (`controller::transfer::cache`, max(1 GiB, capacity/256) for the migration's duration) costs
//! cents next to the movers' pod time and the egress.
//!
//! A month is [`HOURS_PER_MONTH`] = 730 hours throughout. Amounts keep full precision; round with
//! [`Estimate::rounded`] to present them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::PriceList;
use super::egress::egress_charge;
use super::error::{CostError, check_quantity};
use super::fx::{FxTable, Rate};
use super::lines::{LineBuilder, Section};
use super::money;
use crate::api::workload::{CostEstimate, CostItem};

/// Hours in a month, everywhere in the cost model (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// The sustained rate the default durations assume: 25 MiB/s (≈ 210 Mbit/s), conservative for
/// transfers over the internet between providers, so the default over-estimates rather than under.
pub const CONSERVATIVE_BYTES_PER_SECOND: f64 = 25.0 * 1024.0 * 1024.0;

/// Added to the transfer time in the default parallel-running time: a day in which both sides run
/// while the target is checked before cutover.
pub const PARALLEL_MARGIN_HOURS: f64 = 24.0;

/// The default shape of a mover pod (sender and receiver each): 1 core, 1 GiB requested.
pub const DEFAULT_MOVER_CPU_CORES: f64 = 1.0;
pub const DEFAULT_MOVER_MEMORY_GIB: f64 = 1.0;

/// A volume's use: its StorageClass on that side and its size in GiB.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeUse {
    pub storage_class: String,
    pub gib: f64,
}

/// What a workload uses on one side. On the target side, volumes carry the target's StorageClass
/// names (after `storageClassMap`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Footprint {
    /// Sum of container CPU requests, in cores.
    pub cpu_cores: f64,
    /// Sum of container memory requests, in GiB.
    pub memory_gib: f64,
    pub volumes: Vec<VolumeUse>,
    pub load_balancers: u32,
}

/// One side of the migration: the cluster's name, its prices, and the workload's footprint there.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    pub cluster: &'a str,
    pub prices: &'a PriceList,
    pub footprint: &'a Footprint,
}

/// Pod time of movers on one side.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodHours {
    /// Σ requested cores × hours run.
    pub cpu_core_hours: f64,
    /// Σ requested GiB × hours run.
    pub memory_gib_hours: f64,
}

/// The mover's own pods: the sender runs on (and is priced at) the source, the receiver on the
/// target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MoverUse {
    pub sender: PodHours,
    pub receiver: PodHours,
}

impl MoverUse {
    /// A sender and a receiver of the same shape, running `hours`.
    pub fn running(cpu_cores: f64, memory_gib: f64, hours: f64) -> Self {
        let side = PodHours {
            cpu_core_hours: cpu_cores * hours,
            memory_gib_hours: memory_gib * hours,
        };
        MoverUse {
            sender: side,
            receiver: side,
        }
    }

    /// The default: one sender and one receiver of the default shape, for [`transfer_hours`].
    pub fn default_for(bytes: u64) -> Self {
        Self::running(
            DEFAULT_MOVER_CPU_CORES,
            DEFAULT_MOVER_MEMORY_GIB,
            transfer_hours(bytes),
        )
    }
}

/// Hours to send `bytes` at [`CONSERVATIVE_BYTES_PER_SECOND`].
pub fn transfer_hours(bytes: u64) -> f64 {
    bytes as f64 / CONSERVATIVE_BYTES_PER_SECOND / 3600.0
}

/// The default parallel-running time: the transfer at the conservative rate plus
/// [`PARALLEL_MARGIN_HOURS`]. The time the source is retained after cutover
/// (`retainSourceFor`) is not included; a caller that keeps the source running adds it.
pub fn default_parallel_hours(bytes: u64) -> f64 {
    transfer_hours(bytes) + PARALLEL_MARGIN_HOURS
}

/// Everything the estimate needs. [`EstimateInput::new`] fills the defaults.
#[derive(Clone, Copy, Debug)]
pub struct EstimateInput<'a> {
    pub source: Side<'a>,
    pub target: Side<'a>,
    pub bytes_to_move: u64,
    /// Offline: the PVCs' requested capacity stands in for the bytes (an upper bound); said in
    /// the egress lines' source.
    pub bytes_are_capacity: bool,
    /// Hours both sides run during the migration.
    pub parallel_hours: f64,
    pub mover: MoverUse,
    pub report_currency: &'a str,
    pub fx: &'a FxTable,
    /// Share of a control plane attributed to this workload. Default 0: a cluster's control plane
    /// is shared by many workloads and is paid before and after the move whatever one workload
    /// does, so attributing it would count it once per workload. Set it (e.g. 1.0 for a cluster
    /// dedicated to the workload) to include it.
    pub control_plane_share: f64,
    /// GiB the source already sent to the internet this month (uses the free allowance and
    /// moves the transfer up the tiers). Default 0.
    pub egress_already_sent_gib: f64,
}

impl<'a> EstimateInput<'a> {
    /// An input with the defaults: CAD, parallel time and mover from the data size
    /// ([`default_parallel_hours`], [`MoverUse::default_for`]), no control-plane share, nothing
    /// sent earlier in the month.
    pub fn new(source: Side<'a>, target: Side<'a>, bytes_to_move: u64, fx: &'a FxTable) -> Self {
        EstimateInput {
            source,
            target,
            bytes_to_move,
            bytes_are_capacity: false,
            parallel_hours: default_parallel_hours(bytes_to_move),
            mover: MoverUse::default_for(bytes_to_move),
            report_currency: "CAD",
            fx,
            control_plane_share: 0.0,
            egress_already_sent_gib: 0.0,
        }
    }
}

/// The estimate, in `currency`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    pub currency: String,
    pub one_time: Section,
    pub monthly_before: Section,
    pub monthly_after: Section,
    /// Lines whose price is unknown (`section: name`): when not empty, the totals are lower bounds.
    pub unpriced: Vec<String>,
    /// The bytes are the PVCs' capacity, not measured data.
    pub bytes_are_capacity: bool,
    /// What the figures assume, in words.
    pub assumptions: Vec<String>,
    /// The exchange rates used.
    pub rates: Vec<Rate>,
}

impl Estimate {
    /// All lines priced.
    pub fn is_complete(&self) -> bool {
        self.unpriced.is_empty()
    }

    /// The presentation copy: amounts and totals rounded to cents (see [`Section::rounded`]).
    pub fn rounded(&self) -> Estimate {
        Estimate {
            one_time: self.one_time.rounded(),
            monthly_before: self.monthly_before.rounded(),
            monthly_after: self.monthly_after.rounded(),
            ..self.clone()
        }
    }

    /// For `status.cost.estimated`, in cents.
    pub fn to_cost_estimate(&self) -> CostEstimate {
        CostEstimate {
            one_time: money::round_cents(self.one_time.total),
            monthly_before: money::round_cents(self.monthly_before.total),
            monthly_after: money::round_cents(self.monthly_after.total),
        }
    }

    /// Every line, section-prefixed (`one-time: …`, `monthly before: …`, `monthly after: …`),
    /// rounded: the breakdown for `status.cost.items`.
    pub fn status_items(&self) -> Vec<CostItem> {
        let r = self.rounded();
        [
            ("one-time", &r.one_time),
            ("monthly before", &r.monthly_before),
            ("monthly after", &r.monthly_after),
        ]
        .into_iter()
        .flat_map(|(label, s)| {
            s.items.iter().map(move |i| CostItem {
                name: format!("{label}: {}", i.name),
                ..i.clone()
            })
        })
        .collect()
    }

    /// The printer-column text: `4,812.10 CAD (est.)`.
    pub fn display(&self) -> String {
        money::display(self.one_time.total, &self.currency, true)
    }
}

/// Validated one-time facts, shared with the ledger (which derives them from observations).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneTime {
    pub bytes: u64,
    pub bytes_are_capacity: bool,
    pub parallel_hours: f64,
    pub mover: MoverUse,
    pub control_plane_share: f64,
    pub egress_already_sent_gib: f64,
}

/// Estimates a migration.
pub fn estimate(input: &EstimateInput) -> Result<Estimate, CostError> {
    for side in [&input.source, &input.target] {
        check_footprint(side)?;
    }
    let one = OneTime {
        bytes: input.bytes_to_move,
        bytes_are_capacity: input.bytes_are_capacity,
        parallel_hours: check_quantity("parallel hours", input.parallel_hours)?,
        mover: check_mover(&input.mover)?,
        control_plane_share: check_quantity("control-plane share", input.control_plane_share)?,
        egress_already_sent_gib: check_quantity(
            "GiB already sent this month",
            input.egress_already_sent_gib,
        )?,
    };
    let mut b = LineBuilder::new(input.report_currency, input.fx);
    let one_time = one_time_section(&mut b, &input.source, &input.target, &one);
    let mut monthly_before = Section::default();
    run_lines(
        &mut b,
        &mut monthly_before,
        &input.source,
        HOURS_PER_MONTH,
        input.source.cluster,
        one.control_plane_share,
    );
    let mut monthly_after = Section::default();
    run_lines(
        &mut b,
        &mut monthly_after,
        &input.target,
        HOURS_PER_MONTH,
        input.target.cluster,
        one.control_plane_share,
    );

    let unpriced = [
        ("one-time", &one_time),
        ("monthly before", &monthly_before),
        ("monthly after", &monthly_after),
    ]
    .iter()
    .flat_map(|(label, s)| {
        s.unpriced()
            .into_iter()
            .map(move |n| format!("{label}: {n}"))
    })
    .collect();

    let mut assumptions = vec![
        format!("a month is {HOURS_PER_MONTH} hours"),
        format!(
            "both sides run in parallel for {:.1} hours during the migration",
            one.parallel_hours
        ),
    ];
    if input.bytes_are_capacity {
        assumptions.push(
            "bytes to move are the PVCs' requested capacity (offline plan), an upper bound of the data"
                .to_string(),
        );
    }
    if one.control_plane_share == 0.0 {
        assumptions.push(
            "no share of either control plane is attributed to the workload (shared by all workloads)"
                .to_string(),
        );
    }
    for r in b.rates.iter().filter(|r| r.placeholder) {
        assumptions.push(format!(
            "exchange rate {} is a built-in placeholder, not a market rate: override it with --fx or the rate ConfigMap",
            r.citation()
        ));
    }
    Ok(Estimate {
        currency: input.report_currency.to_string(),
        one_time,
        monthly_before,
        monthly_after,
        unpriced,
        bytes_are_capacity: input.bytes_are_capacity,
        assumptions,
        rates: b.rates,
    })
}

/// Egress from the source, both sides running for the parallel hours, and the mover's pods.
pub(crate) fn one_time_section(
    b: &mut LineBuilder,
    source: &Side,
    target: &Side,
    one: &OneTime,
) -> Section {
    let mut s = Section::default();
    egress_lines(b, &mut s, source, one);
    for side in [source, target] {
        let prefix = format!("parallel running {}", side.cluster);
        run_lines(
            b,
            &mut s,
            side,
            one.parallel_hours,
            &prefix,
            one.control_plane_share,
        );
    }
    for (role, side, pods) in [
        ("sender", source, one.mover.sender),
        ("receiver", target, one.mover.receiver),
    ] {
        let p = side.prices;
        b.priced(
            &mut s,
            format!("mover {role} ({}): vCPU", side.cluster),
            pods.cpu_core_hours,
            "vCPU-hour",
            p.vcpu_hour.as_ref(),
            || p.missing("vcpuHour"),
        );
        b.priced(
            &mut s,
            format!("mover {role} ({}): memory", side.cluster),
            pods.memory_gib_hours,
            "GiB-hour",
            p.memory_gib_hour.as_ref(),
            || p.missing("memoryGiBHour"),
        );
    }
    s
}

fn egress_lines(b: &mut LineBuilder, s: &mut Section, source: &Side, one: &OneTime) {
    let p = source.prices;
    let free = p.free_egress.as_ref();
    let charge = egress_charge(
        one.bytes,
        p.egress.as_ref().map(|e| &e.rate),
        free.map_or(0.0, |a| a.gib),
        one.egress_already_sent_gib,
    );
    let basis = if one.bytes_are_capacity {
        "; quantity is the PVCs' requested capacity (offline), not measured data"
    } else {
        ""
    };
    let name = |what: &str| format!("egress from {}: {what}", source.cluster);
    if charge.allowance.used_by_transfer_gib > 0.0 {
        let a = &charge.allowance;
        let src = match free {
            Some(f) => format!(
                "{}; {} GiB/month free, {} GiB used earlier this month{basis}",
                f.source,
                num(a.free_gib),
                num(a.used_before_gib)
            ),
            None => String::new(),
        };
        // A free line is priced at 0 from a known source: it is not "unpriced".
        let currency = b.currency;
        b.line(
            s,
            name("free allowance"),
            a.used_by_transfer_gib,
            "GiB",
            Some((0.0, currency, &src)),
            String::new,
        );
    }
    if let Some(e) = &p.egress {
        for t in &charge.tiers {
            let range = match t.to_gib {
                Some(to) => format!("{}–{} GiB of the month", num(t.from_gib), num(to)),
                None if t.from_gib > 0.0 => format!("beyond {} GiB of the month", num(t.from_gib)),
                None => "per GiB".to_string(),
            };
            let src = format!("{}{basis}", e.source);
            b.line(
                s,
                name(&format!("tier {} ({range})", t.tier)),
                t.gib,
                "GiB",
                Some((t.per_gib, &e.currency, &src)),
                String::new,
            );
        }
    }
    if charge.unpriced_gib > 0.0 {
        b.line(
            s,
            name(if charge.allowance.free_gib > 0.0 {
                "beyond the free allowance"
            } else {
                "internet egress"
            }),
            charge.unpriced_gib,
            "GiB",
            None,
            || format!("{}{basis}", p.missing("egressPerGiB or egressTiers")),
        );
    }
}

/// The run-rate lines of a side's footprint for `hours`: vCPU, memory, storage by class, load
/// balancers and the control-plane share.
fn run_lines(
    b: &mut LineBuilder,
    s: &mut Section,
    side: &Side,
    hours: f64,
    prefix: &str,
    control_plane_share: f64,
) {
    let p = side.prices;
    let f = side.footprint;
    b.priced(
        s,
        format!("{prefix}: vCPU"),
        f.cpu_cores * hours,
        "vCPU-hour",
        p.vcpu_hour.as_ref(),
        || p.missing("vcpuHour"),
    );
    b.priced(
        s,
        format!("{prefix}: memory"),
        f.memory_gib * hours,
        "GiB-hour",
        p.memory_gib_hour.as_ref(),
        || p.missing("memoryGiBHour"),
    );
    // One line per class, in name order, so the output is stable.
    let mut by_class: BTreeMap<&str, f64> = BTreeMap::new();
    for v in &f.volumes {
        *by_class.entry(v.storage_class.as_str()).or_default() += v.gib;
    }
    for (class, gib) in by_class {
        b.priced(
            s,
            format!("{prefix}: storage {class}"),
            gib * hours / HOURS_PER_MONTH,
            "GiB-month",
            p.storage(class),
            || p.missing(&format!("storagePerGiBMonth for class {class}")),
        );
    }
    b.priced(
        s,
        format!("{prefix}: load balancers"),
        f64::from(f.load_balancers) * hours,
        "LB-hour",
        p.load_balancer_hour.as_ref(),
        || p.missing("loadBalancerHour"),
    );
    b.priced(
        s,
        format!("{prefix}: control plane share"),
        control_plane_share * hours,
        "cluster-hour",
        p.control_plane_hour.as_ref(),
        || p.missing("controlPlaneHour"),
    );
}

pub(crate) fn check_footprint(side: &Side) -> Result<(), CostError> {
    let f = side.footprint;
    check_quantity(&format!("CPU cores on {}", side.cluster), f.cpu_cores)?;
    check_quantity(&format!("memory GiB on {}", side.cluster), f.memory_gib)?;
    for v in &f.volumes {
        check_quantity(
            &format!("GiB of a {} volume on {}", v.storage_class, side.cluster),
            v.gib,
        )?;
    }
    Ok(())
}

pub(crate) fn check_mover(m: &MoverUse) -> Result<MoverUse, CostError> {
    check_quantity("mover sender core-hours", m.sender.cpu_core_hours)?;
    check_quantity("mover sender GiB-hours", m.sender.memory_gib_hours)?;
    check_quantity("mover receiver core-hours", m.receiver.cpu_core_hours)?;
    check_quantity("mover receiver GiB-hours", m.receiver.memory_gib_hours)?;
    Ok(*m)
}

/// A GiB figure for a name: whole numbers without decimals.
fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}
