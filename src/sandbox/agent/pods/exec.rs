//! How a container of an executed image becomes a process (the rules of the simulated sandbox's
//! exec, on the real API's objects):
//! - the process runs `command` + `args`; `command[0]` names the image's binary and is replaced
//!   by the configured binary (its file name must match: a container runtime would not find any
//!   other executable in the image); with no `command`, `args` (or the image's default `run`) go
//!   to the binary;
//! - the environment is the container's alone: `envFrom`, then `env` (`value`, fieldRef,
//!   `secretKeyRef`, `configMapKeyRef`, resourceFieldRef), over `PATH`, `HOSTNAME`,
//!   `KUBERNETES_SERVICE_HOST/PORT` (the API server's own address: the `kubernetes` Service's
//!   ClusterIP is unreachable without kube-proxy) and, when the container mounts a
//!   service-account token, `KUBECONFIG` naming a kubeconfig with that token; `$(VAR)` in env
//!   values, command and args expands as Kubernetes expands it.
//!
//! A process shares the host's filesystem, so mounts cannot be made: every argument, env value
//! and `workingDir` equal to a volumeMount's `mountPath`, or under it, is rewritten to the host
//! directory behind it (the longest mountPath first). A process that binds `0.0.0.0` binds the
//! whole host: bind `$(POD_IP)` (fieldRef `status.podIP`) instead. That fieldRef gives the
//! process its loopback address `127.A.c.d`; the API knows the pod as `10.244.c.d`
//! (`Block::cluster_address`), as it refuses loopback addresses in EndpointSlices.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::sources::{Kind, Sources};

/// Why a container cannot start (yet), as the kubelet reports it: the waiting reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStarted {
    pub reason: &'static str,
    pub message: String,
}

impl NotStarted {
    pub fn config(message: String) -> NotStarted {
        NotStarted {
            reason: "CreateContainerConfigError",
            message,
        }
    }
}

/// A process ready to start (its log file is chosen per restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// What the environment may refer to besides the pod and its sources.
#[derive(Debug, Clone)]
pub struct Facts {
    pub pod_ip: String,
    pub host_ip: String,
    pub api: std::net::SocketAddr,
    /// `<pod dir>/kubeconfig`, when this container mounts the pod's service-account token.
    pub kubeconfig: Option<PathBuf>,
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
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|s| s.split_once(')')) {
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A value naming a path inside a mount, rewritten to the host directory behind it. `mounts`
/// is sorted longest mountPath first.
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

/// The container's mounts as (mountPath, host directory), longest mountPath first.
pub fn mounts(container: &Container, volumes: &HashMap<String, PathBuf>) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volumes.get(&m.name)?;
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => dir.join(sub),
                None => dir.clone(),
            };
            let mount = m.mount_path.trim_end_matches('/').to_string();
            (!mount.is_empty()).then_some((mount, host))
        })
        .collect();
    out.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    out
}

/// The value of a downward-API field path (env fieldRef and downwardAPI volume items).
pub fn field_ref(pod: &Pod, pod_ip: &str, host_ip: &str, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        other => {
            let (map, key) = if let Some(k) = other.strip_prefix("metadata.labels['") {
                (meta.labels.as_ref(), k.strip_suffix("']")?)
            } else if let Some(k) = other.strip_prefix("metadata.annotations['") {
                (meta.annotations.as_ref(), k.strip_suffix("']")?)
            } else {
                return None;
            };
            return Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
        }
    };
    Some(v)
}

/// `key="value"` lines in key order, values quoted as Go's `%q` does (the kubelet's FormatMap).
pub fn format_map(m: Option<&std::collections::BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn set(env: &mut Vec<(String, String)>, k: String, v: String) {
    match env.iter_mut().find(|(x, _)| *x == k) {
        Some(e) => e.1 = v,
        None => env.push((k, v)),
    }
}

/// The variables of `envFrom`, in order, each with its prefix.
fn env_from(
    container: &Container,
    sources: &Sources,
    env: &mut Vec<(String, String)>,
) -> Result<(), NotStarted> {
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(r), _) => (Kind::Secret, &r.name, r.optional),
            (None, Some(r)) => (Kind::ConfigMap, &r.name, r.optional),
            _ => continue,
        };
        match sources.get(kind, name) {
            Some(entries) => {
                for (k, v) in entries {
                    set(
                        env,
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
            }
            None if optional == Some(true) => {}
            None => {
                return Err(NotStarted::config(format!(
                    "{} \"{name}\" not found",
                    kind.lower()
                )));
            }
        }
    }
    Ok(())
}

/// One `env` entry's value from a Secret or ConfigMap key; None for an optional one that is
/// absent (the variable is then not set).
fn key_ref(
    ns: &str,
    kind: Kind,
    name: &str,
    key: &str,
    optional: Option<bool>,
    sources: &Sources,
) -> Result<Option<String>, NotStarted> {
    let optional = optional == Some(true);
    match sources.get(kind, name) {
        Some(entries) => match entries.iter().find(|(k, _)| k == key) {
            Some((_, v)) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(NotStarted::config(format!(
                "couldn't find key {key} in {} {ns}/{name}",
                kind.title()
            ))),
        },
        None if optional => Ok(None),
        None => Err(NotStarted::config(format!(
            "{} \"{name}\" not found",
            kind.lower()
        ))),
    }
}

/// A resourceFieldRef's value: the quantity as the container's resources spell it, or `0`
/// when it sets none (the sandbox has no node allocatable to fall back to per container).
fn resource_ref(container: &Container, resource: &str) -> String {
    let r = container.resources.as_ref();
    let (map, key) = match resource.split_once('.') {
        Some(("limits", k)) => (r.and_then(|r| r.limits.as_ref()), k),
        Some(("requests", k)) => (r.and_then(|r| r.requests.as_ref()), k),
        _ => return "0".into(),
    };
    map.and_then(|m| m.get(key))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into())
}

/// The container's environment in Kubernetes' order (`base`, `envFrom`, `env`), with `$(VAR)`
/// in `env` values expanded against what is defined before it.
pub fn environment(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    facts: &Facts,
    base: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, NotStarted> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut env = base;
    env_from(container, sources, &mut env)?;
    for e in container.env.iter().flatten() {
        let value = match (&e.value, &e.value_from) {
            (Some(v), _) => {
                let snapshot = env.clone();
                Some(expand(v, &|k| {
                    snapshot
                        .iter()
                        .find(|(x, _)| x == k)
                        .map(|(_, v)| v.clone())
                }))
            }
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_ref(pod, &facts.pod_ip, &facts.host_ip, &f.field_path)
                } else if let Some(r) = &from.secret_key_ref {
                    key_ref(ns, Kind::Secret, &r.name, &r.key, r.optional, sources)?
                } else if let Some(r) = &from.config_map_key_ref {
                    key_ref(ns, Kind::ConfigMap, &r.name, &r.key, r.optional, sources)?
                } else if let Some(r) = &from.resource_field_ref {
                    Some(resource_ref(container, &r.resource))
                } else {
                    Some(String::new())
                }
            }
            (None, None) => Some(String::new()),
        };
        if let Some(v) = value {
            set(&mut env, e.name.clone(), v);
        }
    }
    Ok(env)
}

/// What the kubelet gives every container before its own variables.
pub fn base_env(pod: &Pod, facts: &Facts) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        (
            "HOSTNAME".to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            facts.api.ip().to_string(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            facts.api.port().to_string(),
        ),
    ];
    if let Some(k) = &facts.kubeconfig {
        env.push(("KUBECONFIG".to_string(), k.to_string_lossy().into_owned()));
    }
    env
}

/// The process's arguments: `command` without its first word (the binary), then `args`.
pub fn argv(
    command: &[String],
    args: Vec<String>,
    binary: &Path,
) -> Result<Vec<String>, NotStarted> {
    match command.split_first() {
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
            Ok(rest.iter().cloned().chain(args).collect())
        }
        None if args.is_empty() => Ok(vec!["run".to_string()]),
        None => Ok(args),
    }
}

/// Everything needed to start one container as a process.
pub fn plan(
    pod: &Pod,
    container: &Container,
    binary: &Path,
    pod_dir: &Path,
    volumes: &HashMap<String, PathBuf>,
    sources: &Sources,
    facts: &Facts,
) -> Result<Plan, NotStarted> {
    let mounts = mounts(container, volumes);
    let env: Vec<(String, String)> =
        environment(pod, container, sources, facts, base_env(pod, facts))?
            .into_iter()
            .map(|(k, v)| {
                let v = rewrite(&v, &mounts);
                (k, v)
            })
            .collect();
    let lookup = |k: &str| env.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let words = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| rewrite(&expand(s, &lookup), &mounts))
            .collect()
    };
    let command = words(&container.command);
    let args = argv(&command, words(&container.args), binary)?;
    let cwd = match container.working_dir.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => PathBuf::from(rewrite(w, &mounts)),
        None => pod_dir.to_path_buf(),
    };
    Ok(Plan {
        program: binary.to_path_buf(),
        args,
        env,
        cwd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .expect("pod")
    }

    fn facts() -> Facts {
        Facts {
            pod_ip: "127.16.1.1".into(),
            host_ip: "127.16.200.2".into(),
            api: "127.16.0.1:6443".parse().expect("addr"),
            kubeconfig: Some(PathBuf::from("/pods/u-1/kubeconfig")),
        }
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

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
        let c = container(json!({"name": "c", "volumeMounts": [
            {"name": "a", "mountPath": "/data/"}, {"name": "b", "mountPath": "/data/sub"},
            {"name": "s", "mountPath": "/cfg/one", "subPath": "one"}, {"name": "missing", "mountPath": "/m"}]}));
        let vols: HashMap<String, PathBuf> = [("a", "/host/a"), ("b", "/host/b"), ("s", "/host/s")]
            .iter()
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect();
        let mounts = mounts(&c, &vols);
        assert_eq!(mounts.len(), 3);
        assert_eq!(rewrite("/data", &mounts), "/host/a");
        assert_eq!(rewrite("/data/x/y", &mounts), "/host/a/x/y");
        assert_eq!(rewrite("/data/sub/z", &mounts), "/host/b/z");
        assert_eq!(rewrite("/cfg/one", &mounts), "/host/s/one");
        assert_eq!(rewrite("/database", &mounts), "/database");
        assert_eq!(rewrite("--root=/data", &mounts), "--root=/data");
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.insert(
            Kind::ConfigMap,
            "cm",
            Some(vec![("MODE".into(), b"fast".to_vec())]),
        );
        s.insert(
            Kind::Secret,
            "sec",
            Some(vec![("token".into(), b"hunter2".to_vec())]),
        );
        s.insert(Kind::Secret, "gone", None);
        s
    }

    #[test]
    fn environment_layers_sources_fields_and_expansion() {
        let c = container(json!({"name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['b']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": true}}},
                {"name": "URL", "value": "http://$(IP):80/$(CM_MODE)/$(UNKNOWN)"},
                {"name": "HOSTNAME", "value": "override"}]}));
        let env =
            environment(&pod(), &c, &sources(), &facts(), base_env(&pod(), &facts())).expect("env");
        let get = |k: &str| env.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_MODE"), Some("fast"));
        assert_eq!(get("TOKEN"), Some("hunter2"));
        assert_eq!(get("IP"), Some("127.16.1.1"));
        assert_eq!(get("LABEL"), Some("2"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("OPT"), None, "an optional missing key sets nothing");
        assert_eq!(get("URL"), Some("http://127.16.1.1:80/fast/$(UNKNOWN)"));
        assert_eq!(get("HOSTNAME"), Some("override"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("127.16.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("6443"));
        assert_eq!(get("KUBECONFIG"), Some("/pods/u-1/kubeconfig"));
    }

    #[test]
    fn missing_sources_are_config_errors_in_the_kubelets_words() {
        let cases = [
            (
                json!({"secretKeyRef": {"name": "gone", "key": "k"}}),
                "secret \"gone\" not found",
            ),
            (
                json!({"configMapKeyRef": {"name": "absent", "key": "k"}}),
                "configmap \"absent\" not found",
            ),
            (
                json!({"secretKeyRef": {"name": "sec", "key": "k"}}),
                "couldn't find key k in Secret ns/sec",
            ),
            (
                json!({"configMapKeyRef": {"name": "cm", "key": "k"}}),
                "couldn't find key k in ConfigMap ns/cm",
            ),
        ];
        for (from, message) in cases {
            let c = container(json!({"name": "c", "env": [{"name": "X", "valueFrom": from}]}));
            let e = environment(&pod(), &c, &sources(), &facts(), vec![]).expect_err("error");
            assert_eq!(e, NotStarted::config(message.into()));
        }
        let c = container(json!({"name": "c", "envFrom": [{"secretRef": {"name": "gone"}}]}));
        let e = environment(&pod(), &c, &sources(), &facts(), vec![]).expect_err("error");
        assert_eq!(e.message, "secret \"gone\" not found");
    }

    #[test]
    fn the_plan_replaces_the_binary_and_rewrites_paths() {
        let c = container(
            json!({"name": "c", "command": ["/usr/local/bin/sovereign", "mover"],
            "args": ["certs", "--out", "$(OUT)/x"], "workingDir": "/data",
            "env": [{"name": "OUT", "value": "/data"}],
            "volumeMounts": [{"name": "d", "mountPath": "/data"}]}),
        );
        let vols: HashMap<String, PathBuf> = [("d".to_string(), PathBuf::from("/host/d"))].into();
        let bin = PathBuf::from("/build/sovereign");
        let p = plan(
            &pod(),
            &c,
            &bin,
            Path::new("/pods/u-1"),
            &vols,
            &sources(),
            &facts(),
        )
        .expect("plan");
        assert_eq!(p.program, bin);
        assert_eq!(p.args, ["mover", "certs", "--out", "/host/d/x"]);
        assert_eq!(p.cwd, PathBuf::from("/host/d"));
        assert!(p.env.contains(&("OUT".into(), "/host/d".into())));
        let wrong = container(json!({"name": "c", "command": ["sh", "-c", "true"]}));
        let e = plan(
            &pod(),
            &wrong,
            &bin,
            Path::new("/p"),
            &vols,
            &sources(),
            &facts(),
        )
        .expect_err("sh");
        assert_eq!(e.reason, "RunContainerError");
        let bare = container(json!({"name": "c"}));
        let p = plan(
            &pod(),
            &bare,
            &bin,
            Path::new("/p"),
            &vols,
            &sources(),
            &facts(),
        )
        .expect("plan");
        assert_eq!(p.args, ["run"]);
        assert_eq!(p.cwd, PathBuf::from("/p"));
    }

    #[test]
    fn maps_are_formatted_as_the_kubelet_does() {
        assert_eq!(
            format_map(pod().metadata.labels.as_ref()),
            "a=\"x\\\"y\"\nb=\"2\""
        );
    }
}
