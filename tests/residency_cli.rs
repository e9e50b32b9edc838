//! `sovereign residency scan` from files: output shapes and exit codes (0 compliant, 1 non-compliant,
//! 2 unknown or bad input).

use std::process::Command;

fn scan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("residency")
        .arg("scan")
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

const F: &str = "tests/fixtures/residency";

#[test]
fn json_output_and_exit_codes() {
    let (code, out, _) = scan(&["-f", &format!("{F}/eks-us-east-1.yaml"), "-o", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["verdict"], "NonCompliant");
    assert_eq!(v["location"], "US-VA");
    assert_eq!(v["jurisdiction"], "US");
    let f = &v["findings"][0];
    for key in [
        "object",
        "field",
        "evidence",
        "rule",
        "severity",
        "remediation",
    ] {
        assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
    }

    let (code, out, _) = scan(&["-f", &format!("{F}/self-managed.yaml"), "-o", "json"]);
    assert_eq!(code, 2, "Unknown exits 2");
    assert!(out.contains("\"Unknown\""));

    let (code, out, _) = scan(&[
        "-f",
        &format!("{F}/self-managed.yaml"),
        "--declared",
        &format!("{F}/micrologic-declared.yaml"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("VERDICT       Compliant") && out.contains("(declared)"),
        "{out}"
    );
}

#[test]
fn a_policy_file_changes_the_verdict() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("lenient.yaml");
    std::fs::write(
        &policy,
        "apiVersion: sovereign.dev/v1alpha1\nkind: ResidencyPolicy\nmetadata: {name: lenient}\nspec:\n  allowedLocations: [CA-QC]\n  allowedJurisdictions: [CA]\n  allowForeignControlledProviders: true\n",
    )
    .expect("policy");
    let (code, out, err) = scan(&[
        "-f",
        &format!("{F}/eks-ca-central-1.yaml"),
        "--policy",
        policy.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let (code, _, err) = scan(&["-f", "does/not/exist.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read does/not/exist.yaml"), "{err}");
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: Node\nmetadata: {name: n}\nspec: {providerID: 3}\n",
    )
    .expect("write");
    let (code, _, err) = scan(&["-f", bad.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(err.contains("Node/n"), "{err}");
    let (code, _, err) = scan(&[
        "-f",
        &format!("{F}/eks-us-east-1.yaml"),
        "--policy",
        "no-such-policy.yaml",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-policy.yaml"), "{err}");
}
