//! The actual-cost ledger: a pure function from what was observed to what the migration cost.
//!
//! Crash-safety comes from the shape of the facts, not from remembering what was already added:
//! every observation is merged into [`Facts`] by a *join* (a pass's bytes are keyed by volume and
//! pass number and the largest report wins; the parallel interval keeps the earliest start and the
//! latest end; a mover pod's seconds are keyed by pod uid and the largest wins). A join is
//! idempotent, commutative and associative, so an observation applied twice, observations applied
//! in another order, or all of them replayed after an operator restart (re-read from the
//! VolumeTransfers' `status.passWireBytes`, the workload's times and the pods) give the same facts,
//! hence the same cost. Nothing is ever "added to a running total".

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::error::{CostError, check_quantity};
use super::estimate::{MoverUse, OneTime, PodHours, Side, check_footprint, one_time_section};
use super::fx::{FxTable, Rate};
use super::lines::{LineBuilder, Section};
use super::money;
use crate::api::transfer::VolumeTransferStatus;
use crate::api::workload::CostActual;

/// Which end of a transfer a mover pod is: the sender runs on the source, the receiver on the target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoverRole {
    Sender,
    Receiver,
}

/// One thing the operator saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A VolumeTransfer's `status.passWireBytes`: entry *i* is the wire bytes of pass *i + 1*.
    PassWireBytes {
        transfer: String,
        pass_wire_bytes: Vec<i64>,
    },
    /// Both sides running, from `started` until `ended` (`None`: still running).
    Parallel {
        started: Timestamp,
        ended: Option<Timestamp>,
    },
    /// A mover pod (by uid), its requests and the seconds it has run so far.
    MoverPod {
        uid: String,
        role: MoverRole,
        cpu_cores: f64,
        memory_gib: f64,
        seconds: i64,
    },
}

impl Observation {
    /// The observation a VolumeTransfer's status gives.
    pub fn from_transfer(name: &str, status: &VolumeTransferStatus) -> Self {
        Observation::PassWireBytes {
            transfer: name.to_string(),
            pass_wire_bytes: status.pass_wire_bytes.clone(),
        }
    }
}

/// A mover pod's record.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub role: MoverRole,
    pub cpu_cores: f64,
    pub memory_gib: f64,
    pub seconds: i64,
}

/// The merged facts. Serializable, should a caller want to keep them (e.g. in an annotation), but
/// they can always be rebuilt from the observations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// Transfer name → pass number (1-based) → wire bytes.
    pub passes: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Unix seconds.
    pub parallel_started: Option<i64>,
    pub parallel_ended: Option<i64>,
    /// Pod uid → record.
    pub mover_pods: BTreeMap<String, PodRecord>,
}

impl Facts {
    /// The facts of a list of observations.
    pub fn from_observations<'o>(
        obs: impl IntoIterator<Item = &'o Observation>,
    ) -> Result<Self, CostError> {
        let mut f = Facts::default();
        for o in obs {
            f.observe(o)?;
        }
        Ok(f)
    }

    /// Merges one observation (a join: see the module doc). An invalid observation changes nothing.
    pub fn observe(&mut self, obs: &Observation) -> Result<(), CostError> {
        match obs {
            Observation::PassWireBytes {
                transfer,
                pass_wire_bytes,
            } => {
                let mut checked = Vec::with_capacity(pass_wire_bytes.len());
                for (i, b) in pass_wire_bytes.iter().enumerate() {
                    let pass = u32::try_from(i + 1).map_err(|_| {
                        CostError::Observation(format!("{transfer}: too many passes"))
                    })?;
                    let bytes = u64::try_from(*b).map_err(|_| {
                        CostError::Observation(format!(
                            "{transfer}: pass {pass} reports {b} wire bytes"
                        ))
                    })?;
                    checked.push((pass, bytes));
                }
                let passes = self.passes.entry(transfer.clone()).or_default();
                for (pass, bytes) in checked {
                    let e = passes.entry(pass).or_insert(0);
                    *e = (*e).max(bytes);
                }
            }
            Observation::Parallel { started, ended } => {
                let s = started.as_second();
                if let Some(e) = ended
                    && e.as_second() < s
                {
                    return Err(CostError::Observation(format!(
                        "parallel running ends ({e}) before it starts ({started})"
                    )));
                }
                self.parallel_started = Some(self.parallel_started.map_or(s, |old| old.min(s)));
                if let Some(e) = ended {
                    let e = e.as_second();
                    self.parallel_ended = Some(self.parallel_ended.map_or(e, |old| old.max(e)));
                }
            }
            Observation::MoverPod {
                uid,
                role,
                cpu_cores,
                memory_gib,
                seconds,
            } => {
                check_quantity(&format!("CPU cores of mover pod {uid}"), *cpu_cores)?;
                check_quantity(&format!("memory GiB of mover pod {uid}"), *memory_gib)?;
                if *seconds < 0 {
                    return Err(CostError::Observation(format!(
                        "mover pod {uid} ran {seconds} seconds"
                    )));
                }
                let rec = self.mover_pods.entry(uid.clone()).or_insert(PodRecord {
                    role: *role,
                    cpu_cores: 0.0,
                    memory_gib: 0.0,
                    seconds: 0,
                });
                // The role is fixed by the pod; the rest only grows (largest wins).
                rec.cpu_cores = rec.cpu_cores.max(*cpu_cores);
                rec.memory_gib = rec.memory_gib.max(*memory_gib);
                rec.seconds = rec.seconds.max(*seconds);
            }
        }
        Ok(())
    }

    /// Merges facts gathered elsewhere (e.g. kept before a restart): the same join.
    pub fn merge(&mut self, other: &Facts) {
        for (t, passes) in &other.passes {
            let mine = self.passes.entry(t.clone()).or_default();
            for (p, b) in passes {
                let e = mine.entry(*p).or_insert(0);
                *e = (*e).max(*b);
            }
        }
        if let Some(s) = other.parallel_started {
            self.parallel_started = Some(self.parallel_started.map_or(s, |o| o.min(s)));
        }
        if let Some(e) = other.parallel_ended {
            self.parallel_ended = Some(self.parallel_ended.map_or(e, |o| o.max(e)));
        }
        for (uid, r) in &other.mover_pods {
            let rec = self.mover_pods.entry(uid.clone()).or_insert(*r);
            rec.cpu_cores = rec.cpu_cores.max(r.cpu_cores);
            rec.memory_gib = rec.memory_gib.max(r.memory_gib);
            rec.seconds = rec.seconds.max(r.seconds);
        }
    }

    /// Wire bytes over all volumes and passes, each pass once.
    pub fn wire_bytes(&self) -> u64 {
        self.passes
            .values()
            .flat_map(|p| p.values())
            .fold(0u64, |acc, b| acc.saturating_add(*b))
    }

    /// Seconds both sides ran, up to `now` while still running.
    pub fn parallel_seconds(&self, now: Timestamp) -> i64 {
        match self.parallel_started {
            None => 0,
            Some(s) => (self.parallel_ended.unwrap_or(now.as_second()) - s).max(0),
        }
    }

    /// The mover's pod time by role.
    pub fn mover_use(&self) -> MoverUse {
        let mut m = MoverUse::default();
        for r in self.mover_pods.values() {
            let hours = r.seconds as f64 / 3600.0;
            let side: &mut PodHours = match r.role {
                MoverRole::Sender => &mut m.sender,
                MoverRole::Receiver => &mut m.receiver,
            };
            side.cpu_core_hours += r.cpu_cores * hours;
            side.memory_gib_hours += r.memory_gib * hours;
        }
        m
    }
}

/// The prices and settings the ledger applies to the facts (as for the estimate).
#[derive(Clone, Copy, Debug)]
pub struct LedgerInput<'a> {
    pub source: Side<'a>,
    pub target: Side<'a>,
    pub report_currency: &'a str,
    pub fx: &'a FxTable,
    /// See [`super::estimate::EstimateInput::control_plane_share`].
    pub control_plane_share: f64,
    /// GiB the source sent earlier in the month, before the migration.
    pub egress_already_sent_gib: f64,
}

/// The actual one-time cost so far.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Actual {
    pub currency: String,
    pub one_time: Section,
    /// Unpriced lines: when not empty, the total is a lower bound.
    pub unpriced: Vec<String>,
    pub wire_bytes: u64,
    pub parallel_seconds: i64,
    pub rates: Vec<Rate>,
}

impl Actual {
    /// For `status.cost.actual`, in cents.
    pub fn to_cost_actual(&self) -> CostActual {
        CostActual {
            one_time: money::round_cents(self.one_time.total),
            wire_bytes: i64::try_from(self.wire_bytes).unwrap_or(i64::MAX),
            parallel_seconds: self.parallel_seconds,
        }
    }

    /// The printer-column text: `1,203.55 CAD`.
    pub fn display(&self) -> String {
        money::display(self.one_time.total, &self.currency, false)
    }
}

/// Prices the facts: the wire bytes through the source's egress tiers, the parallel time at both
/// sides' run-rate, the mover pods' time. `now` closes a parallel interval still open.
pub fn actual(facts: &Facts, input: &LedgerInput, now: Timestamp) -> Result<Actual, CostError> {
    check_footprint(&input.source)?;
    check_footprint(&input.target)?;
    let parallel_seconds = facts.parallel_seconds(now);
    let one = OneTime {
        bytes: facts.wire_bytes(),
        bytes_are_capacity: false,
        parallel_hours: parallel_seconds as f64 / 3600.0,
        mover: facts.mover_use(),
        control_plane_share: check_quantity("control-plane share", input.control_plane_share)?,
        egress_already_sent_gib: check_quantity(
            "GiB already sent this month",
            input.egress_already_sent_gib,
        )?,
    };
    let mut b = LineBuilder::new(input.report_currency, input.fx);
    let one_time = one_time_section(&mut b, &input.source, &input.target, &one);
    Ok(Actual {
        currency: input.report_currency.to_string(),
        unpriced: one_time.unpriced(),
        one_time,
        wire_bytes: one.bytes,
        parallel_seconds,
        rates: b.rates,
    })
}
