//! `sovereign plan` from files: the JSON contract, figures computed by hand, `--fx`, the budget, and
//! exit codes.

use std::process::Command;

use serde_json::Value;

const F: &str = "tests/fixtures/plan";

fn plan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("plan")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run sovereign");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn registre(extra: &[&str]) -> (i32, Value) {
    let objects = format!("{F}/pvc-only.yaml");
    let src = format!("{F}/source-priced.yaml");
    let dst = format!("{F}/target-priced.yaml");
    let w = format!("{F}/workload-registre.yaml");
    let mut args = vec![
        "--objects",
        &objects,
        "--source-cluster",
        &src,
        "--target-cluster",
        &dst,
        "--workload",
        &w,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = plan(&args);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}{err}"));
    (code, v)
}

fn item<'v>(v: &'v Value, prefix: &str) -> &'v Value {
    v["cost"]["oneTime"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no item {prefix:?} in {}", v["cost"]["oneTime"]))
}

#[test]
fn figures_computed_by_hand() {
    let (code, v) = registre(&["--fx", "USD:CAD=1.25"]);
    // Egress: 100 GiB leave the source at 0.09 USD/GiB with no free allowance = 9.00 USD,
    // at 1.25 CAD per USD = 11.25 CAD.
    let egress = item(&v, "egress");
    assert_eq!(egress["quantity"], 100.0);
    assert_eq!(egress["unit"], "GiB");
    assert!(
        (egress["amount"].as_f64().expect("amount") - 11.25).abs() < 0.005,
        "{egress}"
    );
    for key in ["name", "quantity", "unit", "unitPrice", "amount", "source"] {
        assert!(egress.get(key).is_some(), "item lacks {key}");
    }
    // Monthly before: 100 GiB × 0.08 USD × 1.25 = 10.00 CAD; after: 100 GiB × 0.12 CAD = 12.00 CAD.
    assert!(
        (v["cost"]["monthlyBefore"].as_f64().expect("before") - 10.0).abs() < 0.005,
        "{}",
        v["cost"]
    );
    assert!(
        (v["cost"]["monthlyAfter"].as_f64().expect("after") - 12.0).abs() < 0.005,
        "{}",
        v["cost"]
    );
    assert_eq!(v["cost"]["currency"], "CAD");
    // The budget of 5 CAD is below the estimate: the plan would be stopped, with the numbers.
    assert_eq!(code, 1);
    let budget = v["cost"]["budget"]["message"]
        .as_str()
        .expect("budget message");
    assert!(
        budget.contains("exceeds the budget of 5.00 CAD"),
        "{budget}"
    );
    assert!(v["blocked"].as_array().is_some_and(|b| {
        b.iter()
            .any(|x| x.as_str().is_some_and(|s| s.contains("exceeds")))
    }));
    // The plan itself.
    assert_eq!(v["hash"].as_str().map(str::len), Some(64));
    assert_eq!(v["objects"][0]["kind"], "PersistentVolumeClaim");
    assert_eq!(v["volumes"][0]["targetStorageClass"], "csi-rbd");
    assert!(
        v["transforms"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "map-storage-class"))
    );
    assert!(
        v["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("requested capacity stands in"))
    );
}

#[test]
fn the_exchange_rate_is_what_fx_says() {
    let (_, a) = registre(&["--fx", "USD:CAD=1.25"]);
    let (_, b) = registre(&["--fx", "USD:CAD=1.50"]);
    let (ea, eb) = (
        item(&a, "egress")["amount"].as_f64().expect("a"),
        item(&b, "egress")["amount"].as_f64().expect("b"),
    );
    // 9.00 USD at 1.25 and at 1.50.
    assert!(
        (ea - 11.25).abs() < 0.005 && (eb - 13.50).abs() < 0.005,
        "{ea} {eb}"
    );
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let (code, _, err) = plan(&[
        "--objects",
        "nope.yaml",
        "--source-cluster",
        "x",
        "--target-cluster",
        "y",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read nope.yaml"), "{err}");
    let objects = format!("{F}/pvc-only.yaml");
    let src = format!("{F}/source-priced.yaml");
    let (code, _, err) = plan(&[
        "--objects",
        &objects,
        "--source-cluster",
        &src,
        "--target-cluster",
        &src,
        "--fx",
        "USD-CAD",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("USD-CAD"), "{err}");
    let (code, _, err) = plan(&[
        "--objects",
        &src,
        "--source-cluster",
        &objects,
        "--target-cluster",
        &src,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not a SovereignCluster"), "{err}");
}

#[test]
fn a_realistic_namespace_with_the_examples() {
    let (code, out, err) = plan(&[
        "--objects",
        &format!("{F}/sante.yaml"),
        "--source-cluster",
        "examples/01-sovereigncluster-aws.yaml",
        "--target-cluster",
        "examples/02-sovereigncluster-ovh.yaml",
        "--workload",
        "examples/04-sovereignworkload-dossier-sante.yaml",
        "--policy",
        "examples/03-residencypolicy-quebec-strict.yaml",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    // postgres:16.4 comes from Docker Hub (a US company): residency blocks under quebec-strict.
    assert_eq!(v["residency"]["verdict"], "NonCompliant");
    assert_eq!(code, 1);
    assert!(
        v["residency"]["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["evidence"] == "postgres:16.4"))
    );
    // The allow-listed Québec registry is not a finding.
    assert!(
        !v["residency"]["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["evidence"]
                .as_str()
                .is_some_and(|e| e.starts_with("registry.sante.gouv.qc.ca"))))
    );
    assert_eq!(v["objects"].as_array().map(Vec::len), Some(17));
}
