//! `sovereign report` and `sovereign report verify`, the real binary against the real target
//! cluster holding a workload's history (statuses written through the status subresource, as the
//! operator writes them). Each test has its own namespaces (`<p>-migrations`, `<p>-system`) and
//! SovereignClusters.

use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use sovereign::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload, VolumeTransfer};
use sovereign::sandbox::controlplane::kubeconfig;

use super::support;

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
async fn seed(client: &Client, p: &str) {
    sovereign::sandbox::demo::install_crds(client)
        .await
        .expect("CRDs");
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [format!("{p}-migrations"), format!("{p}-system")] {
        create(&nss, json!({"metadata": {"name": ns}})).await;
    }
    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    for (name, provider, country, province, jurisdiction, sovereignty) in [
        (
            format!("{p}-aws-us-east-1"),
            "aws",
            "US",
            "VA",
            "US",
            "ForeignControlled",
        ),
        (
            format!("{p}-qc-cloud"),
            "micrologic",
            "CA",
            "QC",
            "CA",
            "Sovereign",
        ),
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
            &name,
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
            "metadata": {"name": format!("{p}-quebec-strict")},
            "spec": {"enforcement": "Block", "allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"]}
        }),
    )
    .await;
    let workloads: Api<SovereignWorkload> =
        Api::namespaced(client.clone(), &format!("{p}-migrations"));
    let w = create(
        &workloads,
        json!({
            "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
            "metadata": {"name": "dossier", "namespace": format!("{p}-migrations")},
            "spec": {
                "source": {"cluster": format!("{p}-aws-us-east-1"), "namespace": "sante"},
                "target": {"cluster": format!("{p}-qc-cloud"), "namespace": "sante"},
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
            "residency": {"verdict": "Compliant", "location": "CA-QC", "jurisdiction": "CA", "policy": format!("{p}-quebec-strict"),
                          "checkedAt": "2026-03-02T10:05:00Z"},
            "cost": {"currency": "CAD", "estimated": {"oneTime": 10.0, "monthlyBefore": 800.0, "monthlyAfter": 600.0},
                     "actual": {"oneTime": 2.5, "wireBytes": 3000, "parallelSeconds": 600}},
            "startedAt": "2026-03-01T08:00:00Z", "cutoverAt": "2026-03-02T09:50:00Z", "completedAt": "2026-03-02T10:00:00Z"
        }),
    )
    .await;
    let transfers: Api<VolumeTransfer> =
        Api::namespaced(client.clone(), &format!("{p}-migrations"));
    for (pvc, hash) in [("data", HASH_DATA), ("uploads", HASH_UPLOADS)] {
        let name = format!("dossier-{pvc}");
        create(
            &transfers,
            json!({
                "apiVersion": "sovereign.dev/v1alpha1", "kind": "VolumeTransfer",
                "metadata": {"name": name, "namespace": format!("{p}-migrations"),
                             "labels": {"sovereign.dev/workload": "dossier"},
                             "ownerReferences": [{"apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
                                                  "name": "dossier", "uid": w.uid().expect("uid"), "controller": true}]},
                "spec": {"workload": "dossier",
                         "source": {"cluster": format!("{p}-aws-us-east-1"), "namespace": "sante", "pvc": pvc},
                         "target": {"cluster": format!("{p}-qc-cloud"), "namespace": "sante", "pvc": pvc}}
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

async fn report(p: &str, kubeconfig: &Path, out: &Path, extra: &[&str]) -> Run {
    let ns = format!("{p}-migrations");
    let key = format!("{p}-system/{KEY_SECRET}");
    let mut args = vec![
        "report",
        "--kubeconfig",
        kubeconfig.to_str().expect("utf8 path"),
        "-n",
        &ns,
        "dossier",
        "--out",
        out.to_str().expect("utf8 path"),
    ];
    if !extra.contains(&"--signing-key-secret") {
        args.extend(["--signing-key-secret", key.as_str()]);
    }
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

async fn published_key(client: &Client, p: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &format!("{p}-system"));
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
    let p = "rep-ok";
    let sh = support::shared();
    let (_, client) = support::clients().await;
    seed(&client, p).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig::render(&[sh.target_entry("qc")], "qc"),
    )
    .expect("kubeconfig");
    let out = tmp.path().join("reports");

    let r = report(p, &kubeconfig, &out, &[]).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "created signing key Secret {p}-system/sovereign-report-signing-key"
        )),
        "{}",
        r.stderr
    );
    for ext in ["json", "md", "sig"] {
        let f = out.join(format!("dossier.{ext}"));
        assert!(f.is_file(), "{} written", f.display());
        assert!(
            r.stdout.contains(&format!("wrote {}", f.display())),
            "{}",
            r.stdout
        );
    }
    assert!(
        r.stdout.contains(&format!(
            "ATTESTED: {p}-migrations/dossier was moved from {p}-aws-us-east-1"
        )),
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
        format!("{p}-system/sovereign-report-signing-key")
    );
    let public_key = published_key(&client, p).await;
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
    let r = report(p, &kubeconfig, &again, &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("created signing key"), "{}", r.stderr);
    assert_eq!(published_key(&client, p).await, public_key);
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
        p,
        &kubeconfig,
        &tmp.path().join("unused"),
        &["--stdout", "json"],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed: Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    assert_eq!(printed["workload"]["name"], "dossier");
    assert!(!tmp.path().join("unused").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problems_are_reported_with_exit_1_and_bad_input_with_exit_2() {
    let p = "rep-bad";
    let sh = support::shared();
    let (_, client) = support::clients().await;
    seed(&client, p).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig::render(&[sh.target_entry("qc")], "qc"),
    )
    .expect("kubeconfig");
    let out = tmp.path().join("reports");

    // The target's copy of one volume does not hash like the source's.
    let transfers: Api<VolumeTransfer> =
        Api::namespaced(client.clone(), &format!("{p}-migrations"));
    set_status(
        &transfers,
        "dossier-uploads",
        json!({"targetRootHash": HASH_DATA}),
    )
    .await;
    let r = report(p, &kubeconfig, &out, &[]).await;
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
    let public_key = published_key(&client, p).await;
    assert_eq!(verify(&out, &public_key).await.code, 0);

    // Back in Replicating: not an attestation of a finished move.
    let workloads: Api<SovereignWorkload> =
        Api::namespaced(client.clone(), &format!("{p}-migrations"));
    set_status(
        &workloads,
        "dossier",
        json!({"phase": "Replicating", "completedAt": null}),
    )
    .await;
    let r = report(p, &kubeconfig, &out, &["--stdout", "md"]).await;
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
        &format!("{p}-migrations"),
        "dossiers",
        "--out",
        tmp.path().join("none").to_str().expect("utf8"),
    ])
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "SovereignWorkload {p}-migrations/dossiers not found"
        )) && r.stderr.contains("has: dossier"),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("none").exists());

    // A key Secret in a namespace that does not exist cannot be created.
    let r = report(
        p,
        &kubeconfig,
        &out,
        &["--signing-key-secret", "nowhere/key"],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("namespace nowhere does not exist"),
        "{}",
        r.stderr
    );

    // A Secret that is not a signing key is refused, never overwritten.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &format!("{p}-system"));
    create(
        &secrets,
        json!({"metadata": {"name": "other", "namespace": format!("{p}-system")}, "stringData": {"token": "x"}}),
    )
    .await;
    let other = format!("{p}-system/other");
    let r = report(p, &kubeconfig, &out, &["--signing-key-secret", &other]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no key \"ed25519.pk8\""), "{}", r.stderr);

    // An API server that is gone: nothing listens at the address the kubeconfig names.
    let gone = format!("https://127.{}.0.1:1", sh.target.loopback_octet());
    std::fs::write(
        &kubeconfig,
        kubeconfig::render(&[sh.target_entry("qc").via(&gone)], "qc"),
    )
    .expect("kubeconfig");
    let r = report(p, &kubeconfig, &out, &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("cannot reach the API server at {gone}")),
        "{}",
        r.stderr
    );
}
