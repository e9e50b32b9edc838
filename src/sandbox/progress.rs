//! What `sovereign sandbox` shows while the operator works: one overall bar (the workload's
//! `status.progress`, phase and message), one bar per VolumeTransfer as it appears, and the
//! workload's phase transitions as lines above the bars, as `kubectl get sw -w` prints them.
//!
//! Bars only make sense on a terminal: when stdout is a pipe or a file (tests, CI logs) the board
//! prints plain lines instead, one per phase transition and per step of each volume, so that a log
//! tells the same story without carriage returns.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use indicatif::{BinaryBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kube::ResourceExt;

use crate::api::transfer::TransferPhase;
use crate::api::{SovereignWorkloadStatus, VolumeTransfer};

/// The live view of one migration.
pub struct Board {
    /// Some when drawing bars on a terminal; None prints plain lines.
    bars: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    volumes: BTreeMap<String, Volume>,
    started: Instant,
    /// The (phase, reason) last printed: a line is printed when either changes.
    last: Option<(String, String)>,
}

struct Volume {
    bar: Option<ProgressBar>,
    /// (phase, pass, final pass) last shown: plain mode prints a line when it changes.
    step: Option<(Option<TransferPhase>, i32, bool)>,
    done: bool,
}

/// The volume bars' and the overall bar's layouts. Both are constants, so a template error is a
/// bug of this file; the default style is still better than a panic in front of a user.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

const OVERALL: &str = "{prefix:>20} [{bar:30}] {pos:>3}%  {wide_msg}";
const VOLUME: &str =
    "{prefix:>20} [{bar:30}] {binary_bytes:>10} / {binary_total_bytes:<10} {wide_msg}";

/// The first 12 hex digits of a root hash: enough to compare by eye, short enough for a bar.
pub fn short_hash(h: &str) -> &str {
    &h[..12.min(h.len())]
}

impl Board {
    /// Bars when stdout is a terminal, plain lines otherwise.
    pub fn new() -> Board {
        Board::with_bars(std::io::stdout().is_terminal())
    }

    pub fn with_bars(bars: bool) -> Board {
        let bars = bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Board {
            bars,
            overall: None,
            volumes: BTreeMap::new(),
            started: Instant::now(),
            last: None,
        }
    }

    /// Prints a line above the bars (or just a line).
    pub fn line(&self, text: &str) {
        match &self.bars {
            // Fails only when the terminal cannot be written to; nothing better to do then.
            Some(m) => {
                let _ = m.println(text);
            }
            None => println!("{text}"),
        }
    }

    /// A `tracing` writer that clears the bars while a log line is written, so that a warning
    /// from the operator does not tear them.
    pub fn log_writer(&self) -> impl Fn() -> LogWriter + Send + Sync + 'static {
        let bars = self.bars.clone();
        move || LogWriter { bars: bars.clone() }
    }

    /// Restarts the clock of the `[12.3s]` stamps (when the operator starts).
    pub fn restart_clock(&mut self) {
        self.started = Instant::now();
    }

    fn stamp(&self) -> String {
        format!("[{:>6.1}s]", self.started.elapsed().as_secs_f64())
    }

    /// Shows the workload's status: a line when its phase or reason changed, the overall bar.
    pub fn workload(&mut self, s: &SovereignWorkloadStatus) {
        let phase = s.phase.map(|p| p.as_str()).unwrap_or("Pending");
        let reason = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let message = s.message.clone().unwrap_or_default();
        let percent = s.progress.as_ref().map(|p| p.percent).unwrap_or(0);
        let key = (phase.to_string(), reason.clone());
        if self.last.as_ref() != Some(&key) {
            self.line(&format!(
                "  {} {phase:<16} {percent:>3}%  {reason}: {message}",
                self.stamp()
            ));
            self.last = Some(key);
        }
        let Some(m) = &self.bars else { return };
        let bar = self.overall.get_or_insert_with(|| {
            // Inserted first so that it stays above the volumes, which come later.
            let b = m.insert(0, ProgressBar::new(100));
            b.set_style(style(OVERALL));
            b
        });
        bar.set_prefix(phase.to_string());
        bar.set_position(percent.clamp(0, 100) as u64);
        let eta = s
            .progress
            .as_ref()
            .and_then(|p| p.eta.as_deref())
            .map(|e| format!(" (eta {e})"))
            .unwrap_or_default();
        bar.set_message(format!("{reason}: {message}{eta}"));
    }

    /// Shows one VolumeTransfer: its bar (created when it first appears), finished with the
    /// verified root hash when the final pass completed.
    pub fn transfer(&mut self, vt: &VolumeTransfer) {
        let pvc = vt.spec.source.pvc.clone();
        let st = vt.status.clone().unwrap_or_default();
        let bars = self.bars.clone();
        let stamp = self.stamp();
        let v = self.volumes.entry(vt.name_any()).or_insert_with(|| Volume {
            bar: bars.as_ref().map(|m| {
                let b = m.add(ProgressBar::new(0));
                b.set_style(style(VOLUME));
                b.set_prefix(pvc.clone());
                b
            }),
            step: None,
            done: false,
        });
        if v.done {
            return;
        }
        let done = u64::try_from(st.bytes_done).unwrap_or(0);
        let total = u64::try_from(st.bytes_total).unwrap_or(0);
        let kind = if st.final_pass { "final" } else { "pre-copy" };
        let phase = st.phase.unwrap_or_default();
        let rate = st
            .display
            .as_ref()
            .map(|d| d.rate.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}/s",
                    BinaryBytes(u64::try_from(st.bytes_per_second).unwrap_or(0))
                )
            });
        let step = (st.phase, st.pass, st.final_pass);
        let changed = v.step != Some(step);
        v.step = Some(step);
        let finished = phase == TransferPhase::Completed;
        let failed = phase == TransferPhase::Failed;
        let end = if finished {
            let root = st
                .target_root_hash
                .as_deref()
                .or(st.source_root_hash.as_deref())
                .unwrap_or("?");
            let verdict =
                if st.source_root_hash.is_some() && st.source_root_hash == st.target_root_hash {
                    "verified"
                } else {
                    "differs from the source's"
                };
            Some(format!(
                "root {} {verdict}, {} pass(es), {} on the wire",
                short_hash(root),
                st.pass,
                BinaryBytes(u64::try_from(st.wire_bytes).unwrap_or(0))
            ))
        } else if failed {
            Some(format!(
                "failed: {}",
                st.message.clone().unwrap_or_default()
            ))
        } else {
            None
        };
        match &v.bar {
            Some(b) => {
                // A length of 0 draws a full bar; until the pass knows its size, show it empty.
                b.set_length(total.max(1));
                b.set_position(done.min(total));
                match &end {
                    Some(msg) if finished => b.finish_with_message(msg.clone()),
                    Some(msg) => b.abandon_with_message(msg.clone()),
                    None => b.set_message(format!("pass {} {kind}  {rate}  {phase:?}", st.pass)),
                }
            }
            None if changed || end.is_some() => {
                let what = match &end {
                    Some(msg) => msg.clone(),
                    // Before the first pass starts there is neither a pass nor a size.
                    None if st.pass == 0 => format!("{phase:?}"),
                    None if total == 0 => format!("pass {} {kind}: {phase:?}", st.pass),
                    None => format!(
                        "pass {} {kind}: {phase:?} {} / {}",
                        st.pass,
                        BinaryBytes(done),
                        BinaryBytes(total)
                    ),
                };
                println!("  {stamp} volume {pvc:<22} {what}");
            }
            None => {}
        }
        v.done = end.is_some();
    }

    /// Ends the bars: the overall one at its last value, volumes left as they are.
    pub fn finish(&mut self) {
        if let Some(b) = &self.overall {
            b.finish();
        }
        for v in self.volumes.values().filter(|v| !v.done) {
            if let Some(b) = &v.bar {
                b.abandon();
            }
        }
    }
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

/// Writes log lines to stderr, with the bars cleared meanwhile when there are any.
pub struct LogWriter {
    bars: Option<MultiProgress>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.bars {
            Some(m) => m.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
