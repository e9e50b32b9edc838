//! Getting a pod's containers going: its volumes set up once (directories, files, tokens, the
//! kubeconfig), then each container started when its turn comes — executed ones as processes
//! (environment and arguments per `exec`), simulated ones marked running (or, for init
//! containers, completed) at once, as KWOK does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::Notify;

use super::containers::{RunState, Runner, Slot, now};
use super::exec::{self, Facts, NotStarted};
use super::restart::{Role, Rule};
use super::sources::{self, Sources};
use super::tokens::{self, Token};
use super::volumes::{self, Failure, Inputs};
use super::{PodRef, Shared};

/// A pod's volumes, set up.
#[derive(Debug, Default)]
pub struct Prepared {
    pub dirs: HashMap<String, PathBuf>,
    pub tokens: Vec<Token>,
    /// The volume holding the pod's API token, and the kubeconfig naming it.
    pub kubeconfig: Option<(String, PathBuf)>,
}

fn failure(volume: &str, message: impl std::fmt::Display) -> Failure {
    Failure {
        volume: volume.to_string(),
        message: message.to_string(),
    }
}

/// Where the pod's addresses are.
pub struct Net<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// Sets up every volume of the pod; the first that cannot be set up is the error.
pub async fn prepare(
    shared: &Shared,
    pod: &PodRef,
    spec: &Pod,
    dir: &Path,
    net: &Net<'_>,
) -> Result<Prepared, Failure> {
    let client = &shared.host.client;
    let wanted = sources::wanted_by_volumes(spec);
    let srcs = sources::fetch(client, &pod.namespace, &wanted)
        .await
        .map_err(|e| failure("", e))?;
    let inputs = Inputs {
        pod: spec,
        pod_ip: net.pod_ip,
        host_ip: net.host_ip,
        sources: &srcs,
    };
    let mut out = Prepared::default();
    let volumes = spec.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for v in volumes {
        let own = dir.join("volumes").join(&v.name);
        let path = match volumes::materials(&inputs, v, &own) {
            Some(Ok(m)) => {
                // Derived files are written afresh (a resumed pod's may be stale).
                if let Err(e) = std::fs::remove_dir_all(&own)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(failure(&v.name, e));
                }
                volumes::write_files(&own, &m.files).map_err(|e| failure(&v.name, e))?;
                for mut t in m.tokens {
                    t.renew(client, pod)
                        .await
                        .map_err(|e| failure(&v.name, e))?;
                    if t.audience.is_none() && out.kubeconfig.is_none() {
                        let k = tokens::write_kubeconfig(&shared.host, pod, dir, &t.path)
                            .map_err(|e| failure(&v.name, e))?;
                        out.kubeconfig = Some((v.name.clone(), k));
                    }
                    out.tokens.push(t);
                }
                own
            }
            Some(Err(message)) => return Err(failure(&v.name, message)),
            None => directory(shared, pod, spec, v, own).await?,
        };
        out.dirs.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// A volume that is a directory: a bound claim's, a host path, or the pod's own.
async fn directory(
    shared: &Shared,
    pod: &PodRef,
    spec: &Pod,
    v: &k8s_openapi::api::core::v1::Volume,
    own: PathBuf,
) -> Result<PathBuf, Failure> {
    let (path, claim) = volumes::location(spec, v, own.clone());
    if let Some(claim) = claim {
        return crate::sandbox::storage::claim_dir(&shared.host.client, &pod.namespace, &claim)
            .await
            .ok_or_else(|| {
                failure(
                    &v.name,
                    format!("persistentvolumeclaim \"{claim}\" is not bound"),
                )
            });
    }
    let create = path == own
        || v.host_path
            .as_ref()
            .is_some_and(|h| h.type_.as_deref() == Some("DirectoryOrCreate"));
    if create {
        std::fs::create_dir_all(&path).map_err(|e| failure(&v.name, e))?;
    }
    Ok(path)
}

/// The spec of one of the pod's containers.
pub fn container<'a>(pod: &'a Pod, slot: &Slot) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    match slot.role {
        Role::Main => spec.containers.iter().find(|c| c.name == slot.name),
        Role::Init | Role::Sidecar => spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == slot.name),
    }
}

/// Marks a simulated container started: running and ready, or completed for an init container.
pub fn simulate(slot: &Slot) {
    let at = now();
    slot.update(|r| {
        if slot.role == Role::Init {
            r.state = RunState::Terminated {
                exit_code: 0,
                signal: None,
                reason: "Completed".into(),
                message: String::new(),
                started_at: at,
                finished_at: at,
                instance: 0,
            };
            r.finished = true;
            r.ready = true;
        } else {
            r.state = RunState::Running { started_at: at };
            r.ready = true;
            r.started = true;
        }
    });
    slot.mark_launched();
}

/// Ends a simulated container as a Job's does: exit 0, Completed.
pub fn complete(slot: &Slot) {
    let at = now();
    slot.update(|r| {
        let started_at = match r.state {
            RunState::Running { started_at } => started_at,
            _ => at,
        };
        r.state = RunState::Terminated {
            exit_code: 0,
            signal: None,
            reason: "Completed".into(),
            message: String::new(),
            started_at,
            finished_at: at,
            instance: r.restarts,
        };
        r.ready = false;
        r.started = false;
        r.finished = true;
    });
}

/// What starting an executed container needs besides the slot.
pub struct Start<'a> {
    pub shared: &'a Arc<Shared>,
    pub pod: &'a Arc<PodRef>,
    pub spec: &'a Pod,
    pub dir: &'a Path,
    pub net: Net<'a>,
    pub prepared: &'a Prepared,
    pub wake: &'a Arc<Notify>,
}

/// Starts an executed container's task; an error says why it cannot start yet.
pub async fn start(s: &Start<'_>, slot: &Arc<Slot>) -> Result<(), NotStarted> {
    let (Some(c), Some(binary)) = (container(s.spec, slot), slot.binary.as_ref()) else {
        return Ok(());
    };
    let srcs: Sources = sources::fetch(
        &s.shared.host.client,
        &s.pod.namespace,
        &sources::wanted_by_container(c),
    )
    .await
    .map_err(|e| NotStarted {
        reason: "CreateContainerConfigError",
        message: e.to_string(),
    })?;
    let mounts_token = s
        .prepared
        .kubeconfig
        .as_ref()
        .filter(|(vol, _)| c.volume_mounts.iter().flatten().any(|m| &m.name == vol));
    let facts = Facts {
        pod_ip: s.net.pod_ip.to_string(),
        host_ip: s.net.host_ip.to_string(),
        api: s.shared.host.api,
        kubeconfig: mounts_token.map(|(_, k)| k.clone()),
    };
    let plan = exec::plan(s.spec, c, binary, s.dir, &s.prepared.dirs, &srcs, &facts)?;
    let logs = super::logs::container_dir(s.dir, &slot.name);
    std::fs::create_dir_all(&logs).map_err(|e| NotStarted {
        reason: "CreateContainerError",
        message: format!("cannot create {}: {e}", logs.display()),
    })?;
    let policy = s
        .spec
        .spec
        .as_ref()
        .and_then(|p| p.restart_policy.as_deref());
    slot.start(Runner {
        slot: slot.clone(),
        plan,
        rule: Rule::of(policy, slot.role),
        sovereign: s.shared.host.sovereign.clone(),
        logs,
        pod: s.pod.clone(),
        events: s.shared.events.clone(),
        wake: s.wake.clone(),
    });
    Ok(())
}
