//! One container of a pod: its observed state (what containerStatuses shows), and for an
//! executed image the task that runs it as a process under the supervisor, writes its output
//! in the CRI log format to `<pod dir>/logs/<container>/<restart>.log`, and starts it again per
//! the restart rule with the kubelet's back-off.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::PodRef;
use super::events::{Events, Subject};
use super::exec::Plan;
use super::restart::{Backoff, Role, Rule, go_duration};
use crate::sandbox::process::{Launch, LogFormat, Process};

/// Now, to the second: the API server keeps status times to the second, and a status compared
/// with what it returned must not differ by a fraction.
pub fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// One instance's state, as `state`/`lastState` show it.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: String,
        started_at: Timestamp,
        finished_at: Timestamp,
        /// Which instance ended (its containerID).
        instance: i32,
    },
}

impl RunState {
    pub fn waiting(reason: &str) -> RunState {
        RunState::Waiting {
            reason: reason.to_string(),
            message: String::new(),
        }
    }
}

/// A container as containerStatuses reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRun {
    pub state: RunState,
    /// The previous instance's end.
    pub last: Option<RunState>,
    /// The index of the latest instance (`restartCount`).
    pub restarts: i32,
    pub ready: bool,
    pub started: bool,
    /// It will not run again (its task ended, or it is simulated and done).
    pub finished: bool,
}

impl ContainerRun {
    pub fn new(state: RunState) -> ContainerRun {
        ContainerRun {
            state,
            last: None,
            restarts: 0,
            ready: false,
            started: false,
            finished: false,
        }
    }

    pub fn running(&self) -> bool {
        matches!(self.state, RunState::Running { .. })
    }

    /// Ended for good with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.finished && matches!(self.state, RunState::Terminated { exit_code: 0, .. })
    }
}

/// What a container's task is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// SIGTERM, then SIGKILL after the grace period.
    Term(Duration),
    Kill,
}

/// One container of a pod: spec facts, observed state, and its task when it is executed.
pub struct Slot {
    pub name: String,
    pub image: String,
    pub role: Role,
    /// The binary that runs it; None: simulated.
    pub binary: Option<PathBuf>,
    run: Mutex<ContainerRun>,
    stop: watch::Sender<Stop>,
    task: Mutex<Option<JoinHandle<()>>>,
    pid: Mutex<Option<u32>>,
    launched: AtomicBool,
}

impl Slot {
    pub fn new(
        name: &str,
        image: &str,
        role: Role,
        binary: Option<PathBuf>,
        run: ContainerRun,
    ) -> Slot {
        Slot {
            name: name.to_string(),
            image: image.to_string(),
            role,
            binary,
            run: Mutex::new(run),
            stop: watch::channel(Stop::Run).0,
            task: Mutex::new(None),
            pid: Mutex::new(None),
            launched: AtomicBool::new(false),
        }
    }

    pub fn snapshot(&self) -> ContainerRun {
        self.run.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut ContainerRun)) {
        f(&mut self.run.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Whether it was started (its task may have ended since; a simulated one has none).
    pub fn launched(&self) -> bool {
        self.launched.load(Ordering::SeqCst)
    }

    /// A simulated container: started, with no task.
    pub fn mark_launched(&self) {
        self.launched.store(true, Ordering::SeqCst);
    }

    /// Whether its task still runs.
    pub fn live(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// The supervisor's pid while a process runs.
    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_pid(&self, pid: Option<u32>) {
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = pid;
    }

    /// Starts the task running `runner`.
    pub fn start(self: &Arc<Self>, runner: Runner) {
        let rx = self.stop.subscribe();
        self.launched.store(true, Ordering::SeqCst);
        let handle = tokio::spawn(runner.run(rx));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    }

    /// Tells the task to stop; a Kill overrides a Term in progress.
    pub fn stop(&self, how: Stop) {
        self.stop.send_if_modified(|s| {
            let change = *s == Stop::Run || (how == Stop::Kill && *s != Stop::Kill);
            if change {
                *s = how;
            }
            change
        });
    }

    /// Waits for the task to end (reaped, no orphan).
    pub async fn join(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// A running process that dies with its task: a task dropped while it runs (a runtime shutting
/// down, a panicking test) kills the whole process group, where dropping a `Process` alone
/// would kill only the supervisor and leave the program behind.
struct Owned(Process);

impl Drop for Owned {
    fn drop(&mut self) {
        if self.0.exited().is_none() {
            self.0.kill();
        }
    }
}

/// How one instance ended.
struct Ended {
    code: i32,
    stopped: bool,
    at: Instant,
}

/// The task of an executed container.
pub struct Runner {
    pub slot: Arc<Slot>,
    pub plan: Plan,
    pub rule: Rule,
    pub sovereign: PathBuf,
    /// `<pod dir>/logs/<container>`
    pub logs: PathBuf,
    pub pod: Arc<PodRef>,
    pub events: Arc<Events>,
    /// Wakes the pod's worker after every change of state.
    pub wake: Arc<Notify>,
}

/// The first stop that is not `Run` (a dropped sender means the pod is gone: kill).
async fn stopped(rx: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let s = *rx.borrow_and_update();
        if s != Stop::Run {
            return s;
        }
        if rx.changed().await.is_err() {
            return Stop::Kill;
        }
    }
}

/// Returns once the stop turns into a Kill (or the pod is gone).
async fn until_kill(rx: &mut watch::Receiver<Stop>) {
    loop {
        if *rx.borrow_and_update() == Stop::Kill {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn exit_code(status: Option<std::process::ExitStatus>) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match status.map(|s| (s.code(), s.signal())) {
        // 128 + n from the supervisor: the program died of signal n; a runtime reports the
        // code only.
        Some((Some(c), _)) => (c, None),
        Some((None, Some(sig))) => (128 + sig, Some(sig)),
        _ => (255, None),
    }
}

impl Runner {
    fn subject(&self) -> Subject {
        Subject::container(&self.pod, self.slot.role, &self.slot.name)
    }

    pub async fn run(self, mut stop: watch::Receiver<Stop>) {
        let mut backoff = Backoff::default();
        loop {
            if *stop.borrow() != Stop::Run {
                break;
            }
            let ended = self.run_once(&mut stop).await;
            if ended.stopped || !self.rule.restarts(ended.code) {
                break;
            }
            if !self.back_off(&mut backoff, ended.at, &mut stop).await {
                break;
            }
            self.slot.update(|r| r.restarts += 1);
        }
        self.slot.update(|r| r.finished = true);
        self.wake.notify_one();
    }

    /// Starts one instance and waits for its end (or for a stop).
    async fn run_once(&self, stop: &mut watch::Receiver<Stop>) -> Ended {
        let instance = self.slot.snapshot().restarts;
        let subject = self.subject();
        let image = &self.slot.image;
        self.events
            .normal(
                &subject,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            )
            .await;
        let launch = self.launch(instance);
        let name = format!("{}/{}", self.pod.key(), self.slot.name);
        let started_at = now();
        self.events
            .normal(
                &subject,
                "Created",
                format!("Created container: {}", self.slot.name),
            )
            .await;
        let mut process = match Process::spawn(&self.sovereign, &name, &launch) {
            Ok(p) => Owned(p),
            Err(e) => return self.start_failed(instance, started_at, e).await,
        };
        self.slot.set_pid(process.0.pid());
        self.running(started_at);
        self.events
            .normal(
                &subject,
                "Started",
                format!("Started container {}", self.slot.name),
            )
            .await;
        let (status, stopped) = tokio::select! {
            st = process.0.wait() => (st.ok(), false),
            how = stopped(stop) => (self.halt(&mut process.0, how, stop).await, true),
        };
        self.slot.set_pid(None);
        let (code, signal) = exit_code(status);
        let reason = if code == 0 { "Completed" } else { "Error" };
        self.slot.update(|r| {
            r.state = RunState::Terminated {
                exit_code: code,
                signal,
                reason: reason.into(),
                message: String::new(),
                started_at,
                finished_at: now(),
                instance,
            };
            r.ready = false;
            r.started = false;
        });
        self.wake.notify_one();
        Ended {
            code,
            stopped,
            at: Instant::now(),
        }
    }

    /// How this instance is started: its log file is its own.
    fn launch(&self, instance: i32) -> Launch {
        Launch {
            program: self.plan.program.clone(),
            args: self.plan.args.clone(),
            env: self.plan.env.clone(),
            cwd: Some(self.plan.cwd.clone()),
            log: self.logs.join(format!("{instance}.log")),
            log_format: LogFormat::Cri,
        }
    }

    /// The instance runs; the one before it (if it ended) becomes lastState.
    fn running(&self, started_at: Timestamp) {
        self.slot.update(|r| {
            if let RunState::Terminated { .. } = r.state {
                r.last = Some(r.state.clone());
            }
            r.state = RunState::Running { started_at };
            r.started = true;
            r.ready = false;
        });
        self.wake.notify_one();
    }

    /// Stops a running process: SIGTERM and its grace period (cut short by a Kill), or SIGKILL.
    async fn halt(
        &self,
        process: &mut Process,
        how: Stop,
        stop: &mut watch::Receiver<Stop>,
    ) -> Option<std::process::ExitStatus> {
        if let Stop::Term(grace) = how {
            let subject = self.subject();
            self.events
                .normal(
                    &subject,
                    "Killing",
                    format!("Stopping container {}", self.slot.name),
                )
                .await;
            process.terminate();
            tokio::select! {
                st = process.wait() => return st.ok(),
                _ = tokio::time::sleep(grace) => {}
                _ = until_kill(stop) => {}
            }
        }
        process.kill();
        process.wait().await.ok()
    }

    /// The process could not be started (what containerd reports as StartError, exit 128).
    async fn start_failed(&self, instance: i32, started_at: Timestamp, e: std::io::Error) -> Ended {
        let message = format!("failed to start {}: {e}", self.plan.program.display());
        tracing::warn!(cluster = %self.pod.cluster, pod = %self.pod.key(), container = %self.slot.name, %message, "container cannot start");
        self.events
            .warning(&self.subject(), "Failed", format!("Error: {message}"))
            .await;
        self.slot.update(|r| {
            if let RunState::Terminated { .. } = r.state {
                r.last = Some(r.state.clone());
            }
            r.state = RunState::Terminated {
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message,
                started_at,
                finished_at: now(),
                instance,
            };
            r.ready = false;
        });
        self.wake.notify_one();
        Ended {
            code: 128,
            stopped: false,
            at: Instant::now(),
        }
    }

    /// Waits out the back-off after an exit (CrashLoopBackOff); false when told to stop.
    async fn back_off(
        &self,
        b: &mut Backoff,
        finished: Instant,
        stop: &mut watch::Receiver<Stop>,
    ) -> bool {
        if let Some((remaining, current)) = b.wait(finished, Instant::now()) {
            let p = &self.pod;
            let c = &self.slot.name;
            let message = format!(
                "back-off {} restarting failed container={c} pod={}",
                go_duration(current),
                p.kubelet_name()
            );
            self.slot.update(|r| {
                let ended = std::mem::replace(
                    &mut r.state,
                    RunState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message,
                    },
                );
                r.last = Some(ended);
                r.ready = false;
                r.started = false;
            });
            self.wake.notify_one();
            let note = format!(
                "Back-off restarting failed container {c} in pod {}",
                p.kubelet_name()
            );
            self.events.warning(&self.subject(), "BackOff", note).await;
            tokio::select! {
                _ = tokio::time::sleep(remaining) => {}
                _ = stopped(stop) => return false,
            }
        }
        b.next(finished);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_as_a_runtime_reports_them() {
        use std::os::unix::process::ExitStatusExt;
        let st = |raw| Some(std::process::ExitStatus::from_raw(raw));
        assert_eq!(exit_code(st(3 << 8)), (3, None));
        // The supervisor exits 128 + signal when its program was killed.
        assert_eq!(exit_code(st(143 << 8)), (143, None));
        assert_eq!(exit_code(st(9)), (137, Some(9)));
        assert_eq!(exit_code(None), (255, None));
    }

    #[test]
    fn a_kill_overrides_a_term_but_nothing_overrides_a_kill() {
        let s = Slot::new(
            "c",
            "i",
            Role::Main,
            None,
            ContainerRun::new(RunState::waiting("ContainerCreating")),
        );
        let rx = s.stop.subscribe();
        s.stop(Stop::Term(Duration::from_secs(5)));
        assert_eq!(*rx.borrow(), Stop::Term(Duration::from_secs(5)));
        s.stop(Stop::Term(Duration::from_secs(1)));
        assert_eq!(*rx.borrow(), Stop::Term(Duration::from_secs(5)));
        s.stop(Stop::Kill);
        s.stop(Stop::Term(Duration::from_secs(1)));
        assert_eq!(*rx.borrow(), Stop::Kill);
    }
}
