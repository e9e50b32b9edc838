//! `sovereign sandbox --exit-when-done`: the whole story on one machine, as a person runs it.

#![cfg(feature = "sandbox")]

use std::process::Command;

fn sandbox(extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["sandbox", "--exit-when-done", "--dir"])
        .arg(dir.path())
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("run sovereign sandbox");
    assert!(
        dir.path().join("kubeconfig").is_file(),
        "the kubeconfig is written"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 64-hex-digit root hash printed after `root ` on the summary line of a volume.
fn root_hash_of(out: &str, pvc: &str) -> Option<String> {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("volume") && l.contains(pvc) && l.contains("root "))?;
    let hash = line.split("root ").nth(1)?.split_whitespace().next()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_string())
}

#[test]
fn the_sandbox_migration_completes_and_shows_what_moved() {
    let (code, out, err) = sandbox(&["--data-size", "4MiB"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // Not a terminal: plain lines, no bars drawn with escape sequences or carriage returns.
    assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
    // The phases as they happened, each on its own line.
    for phase in ["Replicating", "CuttingOver", "Completed"] {
        assert!(
            out.lines().any(|l| l.contains("s] ") && l.contains(phase)),
            "no {phase} line:\n{out}"
        );
    }
    assert!(out.contains("The migration completed in"), "{out}");
    assert!(out.contains("18 objects, 3 volumes"), "{out}");
    assert!(out.contains("18 of 18 applied in the target"), "{out}");
    assert!(
        out.contains("rewrite-images") && out.contains("drop-cloud-identity"),
        "{out}"
    );
    // Both volumes, each verified with the same root hash on both sides.
    for pvc in ["dossier-documents", "data-dossier-db-0", "wal-dossier-db-0"] {
        let hash =
            root_hash_of(&out, pvc).unwrap_or_else(|| panic!("no root hash for {pvc}:\n{out}"));
        assert!(
            out.lines()
                .any(|l| l.contains(pvc) && l.contains(&hash) && l.contains("(source = target)")),
            "{pvc}: {out}"
        );
        // The progress line of its last pass names the same hash, shortened.
        assert!(
            out.lines().any(|l| l.contains(&format!("volume {pvc}"))
                && l.contains(&format!("root {} verified", &hash[..12]))),
            "{pvc}: {out}"
        );
    }
    assert!(
        out.contains("residency  Compliant (location CA-QC, jurisdiction CA)"),
        "{out}"
    );
    // Once data moved, the cost shown is the actual one (the estimate stays in status).
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("cost") && l.contains("CAD one-time")),
        "{out}"
    );
    assert!(
        out.contains("kubectl --context source get deploy,sts,ds,cronjob -n sante")
            && out.contains("kubectl get sw,vt -A")
            && out.contains("kubectl describe sw -n migrations dossier-sante")
            && out.contains("kubectl get events -n migrations"),
        "{out}"
    );
    assert!(!out.contains("being built"), "{out}");
}

#[test]
fn a_french_parented_target_is_blocked_before_anything_moves() {
    let (code, out, err) = sandbox(&["--target-profile", "ovh-bhs5", "--data-size", "1MiB"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("residency  NonCompliant (location CA-QC, jurisdiction FR)"),
        "{out}"
    );
    // The reason, on the phase line and as the error the exit code stands for.
    assert!(
        out.lines()
            .any(|l| l.contains("Pending") && l.contains("ResidencyBlocked")),
        "{out}"
    );
    assert!(out.contains("The migration stopped after"), "{out}");
    assert!(
        err.contains("the migration did not complete")
            && err.contains("ResidencyBlocked")
            && err.contains("CA jurisdiction"),
        "{err}"
    );
    // Nothing moved: no volume was transferred, no object applied.
    assert!(!out.contains("root "), "{out}");
    assert!(!out.contains("applied in the target"), "{out}");
    assert!(!out.contains("The migration completed"), "{out}");
}
