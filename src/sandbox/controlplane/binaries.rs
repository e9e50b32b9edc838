//! The upstream programs a sandbox cluster runs: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubectl of the same release for the tests, the CSI snapshot add-on (the
//! external-snapshotter's CRDs, snapshot-controller and its RBAC, under `addons/`) and Helm (which
//! installs the operator's chart as a platform team does). They are built once with the
//! Go toolchain from the pinned modules in `controlplane/` (embedded in this binary, so the build
//! works from any directory) into a cache, `~/.cache/sovereign/controlplane/<release>-<key>/`,
//! where `<key>` hashes the pinned module files and the build flags: a change of either builds
//! again, anything else reuses the cache. `--control-plane-bin DIR` (or
//! `SOVEREIGN_CONTROL_PLANE_BIN`) uses programs a user already has instead.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The Kubernetes release the pinned module builds.
pub const KUBERNETES_RELEASE: &str = "v1.37.2";
/// The etcd release of the pinned module.
pub const ETCD_RELEASE: &str = "v3.7.3";
/// Where a user's own programs are named.
pub const BIN_ENV: &str = "SOVEREIGN_CONTROL_PLANE_BIN";

/// The Helm release of the pinned module.
pub const HELM_RELEASE: &str = "v4.3.2";

const MODULES: [(&str, &str, &str); 4] = [
    (
        "kubernetes",
        include_str!("../../../controlplane/kubernetes/go.mod"),
        include_str!("../../../controlplane/kubernetes/go.sum"),
    ),
    (
        "etcd",
        include_str!("../../../controlplane/etcd/go.mod"),
        include_str!("../../../controlplane/etcd/go.sum"),
    ),
    (
        "addons",
        include_str!("../../../controlplane/addons/go.mod"),
        include_str!("../../../controlplane/addons/go.sum"),
    ),
    (
        "helm",
        include_str!("../../../controlplane/helm/go.mod"),
        include_str!("../../../controlplane/helm/go.sum"),
    ),
];

const KUBE_COMMANDS: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];
/// Programs a cluster cannot run without.
const REQUIRED: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const SNAPSHOT_CLIENT_MODULE: &str = "github.com/kubernetes-csi/external-snapshotter/client/v8";
const SNAPSHOTTER_MODULE: &str = "github.com/kubernetes-csi/external-snapshotter/v8";
pub const SNAPSHOT_CONTROLLER: &str = "snapshot-controller";
const SNAPSHOT_RBAC: &str = "rbac-snapshot-controller.yaml";
const HELM_MODULE: &str = "helm.sh/helm/v4";
pub const HELM: &str = "helm";
const STAMP: &str = ".complete";

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error(
        "the control plane must be built once with Go (1.26 or newer), and `go` is not on the PATH ({0}); install Go, or pass --control-plane-bin DIR (or set {BIN_ENV}) with etcd, kube-apiserver, kube-controller-manager and kube-scheduler in it"
    )]
    NoGo(String),
    #[error(
        "{dir} has no {missing} (it needs etcd, kube-apiserver, kube-controller-manager and kube-scheduler)"
    )]
    Missing { dir: PathBuf, missing: String },
    #[error("`{command}` failed in {dir}: {detail}")]
    Go {
        command: String,
        dir: PathBuf,
        detail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no home or cache directory to build the control plane in; set XDG_CACHE_HOME or SOVEREIGN_CACHE_DIR"
    )]
    NoCacheDir,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BinariesError + '_ {
    move |source| BinariesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory holding the programs, the snapshot add-on's and Helm's.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
    addons: PathBuf,
    helm: PathBuf,
}

impl Binaries {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }

    /// kubectl of the cluster's release (None when a user's directory has none).
    pub fn kubectl(&self) -> Option<PathBuf> {
        Some(self.path("kubectl")).filter(|p| p.is_file())
    }

    /// Helm, of the pinned release (or the user's directory's own).
    pub fn helm(&self) -> &Path {
        &self.helm
    }

    /// The snapshot-controller of the add-on.
    pub fn snapshot_controller(&self) -> PathBuf {
        self.addons.join(SNAPSHOT_CONTROLLER)
    }

    /// The upstream CSI snapshot CRDs (`snapshot.storage.k8s.io_*.yaml`), then the
    /// snapshot-controller's RBAC, as published.
    pub fn addon_manifests(&self) -> Result<Vec<String>, BinariesError> {
        let dir = &self.addons;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("snapshot.storage.k8s.io_") && n.ends_with(".yaml")
                })
            })
            .collect();
        files.sort();
        files.push(dir.join(SNAPSHOT_RBAC));
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).map_err(io_err(p)))
            .collect()
    }
}

/// Where the programs come from: `given` (the flag), else the environment variable, else the
/// cache (built when missing, with `progress` told each step).
pub fn locate(
    given: Option<&Path>,
    progress: &mut dyn FnMut(&str),
) -> Result<Binaries, BinariesError> {
    let env = std::env::var_os(BIN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    match given.map(Path::to_path_buf).or(env) {
        Some(dir) => users(&dir, progress),
        None => cached(progress),
    }
}

fn users(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<Binaries, BinariesError> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(BinariesError::Missing {
            dir: dir.to_path_buf(),
            missing: missing.join(", "),
        });
    }
    // The snapshot add-on: the directory's own `addons/`, else built from the pinned module.
    let own = dir.join("addons");
    let addons = if own.join(SNAPSHOT_CONTROLLER).is_file() {
        own
    } else {
        cached_addons(progress)?
    };
    let helm = match dir.join(HELM) {
        own if own.is_file() => own,
        _ => cached_helm(progress)?,
    };
    Ok(Binaries {
        dir: dir.to_path_buf(),
        addons,
        helm,
    })
}

/// `SOVEREIGN_CACHE_DIR`, else `$XDG_CACHE_HOME/sovereign`, else `~/.cache/sovereign`.
pub fn cache_dir() -> Result<PathBuf, BinariesError> {
    if let Some(d) = std::env::var_os("SOVEREIGN_CACHE_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("sovereign"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("sovereign"))
        .ok_or(BinariesError::NoCacheDir)
}

fn ldflags() -> String {
    let (major, minor) = KUBERNETES_RELEASE
        .trim_start_matches('v')
        .split_once('.')
        .map(|(ma, rest)| (ma, rest.split('.').next().unwrap_or(rest)))
        .unwrap_or(("1", "0"));
    // Module zips are not git checkouts: without these the programs report v0.0.0-master.
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        for (k, v) in [
            ("gitVersion", KUBERNETES_RELEASE),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", "1970-01-01T00:00:00Z"),
        ] {
            flags.push(format!("-X {pkg}.{k}={v}"));
        }
    }
    flags.join(" ")
}

fn key_of(modules: &[&str], extra: &str) -> String {
    let mut h = Sha256::new();
    for (name, module, sum) in MODULES.iter().filter(|m| modules.contains(&m.0)) {
        h.update(name.as_bytes());
        h.update(module.as_bytes());
        h.update(sum.as_bytes());
    }
    h.update(extra.as_bytes());
    hex::encode(h.finalize())[..12].to_string()
}

/// The cache directory of this build: the release and a hash of what decides the binaries.
pub fn cache_key() -> String {
    let key = key_of(&["kubernetes", "etcd"], &ldflags());
    format!("{KUBERNETES_RELEASE}-{key}")
}

/// The add-on's own key, so that a change of either never rebuilds the other.
fn addons_key() -> String {
    key_of(&["addons"], "")
}

/// Module zips carry no version: the one Helm reports is set at link time.
fn helm_ldflags() -> String {
    format!("-s -w -X {HELM_MODULE}/internal/version.version={HELM_RELEASE}")
}

fn helm_key() -> String {
    format!("{HELM_RELEASE}-{}", key_of(&["helm"], &helm_ldflags()))
}

/// Builds `<root>/<key>/<out>/` once: `make(src, partial, progress)` writes the programs into a
/// fresh `<out>.partial/` (modules under `src/`), which becomes `<out>/` with a `.complete` stamp
/// only when it succeeded. One process at a time builds (whoever waited finds it done).
fn once(
    root: &Path,
    key: &str,
    out: &str,
    what: &str,
    progress: &mut dyn FnMut(&str),
    make: impl FnOnce(&Path, &Path, &mut dyn FnMut(&str)) -> Result<(), BinariesError>,
) -> Result<PathBuf, BinariesError> {
    let dir = root.join(key);
    let done = dir.join(out);
    if done.join(STAMP).is_file() {
        return Ok(done);
    }
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let lock_path = root.join(".build.lock");
    let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        progress(&format!(
            "another process is building {what}; waiting for it"
        ));
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&lock_path)(e.into()))?;
    }
    if done.join(STAMP).is_file() {
        return Ok(done);
    }
    let partial = dir.join(format!("{out}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io_err(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io_err(&partial))?;
    make(&dir.join("src"), &partial, progress)?;
    let stamp = partial.join(STAMP);
    std::fs::write(&stamp, format!("{key}\n")).map_err(io_err(&stamp))?;
    if done.exists() {
        std::fs::remove_dir_all(&done).map_err(io_err(&done))?;
    }
    std::fs::rename(&partial, &done).map_err(io_err(&done))?;
    Ok(done)
}

fn cached(progress: &mut dyn FnMut(&str)) -> Result<Binaries, BinariesError> {
    let root = cache_dir()?.join("controlplane");
    let dir = once(
        &root,
        &cache_key(),
        "bin",
        "the control plane",
        progress,
        build,
    )?;
    Ok(Binaries {
        dir,
        addons: cached_addons(progress)?,
        helm: cached_helm(progress)?,
    })
}

fn cached_helm(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BinariesError> {
    let root = cache_dir()?.join("helm");
    let dir = once(&root, &helm_key(), "bin", "Helm", progress, build_helm)?;
    Ok(dir.join(HELM))
}

fn cached_addons(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BinariesError> {
    let root = cache_dir()?.join("addons");
    once(
        &root,
        &addons_key(),
        "addons",
        "the snapshot add-on",
        progress,
        build_addons,
    )
}

fn go(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("go");
    c.args(args)
        .current_dir(dir)
        .env("CGO_ENABLED", "0")
        .stdin(Stdio::null());
    c
}

fn run_go(dir: &Path, args: &[&str]) -> Result<String, BinariesError> {
    let out = go(dir, args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BinariesError::NoGo(e.to_string())
        } else {
            io_err(dir)(e)
        }
    })?;
    if !out.status.success() {
        return Err(BinariesError::Go {
            command: format!("go {}", args.join(" ")),
            dir: dir.to_path_buf(),
            detail: tail(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn write_modules(src: &Path) -> Result<(), BinariesError> {
    for (name, module, sum) in MODULES {
        let d = src.join(name);
        std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        for (file, text) in [("go.mod", module), ("go.sum", sum)] {
            let p = d.join(file);
            std::fs::write(&p, text).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// Builds the control plane's programs from the modules (written under `src`) into `partial`.
fn build(src: &Path, partial: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), BinariesError> {
    let started = Instant::now();
    let version = run_go(Path::new("."), &["env", "GOVERSION"])?;
    progress(&format!(
        "building the control plane once (Kubernetes {KUBERNETES_RELEASE}, etcd {ETCD_RELEASE}) with {} into {}",
        version.trim(),
        partial.parent().unwrap_or(partial).display()
    ));
    write_modules(src)?;
    for m in ["kubernetes", "etcd"] {
        progress(&format!("downloading the Go modules of {m}"));
        run_go(&src.join(m), &["mod", "download"])?;
    }
    let kube = src.join("kubernetes");
    let pkgs: Vec<String> = KUBE_COMMANDS
        .iter()
        .map(|c| format!("k8s.io/kubernetes/cmd/{c}"))
        .collect();
    let mut list_args = vec!["list", "-deps"];
    list_args.extend(pkgs.iter().map(String::as_str));
    let total = run_go(&kube, &list_args)?.lines().count();
    let out = format!("{}/", partial.display());
    let ld = ldflags();
    let mut args = vec![
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        ld.as_str(),
        "-o",
        out.as_str(),
    ];
    args.extend(pkgs.iter().map(String::as_str));
    progress(&format!(
        "compiling {} ({total} packages; about 10 minutes on 2 cores, once)",
        KUBE_COMMANDS.join(", ")
    ));
    compile(&kube, &args, total, progress)?;
    progress("compiling etcd");
    let etcd_out = partial.join("etcd");
    let etcd_out = etcd_out.to_string_lossy();
    run_go(
        &src.join("etcd"),
        &[
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            &etcd_out,
            "go.etcd.io/etcd/server/v3",
        ],
    )?;
    progress(&format!(
        "control plane built in {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `go build -v`: one package name per line on stderr, counted for the progress lines.
fn compile(
    dir: &Path,
    args: &[&str],
    total: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BinariesError> {
    let mut child = go(dir, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BinariesError::NoGo(e.to_string()))?;
    let mut lines = Vec::new();
    let mut done = 0usize;
    let mut last = Instant::now();
    if let Some(err) = child.stderr.take() {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            done += 1;
            if last.elapsed().as_secs() >= 30 {
                last = Instant::now();
                progress(&format!("  compiled {done} of about {total} packages"));
            }
            lines.push(line);
        }
    }
    let status = child.wait().map_err(io_err(dir))?;
    if !status.success() {
        return Err(BinariesError::Go {
            command: format!("go {}", args.join(" ")),
            dir: dir.to_path_buf(),
            detail: tail(&lines.join("\n")),
        });
    }
    Ok(())
}

/// Builds the snapshot-controller of the add-ons module (written under `src`) into `out`, with
/// the snapshot CRDs and the controller's RBAC from the downloaded modules.
fn build_addons(
    src: &Path,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BinariesError> {
    progress("building the CSI snapshot add-on (external-snapshotter: CRDs, snapshot-controller)");
    write_modules(src)?;
    let module = src.join("addons");
    run_go(&module, &["mod", "download"])?;
    let program = out.join(SNAPSHOT_CONTROLLER);
    let program = program.to_string_lossy();
    let cmd = format!("{SNAPSHOTTER_MODULE}/cmd/{SNAPSHOT_CONTROLLER}");
    let build = [
        "build",
        "-trimpath",
        "-ldflags",
        "-s -w",
        "-o",
        &program,
        &cmd,
    ];
    run_go(&module, &build)?;
    let dir_of = |m: &str| -> Result<PathBuf, BinariesError> {
        let d = run_go(&module, &["list", "-m", "-f", "{{.Dir}}", m])?;
        Ok(PathBuf::from(d.trim()))
    };
    let crds = dir_of(SNAPSHOT_CLIENT_MODULE)?.join("config").join("crd");
    for e in std::fs::read_dir(&crds).map_err(io_err(&crds))?.flatten() {
        let name = e.file_name();
        if name
            .to_string_lossy()
            .starts_with("snapshot.storage.k8s.io_")
        {
            let to = out.join(&name);
            std::fs::copy(e.path(), &to).map_err(io_err(&to))?;
        }
    }
    let rbac = dir_of(SNAPSHOTTER_MODULE)?
        .join("deploy/kubernetes/snapshot-controller")
        .join(SNAPSHOT_RBAC);
    let to = out.join(SNAPSHOT_RBAC);
    std::fs::copy(&rbac, &to).map_err(io_err(&to))?;
    Ok(())
}

/// Builds Helm of the pinned module (written under `src`) into `out`.
fn build_helm(src: &Path, out: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), BinariesError> {
    progress(&format!(
        "building Helm {HELM_RELEASE} once (it installs the operator's chart)"
    ));
    write_modules(src)?;
    let module = src.join("helm");
    run_go(&module, &["mod", "download"])?;
    let program = out.join(HELM);
    let program = program.to_string_lossy();
    let ld = helm_ldflags();
    let cmd = format!("{HELM_MODULE}/cmd/helm");
    let build = ["build", "-trimpath", "-ldflags", &ld, "-o", &program, &cmd];
    run_go(&module, &build)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_names_the_release_and_changes_with_the_flags() {
        let key = cache_key();
        assert!(key.starts_with("v1.37.2-"), "{key}");
        assert_eq!(key, cache_key());
        assert!(ldflags().contains("k8s.io/component-base/version.gitVersion=v1.37.2"));
        assert!(ldflags().contains("gitMinor=37"));
    }

    #[test]
    fn a_users_directory_must_hold_every_program() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("kube-apiserver"), "").expect("w");
        let err = users(dir.path(), &mut |_| {}).expect_err("incomplete");
        let msg = err.to_string();
        let missing = msg.split(" (it needs").next().unwrap_or_default();
        assert!(
            missing.ends_with("has no etcd, kube-controller-manager, kube-scheduler"),
            "{msg}"
        );
    }
}
