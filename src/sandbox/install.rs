//! The operator installed as a platform team installs it, with Helm of the pinned release: the
//! chart `charts/sovereign-operator` in the target (its CRDs, ServiceAccount, RBAC and Deployment,
//! whose pod the node agent runs as a process authenticated with the ServiceAccount's token), and
//! `charts/sovereign-source-access` in the source (the identity the operator uses there, with the
//! least rights the migration needs, and its token). Both charts are embedded in this binary, so
//! `sovereign sandbox` works from any directory. Admin is only the person at the keyboard: Helm
//! runs with the admin kubeconfig, the operator never does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use include_dir::{Dir, include_dir};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::SandboxError;
use crate::sandbox::controlplane::kubeconfig::{self, Entry};

static OPERATOR_CHART: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/charts/sovereign-operator");
static SOURCE_CHART: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/charts/sovereign-source-access");

/// The operator's release, in `names.operator` of the target.
pub const OPERATOR_RELEASE: &str = "sovereign-operator";
/// The source-access release, in the same namespace of the source.
pub const SOURCE_RELEASE: &str = "sovereign-source-access";
/// The ServiceAccount the operator authenticates as in the source (the chart's default).
pub const SOURCE_ACCOUNT: &str = "sovereign-operator";
/// How long Helm waits for the operator's Deployment to be ready.
const HELM_TIMEOUT: &str = "5m";
/// How long the token controller may take to fill the source token's Secret.
const TOKEN_WAIT: Duration = Duration::from_secs(120);

/// Helm, with its own state under `<dir>/helm/` (never the user's), and the admin kubeconfig.
pub struct Helm {
    program: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Helm {
    pub fn new(program: &Path, kubeconfig: &Path, dir: &Path) -> Helm {
        Helm {
            program: program.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            dir: dir.join("helm"),
        }
    }

    /// `helm upgrade --install`: the first run installs, every later one re-applies; `--wait`
    /// returns once its Deployments are ready (or fails with what Helm saw).
    pub async fn upgrade_install(
        &self,
        context: &str,
        release: &str,
        chart: &Path,
        namespace: &str,
        values: &[(&str, String)],
    ) -> Result<(), SandboxError> {
        let mut args: Vec<String> = [
            "upgrade",
            "--install",
            release,
            &chart.to_string_lossy(),
            "--namespace",
            namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            HELM_TIMEOUT,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in values {
            args.push("--set-string".into());
            args.push(format!("{k}={v}"));
        }
        self.run(context, &args).await.map(|_| ())
    }

    /// `helm template`: the chart's objects as YAML documents, rendered without installing.
    pub async fn template(
        &self,
        release: &str,
        chart: &Path,
        namespace: &str,
        values: &[(&str, String)],
    ) -> Result<String, SandboxError> {
        let mut args: Vec<String> = vec![
            "template".into(),
            release.into(),
            chart.to_string_lossy().into_owned(),
            "--namespace".into(),
            namespace.into(),
        ];
        for (k, v) in values {
            args.push("--set-string".into());
            args.push(format!("{k}={v}"));
        }
        self.run("source", &args).await
    }

    async fn run(&self, context: &str, args: &[String]) -> Result<String, SandboxError> {
        let state = |d: &str| self.dir.join(d);
        let out = tokio::process::Command::new(&self.program)
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--kube-context", context])
            .env("HELM_CACHE_HOME", state("cache"))
            .env("HELM_CONFIG_HOME", state("config"))
            .env("HELM_DATA_HOME", state("data"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                SandboxError::Demo(format!("cannot run {}: {e}", self.program.display()))
            })?;
        if !out.status.success() {
            return Err(SandboxError::Demo(format!(
                "`helm {}` in the {context} cluster failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Writes an embedded chart to `<dir>/charts/<name>/` afresh (a chart from an older binary never
/// mixes in) and returns its directory.
fn extract(chart: &Dir<'_>, dir: &Path, name: &str) -> Result<PathBuf, SandboxError> {
    let to = dir.join("charts").join(name);
    if to.exists() {
        std::fs::remove_dir_all(&to)?;
    }
    std::fs::create_dir_all(&to)?;
    chart.extract(&to)?;
    Ok(to)
}

/// The source-access chart, written under `dir` (for `helm template`).
pub fn source_chart(dir: &Path) -> Result<PathBuf, SandboxError> {
    extract(&SOURCE_CHART, dir, "sovereign-source-access")
}

/// Installs (or re-applies) the operator's chart in the target's `namespace`, its default policy
/// allowing `registry` too. Its HTTP endpoint binds the pod's own address: a pod of the sandbox
/// shares its host's network.
pub async fn operator(
    helm: &Helm,
    dir: &Path,
    namespace: &str,
    registry: &str,
) -> Result<(), SandboxError> {
    let chart = extract(&OPERATOR_CHART, dir, "sovereign-operator")?;
    let values = [
        ("metrics.bindAddress", "$(POD_IP)".to_string()),
        ("defaultPolicy.allowedRegistries", format!("{{{registry}}}")),
    ];
    helm.upgrade_install("target", OPERATOR_RELEASE, &chart, namespace, &values)
        .await
}

/// Grants the operator its identity in the source, for `namespaces`, and returns the kubeconfig
/// a platform team would hand over: the source's address and CA, and the ServiceAccount's token.
pub async fn source_access(
    helm: &Helm,
    dir: &Path,
    source: &kube::Client,
    admin: &Entry,
    namespace: &str,
    namespaces: &[&str],
) -> Result<String, SandboxError> {
    let chart = source_chart(dir)?;
    let list = format!("{{{}}}", namespaces.join(","));
    let values = [("namespaces", list)];
    helm.upgrade_install("source", SOURCE_RELEASE, &chart, namespace, &values)
        .await?;
    let token = token_of(source, namespace, &format!("{SOURCE_ACCOUNT}-token")).await?;
    let entry = admin.clone().named("source").with_token(token);
    Ok(kubeconfig::render(&[entry], "source"))
}

/// The token the token controller writes into a `kubernetes.io/service-account-token` Secret.
pub async fn token_of(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, SandboxError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + TOKEN_WAIT;
    loop {
        let secret = api.get_opt(name).await.map_err(SandboxError::api(format!(
            "reading the Secret {namespace}/{name} in the source"
        )))?;
        let token = secret
            .and_then(|s| s.data)
            .and_then(|d| d.get("token").cloned())
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .filter(|t| !t.is_empty());
        if let Some(t) = token {
            return Ok(t);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(SandboxError::Demo(format!(
                "the token controller did not fill the Secret {namespace}/{name} in the source within {}s",
                TOKEN_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_charts_hold_their_templates_and_the_generated_crds() {
        for (chart, name) in [
            (&OPERATOR_CHART, "sovereign-operator"),
            (&SOURCE_CHART, "sovereign-source-access"),
        ] {
            let meta = chart
                .get_file("Chart.yaml")
                .and_then(|f| f.contents_utf8())
                .unwrap_or_default();
            assert!(meta.contains(&format!("name: {name}")), "{meta}");
            assert!(chart.get_dir("templates").is_some(), "{name}");
        }
        for crd in crate::api::crds() {
            let file = format!("crds/{}.yaml", kube::ResourceExt::name_any(&crd));
            assert!(OPERATOR_CHART.get_file(&file).is_some(), "{file}");
        }
    }
}
