//! Containers the sandbox runs for real: those whose image is one of the configured executable
//! images (by default the project's own, any repository ending in `/sovereign-operator` or
//! `/sovereign`) run as child processes of the configured binary.
//!
//! What the kubelet does, and how the sandbox does it:
//! - the process runs `command` + `args`; `command[0]` names the image's binary and is replaced
//!   by the configured binary (its file name must match, as a container runtime would fail to
//!   find any other executable in the image); with no `command`, `args` (or the image's
//!   default `run`) go to the binary;
//! - the environment is the container's alone (`envFrom`, then `env` with `value`, fieldRef
//!   `metadata.name|namespace|uid`, `spec.nodeName|serviceAccountName`, `status.podIP|hostIP`,
//!   `secretKeyRef`, `configMapKeyRef`), plus `PATH`, `HOSTNAME`, `KUBERNETES_SERVICE_HOST/PORT`
//!   (the simulated API server) and `SANDBOX_POD_ROOT`; `$(VAR)` in env values, command and args
//!   expands as Kubernetes expands it (`$$` escapes, unknown references stay as written);
//! - volumes are host directories: `persistentVolumeClaim` → the bound PV's directory, `secret`
//!   and `configMap` → files written under the pod's directory (items, defaultMode), `emptyDir`
//!   (and anything else) → a directory of the pod, `hostPath` → that path;
//! - stdout and stderr go to `<pod dir>/logs/<container>.log`, which `pods/log` serves.
//!
//! The one place the sandbox differs from a container runtime: a child process shares the
//! host's filesystem and network namespace, so mounts cannot be made. Instead every argument and
//! env value equal to a volumeMount's `mountPath`, or starting with `mountPath/`, is rewritten
//! to the host directory (the longest mountPath first); `workingDir` likewise. A process that
//! binds `0.0.0.0` binds the whole host: bind `$(POD_IP)` (fieldRef `status.podIP`) instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::objects::{self as o};
use crate::sandbox::api::Cluster;
use crate::sandbox::meta;

/// An image the sandbox runs for real, by the end of its repository path.
#[derive(Clone, Debug)]
pub struct ExecImage {
    /// `/sovereign-operator` matches `ghcr.io/sovereign-dev/sovereign-operator:0.1.0` (and the
    /// bare repository `sovereign-operator`).
    pub repository_suffix: String,
    /// The binary to run; None: the sandbox's configured binary.
    pub binary: Option<PathBuf>,
}

impl ExecImage {
    pub fn new(repository_suffix: &str, binary: Option<PathBuf>) -> ExecImage {
        ExecImage {
            repository_suffix: repository_suffix.to_string(),
            binary,
        }
    }

    /// The project's own image, run with the configured binary.
    pub fn defaults() -> Vec<ExecImage> {
        vec![
            ExecImage::new("/sovereign-operator", None),
            ExecImage::new("/sovereign", None),
        ]
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExecConfig {
    pub images: Vec<ExecImage>,
    /// The configured binary; None: no image whose binary is unset runs (it is simulated).
    pub binary: Option<PathBuf>,
}

/// The repository of an image reference: no digest, no tag.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

impl ExecConfig {
    /// The binary that runs this image, if it is an executable image.
    pub fn binary_for(&self, image: &str) -> Option<PathBuf> {
        let repo = repository(image);
        let m = self.images.iter().find(|m| {
            repo.ends_with(&m.repository_suffix)
                || repo == m.repository_suffix.trim_start_matches('/')
        })?;
        m.binary.clone().or_else(|| self.binary.clone())
    }
}

/// `$(VAR)` expansion as Kubernetes does it: `$$` is a literal `$`, an unknown or unterminated
/// reference stays as written.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(j) => {
                    let name = &inner[..j];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[j + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrite a value naming a path inside a mount to the host directory behind it.
pub fn rewrite(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, host) in mounts {
        if value == mount {
            return host.to_string_lossy().into_owned();
        }
        if let Some(rest) = value.strip_prefix(mount.as_str())
            && rest.starts_with('/')
        {
            return format!("{}{rest}", host.to_string_lossy());
        }
    }
    value.to_string()
}

/// Why a container cannot start yet, as the kubelet reports it (waiting reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStarted {
    pub reason: &'static str,
    pub message: String,
}

impl NotStarted {
    fn config(message: String) -> NotStarted {
        NotStarted {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// A process ready to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub log: PathBuf,
}

fn decoded(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// A Secret's or ConfigMap's entries as bytes.
fn entries(c: &Cluster, ns: &str, secret: bool, name: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let (plural, obj) = if secret {
        ("secrets", o::get(c, "", "secrets", ns, name)?)
    } else {
        ("configmaps", o::get(c, "", "configmaps", ns, name)?)
    };
    let mut out = Vec::new();
    if plural == "secrets" {
        if let Some(d) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                out.push((k.clone(), decoded(v).unwrap_or_default()));
            }
        }
    } else {
        if let Some(d) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in d {
                out.push((
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                ));
            }
        }
        if let Some(d) = obj.get("binaryData").and_then(Value::as_object) {
            for (k, v) in d {
                out.push((k.clone(), decoded(v).unwrap_or_default()));
            }
        }
    }
    Some(out)
}

/// The host directory of each of the pod's volumes, materialising secrets and config maps.
pub fn volumes(
    c: &Cluster,
    pod: &Value,
    pod_dir: &Path,
) -> Result<HashMap<String, PathBuf>, NotStarted> {
    let ns = meta::namespace(pod);
    let mut out = HashMap::new();
    let specs = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in specs {
        let name = o::str_at(&v, "/name").to_string();
        let own = pod_dir.join("volumes").join(&name);
        let io = |e: std::io::Error| NotStarted {
            reason: "ContainerCreating",
            message: format!("volume {name}: {e}"),
        };
        if let Some(claim) = v
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        {
            let dir = super::volumes::claim_dir(c, ns, claim).ok_or_else(|| NotStarted {
                reason: "ContainerCreating",
                message: format!("persistentvolumeclaim \"{claim}\" is not bound"),
            })?;
            out.insert(name, dir);
            continue;
        }
        if let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) {
            out.insert(name, PathBuf::from(path));
            continue;
        }
        let source = v
            .get("secret")
            .map(|s| (true, s, o::str_at(s, "/secretName")))
            .or_else(|| {
                v.get("configMap")
                    .map(|s| (false, s, o::str_at(s, "/name")))
            });
        std::fs::create_dir_all(&own).map_err(io)?;
        if let Some((secret, src, obj_name)) = source {
            let optional = src.get("optional").and_then(Value::as_bool) == Some(true);
            let kind = if secret { "secret" } else { "configmap" };
            let data = match entries(c, ns, secret, obj_name) {
                Some(d) => d,
                None if optional => vec![],
                None => {
                    return Err(NotStarted {
                        reason: "ContainerCreating",
                        message: format!(
                            "MountVolume.SetUp failed for volume \"{name}\" : {kind} \"{obj_name}\" not found"
                        ),
                    });
                }
            };
            let default_mode = src
                .get("defaultMode")
                .and_then(Value::as_u64)
                .unwrap_or(0o644) as u32;
            let items = src.get("items").and_then(Value::as_array);
            let files: Vec<(String, Vec<u8>, u32)> = match items {
                Some(items) => items
                    .iter()
                    .filter_map(|it| {
                        let key = o::str_at(it, "/key");
                        let (_, bytes) = data.iter().find(|(k, _)| k == key)?;
                        let mode = it.get("mode").and_then(Value::as_u64).map(|m| m as u32);
                        Some((
                            o::str_at(it, "/path").to_string(),
                            bytes.clone(),
                            mode.unwrap_or(default_mode),
                        ))
                    })
                    .collect(),
                None => data
                    .into_iter()
                    .map(|(k, b)| (k, b, default_mode))
                    .collect(),
            };
            for (rel, bytes, mode) in files {
                // Keys are file names; a path with `..` would escape the volume.
                if rel.split('/').any(|p| p == ".." || p.is_empty()) {
                    continue;
                }
                let path = own.join(&rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(&path, &bytes).map_err(io)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(io)?;
            }
        }
        out.insert(name, own);
    }
    Ok(out)
}

fn field_ref(pod: &Value, path: &str) -> Option<String> {
    let v = match path {
        "metadata.name" => meta::name(pod),
        "metadata.namespace" => meta::namespace(pod),
        "metadata.uid" => meta::uid(pod),
        "spec.nodeName" => o::str_at(pod, "/spec/nodeName"),
        "spec.serviceAccountName" => o::str_at(pod, "/spec/serviceAccountName"),
        "status.podIP" => o::str_at(pod, "/status/podIP"),
        "status.hostIP" => o::str_at(pod, "/status/hostIP"),
        other => {
            let (map, key) = if let Some(k) = other.strip_prefix("metadata.labels['") {
                ("labels", k.trim_end_matches("']"))
            } else if let Some(k) = other.strip_prefix("metadata.annotations['") {
                ("annotations", k.trim_end_matches("']"))
            } else {
                return None;
            };
            return pod
                .pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(String::from);
        }
    };
    Some(v.to_string())
}

/// The container's environment, in Kubernetes' order and with its expansion.
pub fn environment(
    c: &Cluster,
    pod: &Value,
    container: &Value,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, NotStarted> {
    let ns = meta::namespace(pod);
    let mut env: Vec<(String, String)> = base;
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env
        .iter_mut()
        .find(|(x, _)| *x == k)
    {
        Some(e) => e.1 = v,
        None => env.push((k, v)),
    };
    for from in container
        .get("envFrom")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let prefix = o::str_at(&from, "/prefix").to_string();
        let (secret, r) = match (from.get("secretRef"), from.get("configMapRef")) {
            (Some(r), _) => (true, r),
            (None, Some(r)) => (false, r),
            _ => continue,
        };
        let name = o::str_at(r, "/name");
        match entries(c, ns, secret, name) {
            Some(kv) => {
                for (k, v) in kv {
                    set(
                        &mut env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v).into_owned(),
                    );
                }
            }
            None if r.get("optional").and_then(Value::as_bool) == Some(true) => {}
            None => {
                let kind = if secret { "secret" } else { "configmap" };
                return Err(NotStarted::config(format!("{kind} \"{name}\" not found")));
            }
        }
    }
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let name = o::str_at(&e, "/name").to_string();
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            let snapshot = env.clone();
            expand(v, &|k| {
                snapshot
                    .iter()
                    .find(|(x, _)| x == k)
                    .map(|(_, v)| v.clone())
            })
        } else if let Some(path) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            field_ref(pod, path).unwrap_or_default()
        } else if let Some(r) = e
            .pointer("/valueFrom/secretKeyRef")
            .or_else(|| e.pointer("/valueFrom/configMapKeyRef"))
        {
            let secret = e.pointer("/valueFrom/secretKeyRef").is_some();
            let obj = o::str_at(r, "/name");
            let key = o::str_at(r, "/key");
            let optional = r.get("optional").and_then(Value::as_bool) == Some(true);
            let kind = if secret { "secret" } else { "configmap" };
            match entries(c, ns, secret, obj) {
                Some(kv) => match kv.into_iter().find(|(k, _)| k == key) {
                    Some((_, v)) => String::from_utf8_lossy(&v).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(NotStarted::config(format!(
                            "couldn't find key {key} in {} {ns}/{obj}",
                            if secret { "Secret" } else { "ConfigMap" }
                        )));
                    }
                },
                None if optional => continue,
                None => return Err(NotStarted::config(format!("{kind} \"{obj}\" not found"))),
            }
        } else {
            String::new()
        };
        set(&mut env, name, value);
    }
    Ok(env)
}

/// Everything needed to start one container as a process.
pub fn launch(
    c: &Cluster,
    pod: &Value,
    container: &Value,
    binary: &Path,
    pod_dir: &Path,
    api_addr: std::net::SocketAddr,
) -> Result<Launch, NotStarted> {
    let cname = o::str_at(container, "/name");
    let vols = volumes(c, pod, pod_dir)?;
    let mut mounts: Vec<(String, PathBuf)> = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let dir = vols.get(o::str_at(m, "/name"))?;
                    let sub = o::str_at(m, "/subPath");
                    let host = if sub.is_empty() {
                        dir.clone()
                    } else {
                        dir.join(sub)
                    };
                    let mount = o::str_at(m, "/mountPath").trim_end_matches('/').to_string();
                    (!mount.is_empty()).then_some((mount, host))
                })
                .collect()
        })
        .unwrap_or_default();
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let base = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOSTNAME".to_string(), meta::name(pod).to_string()),
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            api_addr.ip().to_string(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            api_addr.port().to_string(),
        ),
        (
            "SANDBOX_POD_ROOT".to_string(),
            pod_dir.to_string_lossy().into_owned(),
        ),
    ];
    let env: Vec<(String, String)> = environment(c, pod, container, base)?
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "SANDBOX_POD_ROOT" {
                v
            } else {
                rewrite(&v, &mounts)
            };
            (k, v)
        })
        .collect();
    let lookup = |k: &str| env.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let strings = |ptr: &str| -> Vec<String> {
        container
            .pointer(ptr)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| rewrite(&expand(s, &lookup), &mounts))
                    .collect()
            })
            .unwrap_or_default()
    };
    let command = strings("/command");
    let args = strings("/args");
    let argv: Vec<String> = match command.split_first() {
        Some((first, rest)) => {
            let wanted = Path::new(first).file_name();
            if wanted.is_none() || wanted != binary.file_name() {
                return Err(NotStarted {
                    reason: "RunContainerError",
                    message: format!(
                        "exec: \"{first}\": executable file not found in $PATH: the sandbox runs only {} for this image",
                        binary.display()
                    ),
                });
            }
            rest.iter().cloned().chain(args).collect()
        }
        None if args.is_empty() => vec!["run".to_string()],
        None => args,
    };
    let working = o::str_at(container, "/workingDir");
    let cwd = if working.is_empty() {
        pod_dir.to_path_buf()
    } else {
        PathBuf::from(rewrite(working, &mounts))
    };
    Ok(Launch {
        program: binary.to_path_buf(),
        args: argv,
        env,
        cwd,
        log: pod_dir.join("logs").join(format!("{cname}.log")),
    })
}

/// What a supervisor is told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// SIGTERM, then SIGKILL after this many seconds.
    Term(u64),
    Kill,
}

/// One container's observed state, as containerStatuses will show it.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i64,
        signal: Option<i64>,
        reason: String,
        message: String,
        started_at: String,
        finished_at: String,
    },
}

#[derive(Clone, Debug)]
pub struct ContainerRun {
    pub name: String,
    pub state: RunState,
    pub last: Option<RunState>,
    pub restarts: i64,
    pub ready: bool,
    pub started: bool,
}

/// The processes of one pod.
pub struct PodRun {
    pub namespace: String,
    pub name: String,
    pub stop: watch::Sender<Stop>,
    pub containers: Arc<Mutex<Vec<ContainerRun>>>,
    pub tasks: Vec<JoinHandle<()>>,
    /// When SIGTERM was sent (the grace period runs from here).
    pub terminating: bool,
}

impl PodRun {
    pub fn snapshot(&self) -> Vec<ContainerRun> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }
}

/// Every pod this cluster's kubelet runs processes for, by pod uid.
#[derive(Default)]
pub struct Processes {
    pods: Mutex<HashMap<String, PodRun>>,
}

impl Processes {
    pub fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, PodRun>) -> R) -> R {
        f(&mut self.pods.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Kill every process and wait for the supervisors to reap them (no orphans, no zombies).
    pub async fn kill_all(&self) {
        let tasks: Vec<JoinHandle<()>> = self.with(|pods| {
            pods.drain()
                .flat_map(|(_, run)| {
                    let _ = run.stop.send(Stop::Kill);
                    run.tasks
                })
                .collect()
        });
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// How long a crashed container waits before its next start: 1s doubling to 10s (the real
/// kubelet's 10s doubling to 5 minutes, shortened for the sandbox).
pub fn back_off(restarts: i64) -> std::time::Duration {
    let secs = 1u64 << restarts.clamp(0, 4);
    std::time::Duration::from_secs(secs.min(10))
}

/// Send SIGTERM to a process.
pub fn terminate(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = |k: &str| match k {
            "A" => Some("x".to_string()),
            "DIR" => Some("/data".to_string()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", &env), "x-$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$$$(A)", &env), "$x");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(DIR)/f", &env), "/data/f");
    }

    #[test]
    fn mount_paths_are_rewritten_longest_first() {
        let mounts = vec![
            ("/data/sub".to_string(), PathBuf::from("/host/b")),
            ("/data".to_string(), PathBuf::from("/host/a")),
        ];
        assert_eq!(rewrite("/data", &mounts), "/host/a");
        assert_eq!(rewrite("/data/x/y", &mounts), "/host/a/x/y");
        assert_eq!(rewrite("/data/sub/z", &mounts), "/host/b/z");
        assert_eq!(rewrite("/database", &mounts), "/database");
        assert_eq!(rewrite("--root=/data", &mounts), "--root=/data");
    }

    #[test]
    fn images_match_by_repository_suffix() {
        let cfg = ExecConfig {
            images: ExecImage::defaults(),
            binary: Some(PathBuf::from("/bin/sovereign")),
        };
        for image in [
            "ghcr.io/sovereign-dev/sovereign-operator:0.1.0",
            "registry.example/x/sovereign@sha256:abc",
            "sovereign-operator",
            "localhost:5000/sovereign",
        ] {
            assert!(cfg.binary_for(image).is_some(), "{image}");
        }
        for image in [
            "nginx:1.27",
            "ghcr.io/x/not-sovereign-operatorx:1",
            "localhost:5000/other",
        ] {
            assert!(cfg.binary_for(image).is_none(), "{image}");
        }
    }
}
