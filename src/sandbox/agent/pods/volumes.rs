//! A pod's volumes as host directories: `persistentVolumeClaim` (and generic ephemeral) → the
//! bound volume's directory, `hostPath` → that path, `secret`/`configMap`/`downwardAPI`/
//! `projected` → files written under `<pod dir>/volumes/<name>` (items, defaultMode, mode;
//! projected service-account tokens requested from the API), `emptyDir` and anything else → a
//! directory of the pod that lives as long as the pod.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection};

use super::exec::field_ref;
use super::sources::{Entries, Kind, Sources};
use super::tokens::Token;

/// Why a volume cannot be set up (the pod waits in ContainerCreating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub volume: String,
    pub message: String,
}

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

fn mode(m: Option<i32>, default: u32) -> u32 {
    m.and_then(|m| u32::try_from(m).ok()).unwrap_or(default)
}

/// The files of a Secret's or ConfigMap's entries: the listed items, or every key.
pub fn key_files(
    kind: Kind,
    entries: &Entries,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<File>, String> {
    let Some(items) = items else {
        return Ok(entries
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                bytes: v.clone(),
                mode: default_mode,
            })
            .collect());
    };
    let mut out = Vec::new();
    for it in items {
        match entries.iter().find(|(k, _)| *k == it.key) {
            Some((_, v)) => out.push(File {
                path: it.path.clone(),
                bytes: v.clone(),
                mode: mode(it.mode, default_mode),
            }),
            None if optional => {}
            None => {
                let what = match kind {
                    Kind::Secret => "secret references non-existent secret key",
                    Kind::ConfigMap => "configmap references non-existent config key",
                };
                return Err(format!("{what}: {}", it.key));
            }
        }
    }
    Ok(out)
}

/// The files of downwardAPI items.
pub fn downward_files(
    pod: &Pod,
    pod_ip: &str,
    host_ip: &str,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Vec<File> {
    items
        .iter()
        .filter_map(|it| {
            let value = match (&it.field_ref, &it.resource_field_ref) {
                (Some(f), _) => field_ref(pod, pod_ip, host_ip, &f.field_path)?,
                (None, Some(_)) => "0".to_string(),
                (None, None) => return None,
            };
            Some(File {
                path: it.path.clone(),
                bytes: value.into_bytes(),
                mode: mode(it.mode, default_mode),
            })
        })
        .collect()
}

/// Writes files under `dir`; a path that would leave it is refused.
pub fn write_files(dir: &Path, files: &[File]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for f in files {
        if f.path.split('/').any(|p| p == ".." || p.is_empty()) {
            continue;
        }
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    Ok(())
}

/// Everything the files of a pod's volumes come from.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub sources: &'a Sources,
}

/// A volume made of files: what to write, and the tokens to request into it.
#[derive(Debug, Default)]
pub struct Materials {
    pub files: Vec<File>,
    pub tokens: Vec<Token>,
}

fn object_files(
    inputs: &Inputs,
    kind: Kind,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<File>, String> {
    match inputs.sources.get(kind, name) {
        Some(entries) => key_files(kind, entries, items, default_mode, optional),
        None if optional => Ok(vec![]),
        None => Err(format!("{} \"{name}\" not found", kind.lower())),
    }
}

fn projection(
    inputs: &Inputs,
    dir: &Path,
    p: &VolumeProjection,
    default_mode: u32,
    m: &mut Materials,
) -> Result<(), String> {
    if let Some(s) = &p.secret {
        let files = object_files(
            inputs,
            Kind::Secret,
            &s.name,
            s.items.as_deref(),
            default_mode,
            s.optional == Some(true),
        )?;
        m.files.extend(files);
    }
    if let Some(c) = &p.config_map {
        let files = object_files(
            inputs,
            Kind::ConfigMap,
            &c.name,
            c.items.as_deref(),
            default_mode,
            c.optional == Some(true),
        )?;
        m.files.extend(files);
    }
    if let Some(d) = &p.downward_api {
        let items = d.items.as_deref().unwrap_or_default();
        m.files.extend(downward_files(
            inputs.pod,
            inputs.pod_ip,
            inputs.host_ip,
            items,
            default_mode,
        ));
    }
    if let Some(t) = &p.service_account_token {
        let sa = inputs
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let path = dir.join(&t.path);
        m.tokens.push(Token::new(
            path,
            &sa,
            t.audience.clone(),
            t.expiration_seconds,
            default_mode,
        ));
    }
    Ok(())
}

/// The files of a secret, configMap, downwardAPI or projected volume (None for other kinds).
pub fn materials(inputs: &Inputs, v: &Volume, dir: &Path) -> Option<Result<Materials, String>> {
    let mut m = Materials::default();
    let r = if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let dm = mode(s.default_mode, 0o644);
        object_files(
            inputs,
            Kind::Secret,
            &name,
            s.items.as_deref(),
            dm,
            s.optional == Some(true),
        )
        .map(|f| m.files = f)
    } else if let Some(c) = &v.config_map {
        let dm = mode(c.default_mode, 0o644);
        object_files(
            inputs,
            Kind::ConfigMap,
            &c.name,
            c.items.as_deref(),
            dm,
            c.optional == Some(true),
        )
        .map(|f| m.files = f)
    } else if let Some(d) = &v.downward_api {
        let items = d.items.as_deref().unwrap_or_default();
        m.files = downward_files(
            inputs.pod,
            inputs.pod_ip,
            inputs.host_ip,
            items,
            mode(d.default_mode, 0o644),
        );
        Ok(())
    } else if let Some(p) = &v.projected {
        let dm = mode(p.default_mode, 0o644);
        p.sources
            .iter()
            .flatten()
            .try_for_each(|src| projection(inputs, dir, src, dm, &mut m))
    } else {
        return None;
    };
    Some(r.map(|()| m))
}

/// The directory of a volume that is not made of files, and the claim it needs bound (if any).
pub fn location(pod: &Pod, v: &Volume, own: PathBuf) -> (PathBuf, Option<String>) {
    if let Some(c) = &v.persistent_volume_claim {
        return (own, Some(c.claim_name.clone()));
    }
    if v.ephemeral.is_some() {
        // A generic ephemeral volume's claim is named after the pod and the volume.
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        return (own, Some(format!("{pod_name}-{}", v.name)));
    }
    if let Some(h) = &v.host_path {
        return (PathBuf::from(&h.path), None);
    }
    (own, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
            "spec": {"serviceAccountName": "robot", "containers": [], "volumes": [
                {"name": "api", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256, "items": [{"key": "k", "path": "sub/k", "mode": 384}]}},
                {"name": "missing", "configMap": {"name": "absent"}},
                {"name": "opt", "configMap": {"name": "absent", "optional": true}},
                {"name": "labels", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "host", "hostPath": {"path": "/srv/x"}},
                {"name": "scratch", "emptyDir": {}}]}
        }))
        .expect("pod")
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.insert(
            Kind::ConfigMap,
            "kube-root-ca.crt",
            Some(vec![("ca.crt".into(), b"PEM".to_vec())]),
        );
        s.insert(
            Kind::Secret,
            "s",
            Some(vec![
                ("k".into(), b"v".to_vec()),
                ("other".into(), b"o".to_vec()),
            ]),
        );
        s.insert(Kind::ConfigMap, "absent", None);
        s
    }

    fn volume(p: &Pod, name: &str) -> Volume {
        p.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .find(|v| v.name == name)
            .cloned()
            .expect("volume")
    }

    #[test]
    fn projected_volumes_carry_token_ca_and_namespace() {
        let p = pod();
        let s = sources();
        let inputs = Inputs {
            pod: &p,
            pod_ip: "1",
            host_ip: "2",
            sources: &s,
        };
        let dir = Path::new("/pods/u/volumes/api");
        let m = materials(&inputs, &volume(&p, "api"), dir)
            .expect("files")
            .expect("ok");
        let files: Vec<(&str, &[u8], u32)> = m
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.bytes.as_slice(), f.mode))
            .collect();
        assert_eq!(
            files,
            [
                ("ca.crt", &b"PEM"[..], 0o644),
                ("namespace", &b"ns"[..], 0o644)
            ]
        );
        assert_eq!(m.tokens.len(), 1);
        let t = &m.tokens[0];
        assert_eq!(
            (
                t.path.as_path(),
                t.service_account.as_str(),
                t.expiration_seconds
            ),
            (dir.join("token").as_path(), "robot", 3607)
        );
        assert_eq!(t.audience, None);
    }

    #[test]
    fn secret_items_modes_and_missing_objects() {
        let p = pod();
        let s = sources();
        let inputs = Inputs {
            pod: &p,
            pod_ip: "1",
            host_ip: "2",
            sources: &s,
        };
        let m = materials(&inputs, &volume(&p, "sec"), Path::new("/d"))
            .expect("files")
            .expect("ok");
        assert_eq!(
            m.files,
            [File {
                path: "sub/k".into(),
                bytes: b"v".to_vec(),
                mode: 0o600
            }]
        );
        let e = materials(&inputs, &volume(&p, "missing"), Path::new("/d")).expect("files");
        assert_eq!(e.expect_err("missing"), "configmap \"absent\" not found");
        let opt = materials(&inputs, &volume(&p, "opt"), Path::new("/d"))
            .expect("files")
            .expect("ok");
        assert!(opt.files.is_empty());
        let m = materials(&inputs, &volume(&p, "labels"), Path::new("/d"))
            .expect("files")
            .expect("ok");
        assert_eq!(m.files[0].bytes, b"app=\"x\"");
        let items = [KeyToPath {
            key: "nope".into(),
            mode: None,
            path: "x".into(),
        }];
        let e = key_files(Kind::Secret, &vec![], Some(&items), 0o644, false).expect_err("key");
        assert_eq!(e, "secret references non-existent secret key: nope");
    }

    #[test]
    fn other_volumes_are_directories() {
        let p = pod();
        let own = PathBuf::from("/own");
        assert_eq!(
            location(&p, &volume(&p, "claim"), own.clone()),
            (own.clone(), Some("data".into()))
        );
        assert_eq!(
            location(&p, &volume(&p, "host"), own.clone()),
            (PathBuf::from("/srv/x"), None)
        );
        assert_eq!(
            location(&p, &volume(&p, "scratch"), own.clone()),
            (own, None)
        );
        let s = sources();
        let inputs = Inputs {
            pod: &p,
            pod_ip: "1",
            host_ip: "2",
            sources: &s,
        };
        assert!(materials(&inputs, &volume(&p, "scratch"), Path::new("/d")).is_none());
    }

    #[test]
    fn files_never_leave_their_volume() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = [
            File {
                path: "a/b".into(),
                bytes: b"1".to_vec(),
                mode: 0o600,
            },
            File {
                path: "../escape".into(),
                bytes: b"2".to_vec(),
                mode: 0o600,
            },
        ];
        write_files(dir.path(), &files).expect("write");
        assert_eq!(std::fs::read(dir.path().join("a/b")).expect("read"), b"1");
        assert!(!dir.path().parent().expect("parent").join("escape").exists());
    }
}
