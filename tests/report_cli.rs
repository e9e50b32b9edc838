//! `sovereign report` and `sovereign report verify`, the real binary against a simulated operator
//! cluster holding a workload's history (statuses written through the status subresource, as the
//! operator writes them).

#![cfg(feature = "sandbox")]

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sovereign::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload, VolumeTransfer};
use sovereign::sandbox::{SimCluster, write_kubeconfig};

const HASH_DATA: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const HASH_UPLOADS: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const PLAN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY_SECRET: &str = "sovereign-report-signing-key";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a well-formed object")
}

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), &obj(v))
        .await
        .expect("create")
}

async fn set_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("patch status");
}

/// The history of a finished, compliant move of `migrations/dossier` with two verified volumes.
async fn seed(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in sovereign::api::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("create CRD");
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in ["migrations", "sovereign-system"] {
        create(&nss, json!({"metadata": {"name": ns}})).await;
    }
    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    for (name, provider, country, province, jurisdiction, sovereignty) in [
        (
            "aws-us-east-1",
            "aws",
            "US",
            "VA",
            "US",
            "ForeignControlled",
        ),
        ("qc-cloud", "micrologic", "CA", "QC", "CA", "Sovereign"),
    ] {
        create(
            &clusters,
            json!({
                "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
                "metadata": {"name": name},
                "spec": {"inCluster": true, "provider": provider, "region": "r1",
                         "location": {"country": country, "province": province}, "jurisdiction": jurisdiction}
            }),
        )
        .await;
        set_status(
            &clusters,
            name,
            json!({"reachable": true, "provider": provider, "region": "r1",
                   "location": format!("{country}-{province}"), "jurisdiction": jurisdiction,
                   "sovereignty": sovereignty, "lastProbeTime": "2026-03-02T10:04:00Z",
                   "nodes": {"count": 2, "regions": ["r1"], "zones": ["r1a"]}}),
        )
        .await;
    }
    let policies: Api<ResidencyPolicy> = Api::all(client.clone());
    create(
        &policies,
        json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy",
            "metadata": {"name": "quebec-strict"},
            "spec": {"enforcement": "Block", "allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"]}
        }),
    )
    .await;
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), "migrations");
    let w = create(
        &workloads,
        json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
            "metadata": {"name": "dossier", "namespace": "migrations"},
            "spec": {
                "source": {"cluster": "aws-us-east-1", "namespace": "sante"},
                "target": {"cluster": "qc-cloud", "namespace": "sante"},
                "mode": "Move",
                "cutover": {"strategy": "Manual", "approvedPlanHash": PLAN, "retainSourceFor": "168h"},
                "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0412"},
                "cost": {"currency": "CAD"}
            }
        }),
    )
    .await;
    set_status(
        &workloads,
        "dossier",
        json!({
            "phase": "Completed", "observedGeneration": 1, "message": "moved",
            "plan": {"hash": PLAN, "objects": 12, "volumes": 2, "bytes": 2097152, "transforms": ["rewrite-images"],
                     "approvedHash": PLAN, "approvedBy": "alice", "approvedAt": "2026-03-01T09:00:00Z"},
            "volumes": [{"pvc": "data", "transfer": "dossier-data"}, {"pvc": "uploads", "transfer": "dossier-uploads"}],
            "residency": {"verdict": "Compliant", "location": "CA-QC", "jurisdiction": "CA", "policy": "quebec-strict",
                          "checkedAt": "2026-03-02T10:05:00Z"},
            "cost": {"currency": "CAD", "estimated": {"oneTime": 10.0, "monthlyBefore": 800.0, "monthlyAfter": 600.0},
                     "actual": {"oneTime": 2.5, "wireBytes": 3000, "parallelSeconds": 600}},
            "startedAt": "2026-03-01T08:00:00Z", "cutoverAt": "2026-03-02T09:50:00Z", "completedAt": "2026-03-02T10:00:00Z"
        }),
    )
    .await;
    let transfers: Api<VolumeTransfer> = Api::namespaced(client.clone(), "migrations");
    for (pvc, hash) in [("data", HASH_DATA), ("uploads", HASH_UPLOADS)] {
        let name = format!("dossier-{pvc}");
        create(
            &transfers,
            json!({
                "apiVersion": "sovereign.dev/v1alpha1", "kind": "VolumeTransfer",
                "metadata": {"name": name, "namespace": "migrations",
                             "labels": {"sovereign.dev/workload": "dossier"},
                             "ownerReferences": [{"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
                                                  "name": "dossier", "uid": w.uid().expect("uid"), "controller": true}]},
                "spec": {"workload": "dossier",
                         "source": {"cluster": "aws-us-east-1", "namespace": "sante", "pvc": pvc},
                         "target": {"cluster": "qc-cloud", "namespace": "sante", "pvc": pvc}}
            }),
        )
        .await;
        set_status(
            &transfers,
            &name,
            json!({"phase": "Completed", "pass": 2, "finalPass": true, "bytesDone": 1048576, "bytesTotal": 1048576,
                   "wireBytes": 1500, "passWireBytes": [1400, 100],
                   "sourceRootHash": hash, "targetRootHash": hash, "completedAt": "2026-03-02T09:55:00Z"}),
        )
        .await;
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn sovereign(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(args)
        .env("RUST_LOG", "error")
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("run sovereign");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn report(kubeconfig: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "report",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8 path"),
        "-n",
        "migrations",
        "dossier",
        "--out",
        out.to_str().expect("utf8 path"),
    ];
    args.extend_from_slice(extra);
    sovereign(&args).await
}

async fn verify(dir: &Path, public_key: &str) -> Run {
    sovereign(&[
        "report",
        "verify",
        "--json",
        dir.join("dossier.json").to_str().expect("utf8"),
        "--sig",
        dir.join("dossier.sig").to_str().expect("utf8"),
        "--public-key",
        public_key,
    ])
    .await
}

async fn published_key(client: &Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "sovereign-system");
    let s = secrets
        .get(KEY_SECRET)
        .await
        .expect("the key Secret exists");
    let data = s.data.expect("data");
    assert!(data.contains_key("ed25519.pk8"), "the private key is kept");
    String::from_utf8(data.get("ed25519.pub").expect("public key").0.clone()).expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_move_is_attested_signed_and_checkable() {
    let qc = SimCluster::start("qc").await.expect("cluster");
    let client = qc.client().await.expect("client");
    seed(&client).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &[("qc", &qc)], "qc").expect("kubeconfig");
    let out = tmp.path().join("reports");

    let r = report(&kubeconfig, &out, &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("created signing key Secret sovereign-system/sovereign-report-signing-key"),
        "{}",
        r.stderr
    );
    for ext in ["json", "md", "sig"] {
        let p = out.join(format!("dossier.{ext}"));
        assert!(p.is_file(), "{} written", p.display());
        assert!(
            r.stdout.contains(&format!("wrote {}", p.display())),
            "{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains("ATTESTED: migrations/dossier was moved from aws-us-east-1"),
        "{}",
        r.stdout
    );

    // The JSON is the attestation, read back from what the cluster holds.
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("dossier.json")).expect("read"))
            .expect("json");
    assert_eq!(json["kind"], "SovereignMigrationAttestation");
    assert_eq!(json["conclusion"]["attested"], true);
    assert_eq!(json["workload"]["uid"].as_str().map(str::len), Some(36));
    assert_eq!(json["target"]["observed"]["location"], "CA-QC");
    assert_eq!(json["source"]["sovereignty"], "ForeignControlled");
    assert_eq!(json["plan"]["approvedBy"], "alice");
    assert_eq!(json["volumes"][1]["targetRootHash"], HASH_UPLOADS);
    assert_eq!(json["volumes"][1]["hashesMatch"], true);
    assert_eq!(json["cost"]["actual"]["wireBytes"], 3000);
    assert_eq!(
        json["signing"]["keySecret"],
        "sovereign-system/sovereign-report-signing-key"
    );
    let public_key = published_key(&client).await;
    assert_eq!(json["signing"]["publicKey"], public_key.as_str());
    let md = std::fs::read_to_string(out.join("dossier.md")).expect("md");
    assert!(md.contains("> **ATTESTED.**"), "{md}");
    assert!(
        md.contains(&public_key),
        "the Markdown carries the public key"
    );
    let sig = std::fs::read_to_string(out.join("dossier.sig")).expect("sig");
    assert!(
        md.contains(sig.trim()),
        "the Markdown carries the signature"
    );

    // Verified with the key taken from the cluster, inline or from a file.
    let v = verify(&out, &public_key).await;
    assert_eq!(v.code, 0, "{}\n{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("signature valid"), "{}", v.stdout);
    let key_file = tmp.path().join("report.pub");
    std::fs::write(&key_file, format!("{public_key}\n")).expect("write key");
    let v = verify(&out, &format!("@{}", key_file.display())).await;
    assert_eq!(v.code, 0, "{}", v.stderr);

    // A second report reuses the key: every report of this cluster checks against one key.
    let again = tmp.path().join("again");
    let r = report(&kubeconfig, &again, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("created signing key"), "{}", r.stderr);
    assert_eq!(published_key(&client).await, public_key);
    assert_eq!(verify(&again, &public_key).await.code, 0);

    // One byte changed in the filed JSON: the verdict flips, and verify says so.
    let path = out.join("dossier.json");
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(7)
        .position(|w| w == b"\"CA-QC\"")
        .expect("a location in the file");
    bytes[at + 1] = b'U';
    std::fs::write(&path, &bytes).expect("tamper");
    let v = verify(&out, &public_key).await;
    assert_eq!(v.code, 1, "{}\n{}", v.stdout, v.stderr);
    assert!(v.stderr.contains("signature INVALID"), "{}", v.stderr);

    // Another key does not verify the untouched copy; a malformed key is bad input.
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(verify(&again, other).await.code, 1);
    let v = verify(&again, "not-a-key").await;
    assert_eq!(v.code, 2, "{}", v.stderr);
    assert!(v.stderr.contains("--public-key"), "{}", v.stderr);

    // --stdout prints the signed document instead of writing it.
    let r = report(
        &kubeconfig,
        &tmp.path().join("unused"),
        &["--stdout", "json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed: Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    assert_eq!(printed["workload"]["name"], "dossier");
    assert!(!tmp.path().join("unused").exists());

    qc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_are_reported_with_exit_1_and_bad_input_with_exit_2() {
    let qc = SimCluster::start("qc").await.expect("cluster");
    let client = qc.client().await.expect("client");
    seed(&client).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &[("qc", &qc)], "qc").expect("kubeconfig");
    let out = tmp.path().join("reports");

    // The target's copy of one volume does not hash like the source's.
    let transfers: Api<VolumeTransfer> = Api::namespaced(client.clone(), "migrations");
    set_status(
        &transfers,
        "dossier-uploads",
        json!({"targetRootHash": HASH_DATA}),
    )
    .await;
    let r = report(&kubeconfig, &out, &[]).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("NOT ATTESTED: PROBLEMS FOUND"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("volume uploads"), "{}", r.stdout);
    let md = std::fs::read_to_string(out.join("dossier.md")).expect("the report is still written");
    assert!(md.contains("**MISMATCH: hashes differ**"), "{md}");
    // Still signed: a signed report of a problem is evidence too.
    let public_key = published_key(&client).await;
    assert_eq!(verify(&out, &public_key).await.code, 0);

    // Back in Replicating: not an attestation of a finished move.
    let workloads: Api<SovereignWorkload> = Api::namespaced(client.clone(), "migrations");
    set_status(
        &workloads,
        "dossier",
        json!({"phase": "Replicating", "completedAt": null}),
    )
    .await;
    let r = report(&kubeconfig, &out, &["--stdout", "md"]).await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("> **NOT COMPLETED — this is not an attestation of a finished move"),
        "{}",
        r.stdout
    );

    // A workload that does not exist: nothing written, the reason named.
    let r = sovereign(&[
        "report",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8"),
        "-n",
        "migrations",
        "dossiers",
        "--out",
        tmp.path().join("none").to_str().expect("utf8"),
    ])
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("SovereignWorkload migrations/dossiers not found")
            && r.stderr.contains("has: dossier"),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("none").exists());

    // A key Secret in a namespace that does not exist cannot be created.
    let r = report(&kubeconfig, &out, &["--signing-key-secret", "nowhere/key"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("namespace nowhere does not exist"),
        "{}",
        r.stderr
    );

    // A Secret that is not a signing key is refused, never overwritten.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "sovereign-system");
    create(
        &secrets,
        json!({"metadata": {"name": "other", "namespace": "sovereign-system"}, "stringData": {"token": "x"}}),
    )
    .await;
    let r = report(
        &kubeconfig,
        &out,
        &["--signing-key-secret", "sovereign-system/other"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no key \"ed25519.pk8\""), "{}", r.stderr);

    // An API server that is gone.
    qc.shutdown().await;
    let r = report(&kubeconfig, &out, &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot reach the API server at http://127.0.0.1:"),
        "{}",
        r.stderr
    );
}
