//! A program the sandbox runs, under `sovereign supervise` (see `supervise`): started in its own
//! process group (a Ctrl-C on the terminal is the sandbox's to handle), stopped with SIGTERM, a
//! grace period, then SIGKILL to the whole group.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

pub use super::supervise::LogFormat;

/// How to start a program.
#[derive(Clone, Debug)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub log: PathBuf,
    pub log_format: LogFormat,
}

pub struct Process {
    name: String,
    child: tokio::process::Child,
    pid: Option<u32>,
    log: PathBuf,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish()
    }
}

/// `PATH` and `HOME` of the sandbox, the base of a program's environment.
pub fn base_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "TMPDIR"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

impl Process {
    /// Starts `launch` under the supervisor `sovereign` (this project's binary).
    pub fn spawn(sovereign: &Path, name: &str, launch: &Launch) -> std::io::Result<Process> {
        if let Some(dir) = launch.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // The supervisor's own complaints (before the program runs) land in the same log.
        let own = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)?;
        let format = match launch.log_format {
            LogFormat::Plain => "plain",
            LogFormat::Cri => "cri",
        };
        let mut cmd = tokio::process::Command::new(sovereign);
        cmd.arg("supervise")
            .arg("--log")
            .arg(&launch.log)
            .args(["--log-format", format, "--"])
            .arg(&launch.program)
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(own)
            .process_group(0);
        if let Some(cwd) = &launch.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok(Process {
            name: name.to_string(),
            child,
            pid,
            log: launch.log.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status once it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the end.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends SIGTERM (the supervisor forwards it).
    pub fn terminate(&self) {
        signal(self.pid, rustix::process::Signal::TERM, false);
    }

    /// SIGTERM, up to `grace` for it to end, then SIGKILL to the process group.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exited() {
            return Some(st);
        }
        self.terminate();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(st) => st.ok(),
            Err(_) => {
                self.kill();
                self.child.wait().await.ok()
            }
        }
    }

    /// SIGKILL to the process group (the supervisor and the program).
    pub fn kill(&self) {
        signal(self.pid, rustix::process::Signal::KILL, true);
    }
}

impl Drop for Process {
    /// A process dropped while it runs (a test that panicked, a cluster never shut down): the
    /// whole group goes, the program with its supervisor. Killing only the supervisor would leave
    /// the program orphaned, with nothing left to end it.
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

fn signal(pid: Option<u32>, sig: rustix::process::Signal, group: bool) {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = if group {
        rustix::process::kill_process_group(pid, sig)
    } else {
        rustix::process::kill_process(pid, sig)
    };
}

/// The last `n` lines of a log, for an error message.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
