//! kubectl of the server's release against the shared clusters: what the server reports about
//! itself, the project's CRDs as an on-call operator meets them (apply, printer columns, explain,
//! refusals), and a Deployment run by the real controllers on the node agent's nodes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use sovereign::sandbox::controlplane::kubeconfig;

use super::support;

pub struct Kubectl {
    dir: tempfile::TempDir,
    namespace: String,
}

pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// kubectl for the target cluster (contexts `target` and `source`), in namespace `ns`
    /// (created).
    pub async fn new(ns: &str) -> Kubectl {
        let sh = support::shared();
        let dir = tempfile::tempdir().expect("tempdir");
        let text = kubeconfig::render(
            &[sh.target_entry("target"), sh.source_entry("source")],
            "target",
        );
        std::fs::write(dir.path().join("kubeconfig"), text).expect("kubeconfig");
        let k = Kubectl {
            dir,
            namespace: ns.to_string(),
        };
        let _ = k.run(&["create", "namespace", ns]).await;
        k
    }

    pub fn base(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(support::shared().kubectl());
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("-n")
            .arg(&self.namespace)
            .env("HOME", self.dir.path());
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.base().args(args).stdin(Stdio::null()).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 120 s"))
        .expect("run kubectl");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    pub fn file(&self, name: &str, content: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.display().to_string()
    }

    pub async fn install_crds(&self) {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        self.ok(&["apply", "--server-side", "--force-conflicts", "-f", crds])
            .await;
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/sovereignworkloads.sovereign.dev",
            "crd/sovereignclusters.sovereign.dev",
            "--timeout=60s",
        ])
        .await;
    }
}

fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn sovc(name: &str) -> String {
    format!(
        r#"apiVersion: sovereign.dev/v1alpha1
kind: SovereignCluster
metadata:
  name: {name}
spec:
  inCluster: true
  provider: ovhcloud
  region: ca-east-bhs
  location: {{country: CA, province: QC, city: Beauharnois}}
  jurisdiction: FR
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_the_pinned_release_and_answers_for_itself() {
    let k = Kubectl::new("kc-version").await;
    let v: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"]).await).expect("json");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.37.2", "{v}");
    assert_eq!(v["clientVersion"]["gitVersion"], "v1.37.2", "{v}");
    let out = k.ok(&["api-resources"]).await;
    for line in [
        "deployments ",
        "customresourcedefinitions",
        "volumesnapshots",
        "storageclasses",
        "validatingadmissionpolicies",
    ] {
        assert!(out.contains(line), "api-resources misses {line}: {out}");
    }
    // RBAC and the metrics endpoint are the real server's.
    let can = k.ok(&["auth", "can-i", "--list"]).await;
    assert!(can.contains("*.*") && can.contains("[*]"), "{can}");
    let whoami = k.ok(&["auth", "whoami", "-o", "json"]).await;
    assert!(
        whoami.contains("kubernetes-admin") && whoami.contains("system:masters"),
        "{whoami}"
    );
    let metrics = k.ok(&["get", "--raw", "/metrics"]).await;
    assert!(
        metrics.contains("apiserver_request_total"),
        "{}",
        &metrics[..metrics.len().min(500)]
    );
    // The nodes the agent registered, as the provider's kubelets would.
    let nodes = k
        .ok(&[
            "--context",
            "source",
            "get",
            "nodes",
            "-L",
            "topology.kubernetes.io/zone",
        ])
        .await;
    assert!(
        nodes.contains("ip-10-0-1-23.ec2.internal")
            && nodes.contains("us-east-1a")
            && nodes.contains("Ready"),
        "{nodes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_crds_through_kubectl_apply_columns_explain_and_refusals() {
    let k = Kubectl::new("kc-crds").await;
    k.install_crds().await;
    let name = "kc-ovh-bhs5";
    let f = k.file("sovc.yaml", &sovc(name));
    assert!(
        k.ok(&["apply", "-f", &f])
            .await
            .contains(&format!("sovereigncluster.sovereign.dev/{name} created"))
    );
    assert!(k.ok(&["apply", "-f", &f]).await.contains("unchanged"));
    let f2 = k.file(
        "sovc2.yaml",
        &sovc(name).replace("jurisdiction: FR", "jurisdiction: CA"),
    );
    assert!(k.ok(&["apply", "-f", &f2]).await.contains("configured"));
    let out = k.ok(&["get", "sovc", name]).await;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "PROVIDER",
            "REGION",
            "LOCATION",
            "JURISDICTION",
            "REACHABLE",
            "AGE"
        ]
    );
    let out = k.ok(&["get", "sovc", name, "-o", "wide"]).await;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "PROVIDER",
            "REGION",
            "LOCATION",
            "JURISDICTION",
            "REACHABLE",
            "VERSION",
            "NODES",
            "AGE"
        ]
    );
    let out = k.ok(&["explain", "sovereignclusters.spec.location"]).await;
    assert!(
        out.contains("KIND:       SovereignCluster")
            && out.contains("country\t<string> -required-"),
        "{out}"
    );
    // A refused manifest: the CEL message as kubectl prints it.
    let bad = k.file(
        "sw.yaml",
        "apiVersion: sovereign.dev/v1alpha1\nkind: SovereignWorkload\nmetadata: {name: same}\nspec:\n  source: {cluster: a, namespace: s}\n  target: {cluster: a}\n",
    );
    let o = k.run(&["apply", "-f", &bad]).await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("source.cluster and target.cluster must name different SovereignClusters"),
        "{}",
        o.stderr
    );
    let o = k
        .run(&[
            "apply",
            "-f",
            &k.file(
                "unknown.yaml",
                &sovc(name).replace("provider: ovhcloud", "provider: ovhcloud\n  bogus: 1"),
            ),
        ])
        .await;
    assert!(
        !o.ok && o.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        o.stderr
    );
    k.ok(&["delete", "sovc", name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_on_the_agents_nodes_and_kubectl_waits_for_it() {
    let k = Kubectl::new("kc-deploy").await;
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=2",
    ])
    .await;
    k.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=120s",
    ])
    .await;
    k.ok(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=2",
        "deployment/web",
        "--timeout=120s",
    ])
    .await;
    let pods = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        pods.contains("Running") && pods.contains("qc-worker-"),
        "{pods}"
    );
    k.ok(&["scale", "deployment", "web", "--replicas=0"]).await;
    k.ok(&[
        "wait",
        "--for=delete",
        "pod",
        "-l",
        "app=web",
        "--timeout=120s",
    ])
    .await;
    k.ok(&["delete", "namespace", "kc-deploy", "--wait=false"])
        .await;
}
