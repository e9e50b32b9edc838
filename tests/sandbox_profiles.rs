//! The sandbox's provider profiles look as the real clusters do: the product's own residency scan
//! (the real binary, against the live simulated cluster) classifies each one as the catalog says.

use serde_json::Value;
use sovereign::sandbox::{SimCluster, seed, write_kubeconfig};

async fn scan(profile: &str) -> (i32, Value) {
    let c = SimCluster::start(profile).await.expect("cluster");
    match profile {
        "eks" => seed::eks_us_east_1(c.api()),
        "aks" => seed::aks_eastus(c.api()),
        "gke" => seed::gke_us_central1(c.api()),
        "ovh" => seed::ovh_bhs5(c.api()),
        _ => seed::qc_sovereign(c.api()),
    }
    .expect("seed");
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    write_kubeconfig(&kc, &[(profile, &c)], profile).expect("kubeconfig");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sovereign"))
        .args(["residency", "scan", "--kubeconfig"])
        .arg(&kc)
        .args(["-o", "json"])
        .output()
        .await
        .expect("run");
    c.shutdown().await;
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{profile}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_profile_is_classified_as_the_real_one_would_be() {
    for (profile, code, verdict, location, jurisdiction) in [
        ("eks", 1, "NonCompliant", "US-VA", "US"),
        ("aks", 1, "NonCompliant", "US-VA", "US"),
        ("gke", 1, "NonCompliant", "US-IA", "US"),
        // Beauharnois, Québec, but OVHcloud's parent is French: located in CA-QC, not Canadian law.
        ("ovh", 1, "NonCompliant", "CA-QC", "FR"),
        // No provider signal at all, and nothing declared: never called compliant.
        ("qc", 2, "Unknown", "", ""),
    ] {
        let (got, json) = scan(profile).await;
        assert_eq!(got, code, "{profile}: {json}");
        assert_eq!(json["verdict"], verdict, "{profile}: {json}");
        if !location.is_empty() {
            assert_eq!(json["location"], location, "{profile}: {json}");
            assert_eq!(json["jurisdiction"], jurisdiction, "{profile}: {json}");
        }
    }
}
