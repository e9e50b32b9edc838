//! The REAL kubectl (the one on the PATH) against the sandbox. Each test has its own simulated
//! cluster, kubeconfig and discovery cache directory.
#![cfg(feature = "sandbox")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use sovereign::sandbox::{SimCluster, write_kubeconfig};
use tokio::io::{AsyncBufReadExt, BufReader};

struct Env {
    cluster: SimCluster,
    dir: tempfile::TempDir,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn new() -> Env {
        assert!(
            std::process::Command::new("kubectl")
                .arg("version")
                .arg("--client")
                .output()
                .is_ok_and(|o| o.status.success()),
            "kubectl is not on the PATH: these tests drive the real kubectl"
        );
        let cluster = SimCluster::start("sim").await.expect("start cluster");
        let dir = tempfile::tempdir().expect("tempdir");
        write_kubeconfig(&dir.path().join("kubeconfig"), &[("sim", &cluster)], "sim")
            .expect("kubeconfig");
        Env { cluster, dir }
    }

    fn base(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"));
        cmd.env("HOME", self.dir.path());
        cmd
    }

    async fn run(&self, args: &[&str]) -> Out {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            self.base().args(args).stdin(Stdio::null()).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
        .expect("run kubectl");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    fn file(&self, name: &str, content: &str) -> String {
        let p: PathBuf = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write manifest");
        p.display().to_string()
    }

    async fn install_crds(&self) {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        let out = self.ok(&["apply", "-f", crds]).await;
        assert!(out.contains("customresourcedefinition.apiextensions.k8s.io/sovereignworkloads.sovereign.dev created"), "{out}");
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "crd/sovereignworkloads.sovereign.dev",
            "crd/sovereignclusters.sovereign.dev",
            "--timeout=20s",
        ])
        .await;
    }
}

const SOVC: &str = r#"apiVersion: sovereign.dev/v1alpha1
kind: SovereignCluster
metadata:
  name: ovh-bhs5
spec:
  inCluster: true
  provider: ovhcloud
  region: ca-east-bhs
  location: {country: CA, province: QC, city: Beauharnois}
  jurisdiction: FR
"#;

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

#[tokio::test]
async fn version_and_api_resources() {
    let env = Env::new().await;
    let out = env.ok(&["version"]).await;
    assert!(out.contains("Server Version: v1.32.0"), "{out}");
    let out = env.ok(&["api-resources"]).await;
    for line in [
        "deployments ",
        "customresourcedefinitions",
        "volumesnapshots",
        "storageclasses",
    ] {
        assert!(out.contains(line), "api-resources misses {line}: {out}");
    }
    let out = env.ok(&["get", "ns"]).await;
    assert_eq!(header(&out), ["NAME", "STATUS", "AGE"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["kube-system", "Active"])),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn apply_crds_then_custom_resources_client_and_server_side() {
    let env = Env::new().await;
    env.install_crds().await;
    let f = env.file("sovc.yaml", SOVC);
    assert!(
        env.ok(&["apply", "-f", &f])
            .await
            .contains("sovereigncluster.sovereign.dev/ovh-bhs5 created")
    );
    assert!(
        env.ok(&["apply", "-f", &f])
            .await
            .contains("sovereigncluster.sovereign.dev/ovh-bhs5 unchanged")
    );
    let f2 = env.file(
        "sovc2.yaml",
        &SOVC.replace("jurisdiction: FR", "jurisdiction: CA"),
    );
    assert!(
        env.ok(&["apply", "-f", &f2])
            .await
            .contains("sovereigncluster.sovereign.dev/ovh-bhs5 configured")
    );
    // Server-side apply of another, with a conflict on a field another manager set.
    let ssa = env.file("ssa.yaml", &SOVC.replace("ovh-bhs5", "aws-east"));
    assert!(
        env.ok(&["apply", "--server-side", "-f", &ssa])
            .await
            .contains("serverside-applied")
    );
    env.ok(&[
        "patch",
        "sovc",
        "aws-east",
        "--type=merge",
        "-p",
        r#"{"spec":{"region":"us-east-1"}}"#,
    ])
    .await;
    let conflict = env.run(&["apply", "--server-side", "-f", &ssa]).await;
    assert!(
        !conflict.ok && conflict.stderr.contains("conflict with \"kubectl-patch\""),
        "{}",
        conflict.stderr
    );
    assert!(
        env.ok(&["apply", "--server-side", "--force-conflicts", "-f", &ssa])
            .await
            .contains("serverside-applied")
    );
    // Table with the CRD's printer columns; -o wide adds the priority-1 ones.
    let out = env.ok(&["get", "sovc"]).await;
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
    let out = env.ok(&["get", "sovc", "-o", "wide"]).await;
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
    let yaml = env.ok(&["get", "sovc", "ovh-bhs5", "-o", "yaml"]).await;
    assert!(
        yaml.contains("jurisdiction: CA")
            && yaml.contains("resourceVersion: \"")
            && yaml.contains("uid: "),
        "{yaml}"
    );
    // A refused manifest: CEL message as kubectl prints it.
    let bad = env.file(
        "sw.yaml",
        "apiVersion: sovereign.dev/v1alpha1\nkind: SovereignWorkload\nmetadata: {name: same, namespace: default}\nspec:\n  source: {cluster: a, namespace: s}\n  target: {cluster: a}\n",
    );
    let o = env.run(&["apply", "-f", &bad]).await;
    assert!(!o.ok);
    assert!(o.stderr.contains("spec.target.cluster: Invalid value: \"object\": source.cluster and target.cluster must name different SovereignClusters"), "{}", o.stderr);
    let o = env
        .run(&[
            "apply",
            "-f",
            &env.file(
                "unknown.yaml",
                &SOVC.replace("provider: ovhcloud", "provider: ovhcloud\n  bogus: 1"),
            ),
        ])
        .await;
    assert!(
        !o.ok && o.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        o.stderr
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn explain_a_crd_field() {
    let env = Env::new().await;
    env.install_crds().await;
    let out = env
        .ok(&["explain", "sovereignclusters.spec.location"])
        .await;
    assert!(
        out.contains("KIND:       SovereignCluster")
            && out.contains("country\t<string> -required-"),
        "{out}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn create_describe_wait_scale_patch_delete() {
    let env = Env::new().await;
    let deploy = env.file(
        "deploy.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.27", env: [{name: A, value: "1"}]}
      - {name: sidecar, image: busybox}
"#,
    );
    assert!(
        env.ok(&["create", "-f", &deploy])
            .await
            .contains("deployment.apps/web created")
    );
    let dup = env.run(&["create", "-f", &deploy]).await;
    assert!(
        dup.stderr.contains("Error from server (AlreadyExists)")
            && dup
                .stderr
                .contains("deployments.apps \"web\" already exists"),
        "{}",
        dup.stderr
    );
    let out = env.ok(&["get", "deploy", "-o", "wide"]).await;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        out.contains("0/2") && out.contains("web,sidecar") && out.contains("app=web"),
        "{out}"
    );
    // scale
    assert!(
        env.ok(&["scale", "deployment", "web", "--replicas=4"])
            .await
            .contains("deployment.apps/web scaled")
    );
    assert_eq!(
        env.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "4"
    );
    // patches: strategic (default) keeps the sidecar, merge, json
    env.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#,
    ])
    .await;
    let images = env
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(images, "nginx:1.28 busybox");
    env.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"front"}}}"#,
    ])
    .await;
    env.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ])
    .await;
    assert_eq!(
        env.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas}/{.metadata.labels.tier}"
        ])
        .await,
        "1/front"
    );
    // set image (strategic patch built from kubectl's compiled-in types)
    env.ok(&["set", "image", "deployment/web", "web=nginx:1.29"])
        .await;
    assert_eq!(
        env.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ])
        .await,
        "nginx:1.29"
    );
    // wait on a condition and a jsonpath: the cluster had no node, so nothing ran; once nodes
    // join, the scheduler places the pods, the kubelet runs them and the Deployment controller
    // reports the Deployment Available.
    sovereign::sandbox::seed::qc_sovereign(env.cluster.api()).unwrap();
    env.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=20s",
    ])
    .await;
    env.ok(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=1",
        "deployment/web",
        "--timeout=20s",
    ])
    .await;
    // describe
    let out = env.ok(&["describe", "deployment", "web"]).await;
    assert!(
        out.contains("Name:") && out.contains("web") && out.contains("nginx:1.29"),
        "{out}"
    );
    // delete honours finalizers; --wait returns once the finalizer is removed
    let cm = env.file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\ndata: {a: b}\n");
    env.ok(&["create", "-f", &cm]).await;
    let mut child = env
        .base()
        .args(["delete", "configmap", "held", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cms = env.cluster.api().resource("", "configmaps").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let o = env.cluster.api().get(&cms, "default", "held").unwrap();
        if o.pointer("/metadata/deletionTimestamp").is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delete never marked the object"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "kubectl delete --wait returned while the finalizer was still there"
    );
    env.ok(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("configmap \"held\" deleted"),
        "{out:?}"
    );
    assert!(
        env.run(&["get", "cm", "held"])
            .await
            .stderr
            .contains("configmaps \"held\" not found")
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn get_watch_streams_changes() {
    let env = Env::new().await;
    env.ok(&[
        "create",
        "-f",
        &env.file(
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: y}\n",
        ),
    ])
    .await;
    let mut child = env
        .base()
        .args(["get", "cm", "-w", "--request-timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut created_b = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        seen.push(line.clone());
        if line.starts_with("a ") && !created_b {
            created_b = true;
            let cms = env.cluster.api().resource("", "configmaps").unwrap();
            env.cluster
                .api()
                .create(
                    &cms,
                    "default",
                    json!({"metadata": {"name": "b"}, "data": {"1": "2", "3": "4"}}),
                    &Default::default(),
                )
                .unwrap();
        }
        if line.starts_with("b ") {
            break;
        }
    }
    child.kill().await.ok();
    assert!(
        seen.first()
            .is_some_and(|h| h.starts_with("NAME") && h.contains("DATA")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("b ") && l.contains(" 2 ")),
        "{seen:?}"
    );
    env.cluster.shutdown().await;
}

#[tokio::test]
async fn auth_can_i_and_generators_send_protobuf() {
    let env = Env::new().await;
    assert_eq!(
        env.ok(&["auth", "can-i", "create", "deployments"])
            .await
            .trim(),
        "yes"
    );
    assert!(
        env.ok(&["create", "configmap", "gen", "--from-literal=a=b"])
            .await
            .contains("configmap/gen created")
    );
    assert_eq!(
        env.ok(&["get", "cm", "gen", "-o", "jsonpath={.data.a}"])
            .await,
        "b"
    );
    assert!(
        env.ok(&[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=password=hunter2"
        ])
        .await
        .contains("secret/s created")
    );
    assert_eq!(
        env.ok(&["get", "secret", "s", "-o", "jsonpath={.data.password}"])
            .await,
        "aHVudGVyMg=="
    );
    assert!(
        env.ok(&[
            "create",
            "deployment",
            "d",
            "--image=nginx:1.27",
            "--replicas=2"
        ])
        .await
        .contains("deployment.apps/d created")
    );
    let d: Value =
        serde_json::from_str(&env.ok(&["get", "deploy", "d", "-o", "json"]).await).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "d");
    env.cluster.shutdown().await;
}
