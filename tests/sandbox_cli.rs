//! `sovereign sandbox --exit-when-done`: the whole story on one machine, as a person runs it.

#![cfg(feature = "sandbox")]

use std::process::Command;

fn sandbox(extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tmp");
    sandbox_in(dir.path(), extra)
}

fn sandbox_in(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["sandbox", "--exit-when-done", "--dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "error")
        .output()
        .expect("run sovereign sandbox");
    assert!(
        dir.join("kubeconfig").is_file(),
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

/// The operator's identity in both clusters (the chart's ServiceAccount in the target, the
/// source-access chart's in the source).
const OPERATOR: &str = "system:serviceaccount:sovereign-system:sovereign-operator";

/// Per user, how many requests the cluster's audit log recorded and which were refused (403), as
/// `verb resource[/subresource] namespace`.
fn audited(
    cluster_dir: &std::path::Path,
) -> std::collections::BTreeMap<String, (usize, Vec<String>)> {
    let mut by_user = std::collections::BTreeMap::new();
    let logs = std::fs::read_dir(cluster_dir).expect("cluster dir");
    let mut files: Vec<_> = logs
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no audit log in {}",
        cluster_dir.display()
    );
    for f in files {
        for line in std::fs::read_to_string(&f).expect("audit log").lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("an audit event");
            if e["stage"] != "ResponseComplete" {
                continue;
            }
            let user = e["user"]["username"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let entry = by_user.entry(user).or_insert((0, Vec::new()));
            entry.0 += 1;
            if e["responseStatus"]["code"] == 403 {
                let o = &e["objectRef"];
                let sub = o["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                entry.1.push(format!(
                    "{} {}{sub} {}",
                    e["verb"].as_str().unwrap_or_default(),
                    o["resource"].as_str().unwrap_or_default(),
                    o["namespace"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    by_user
}

#[test]
fn the_sandbox_migration_completes_and_shows_what_moved_and_a_second_start_resumes_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out, err) = sandbox_in(dir.path(), &["--data-size", "4MiB"]);
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
    // Installed as a platform team installs it, and it ran with exactly the charts' rights: every
    // request of its identity in both clusters' audit logs, none refused.
    assert!(
        out.contains("installed with Helm v4.3.2")
            && out.contains("sovereign-source-access in the source"),
        "{out}"
    );
    for cluster in ["source", "target"] {
        let users = audited(&dir.path().join(cluster));
        let (requests, refused) = users.get(OPERATOR).cloned().unwrap_or_default();
        assert!(
            requests > 50,
            "{cluster}: {requests} requests as {OPERATOR}"
        );
        assert!(
            refused.is_empty(),
            "{cluster}: refused to the operator: {refused:?}"
        );
    }
    assert!(
        out.contains("Both clusters are ready in") && out.contains("Kubernetes v1.37.2"),
        "{out}"
    );

    // Again on the same directory: both clusters resume with their state (etcd's data, the
    // volumes), the workload is found completed, nothing is seeded or moved again.
    let (code, again, err) = sandbox_in(dir.path(), &["--data-size", "4MiB"]);
    assert_eq!(code, 0, "stdout:\n{again}\nstderr:\n{err}");
    assert!(again.contains("(resumed from the directory)"), "{again}");
    assert!(
        again.contains("the workload exists from a previous run on this directory"),
        "{again}"
    );
    assert!(!again.contains("wrote "), "no data written again: {again}");
    assert!(again.contains("The migration completed in"), "{again}");
    for pvc in ["dossier-documents", "data-dossier-db-0", "wal-dossier-db-0"] {
        assert_eq!(
            root_hash_of(&again, pvc),
            root_hash_of(&out, pvc),
            "{pvc}: {again}"
        );
    }
}

/// The processes whose executable is under `dir` and which run in `cwd` or below it.
fn processes_under(dir: &std::path::Path, cwd: &std::path::Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(exe) = std::fs::read_link(e.path().join("exe"))
            && exe.starts_with(dir)
            && std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(cwd))
        {
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((pid, name));
        }
    }
    out
}

/// While the sandbox serves, each cluster runs etcd, kube-apiserver, kube-controller-manager and
/// kube-scheduler of the pinned build; Ctrl-C (SIGINT to the sandbox) stops every one of them.
#[test]
fn the_clusters_are_upstream_processes_and_ctrl_c_leaves_none_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let bins = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .arg("control-plane")
        .output()
        .expect("control-plane");
    let text = String::from_utf8_lossy(&bins.stdout).into_owned();
    let bin_dir = std::path::PathBuf::from(
        text.lines()
            .last()
            .and_then(|l| l.split(" (Kubernetes").next())
            .expect("the control plane's directory"),
    );
    assert!(bin_dir.join("kube-apiserver").is_file(), "{text}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["sandbox", "--no-migrate", "--dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the sandbox");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !dir.path().join("kubeconfig").is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox did not start"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the sandbox exited"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let running = processes_under(&bin_dir, dir.path());
    let mut names: Vec<&str> = running.iter().map(|(_, n)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "etcd",
            "etcd",
            "kube-apiserver",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-scheduler"
        ],
        "{running:?}"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let left: Vec<(u32, String)> = running
        .into_iter()
        .filter(|(p, _)| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
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
