//! The provider profiles look as the real clusters do: the product's own residency scan (the real
//! binary, with a kubeconfig, against a live cluster whose nodes the agent registered from the
//! profile) classifies each one as the catalog says.

use serde_json::Value;
use sovereign::sandbox::controlplane::kubeconfig::{self, Entry};
use sovereign::sandbox::{Cluster, ClusterOptions, profiles};

use super::support;

async fn scan(entry: Entry) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    let name = entry.name.clone();
    std::fs::write(&kc, kubeconfig::render(&[entry], &name)).expect("kubeconfig");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["residency", "scan", "--kubeconfig"])
        .arg(&kc)
        .args(["-o", "json"])
        .output()
        .await
        .expect("run");
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_profile_is_classified_as_the_real_one_would_be() {
    let sh = support::shared();
    for (profile, code, verdict, location, jurisdiction) in [
        ("eks-us-east-1", 1, "NonCompliant", "US-VA", "US"),
        ("aks-eastus", 1, "NonCompliant", "US-VA", "US"),
        ("gke-us-central1", 1, "NonCompliant", "US-IA", "US"),
        // Beauharnois, Québec, but OVHcloud's parent is French: located in CA-QC, not Canadian law.
        ("ovh-bhs5", 1, "NonCompliant", "CA-QC", "FR"),
        // No provider signal at all, and nothing declared: never called compliant.
        ("qc-sovereign", 2, "Unknown", "", ""),
    ] {
        // The shared clusters are of two of the profiles; the others get a cluster of their own.
        let (got, json) = match profile {
            "eks-us-east-1" => scan(sh.source_entry(profile)).await,
            "qc-sovereign" => scan(sh.target_entry(profile)).await,
            _ => {
                let p = profiles::by_id(profile, 1).expect("profile");
                let c = Cluster::start(
                    ClusterOptions::temporary(profile, p, &support::sovereign_bin()),
                    &sh.bins,
                )
                .await
                .unwrap_or_else(|e| panic!("{profile}: {e}"));
                let r = scan(c.kubeconfig_entry(profile)).await;
                c.shutdown().await;
                r
            }
        };
        assert_eq!(got, code, "{profile}: {json}");
        assert_eq!(json["verdict"], verdict, "{profile}: {json}");
        if !location.is_empty() {
            assert_eq!(json["location"], location, "{profile}: {json}");
            assert_eq!(json["jurisdiction"], jurisdiction, "{profile}: {json}");
        }
    }
}
