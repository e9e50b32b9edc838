//! `crds/` (and the chart's copy) must be exactly what the Rust types generate, and each CRD must carry
//! the printer columns and validation rules the API promises.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sovereign::cli::crd::documents;

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        out.insert(name, std::fs::read_to_string(&path).expect("crd file"));
    }
    out
}

fn generated() -> BTreeMap<String, String> {
    documents().expect("CRDs serialise").into_iter().collect()
}

#[test]
fn crds_dir_equals_the_generated_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let on_disk = read_dir(&root.join("crds"));
    let generated = generated();
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "crds/ holds other files than the types generate; run `cargo run -- crd --out crds`"
    );
    for (name, yaml) in &generated {
        assert!(
            on_disk[name] == *yaml,
            "crds/{name} differs from what the types generate; run `cargo run -- crd --out crds`"
        );
    }
}

#[test]
fn the_chart_ships_the_same_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart = root.join("charts/sovereign-operator/crds");
    assert!(chart.is_dir(), "the chart has no crds/ directory");
    assert_eq!(
        read_dir(&chart),
        generated(),
        "charts/sovereign-operator/crds/ must be a copy of crds/"
    );
}

fn crd(plural: &str) -> Value {
    let yaml = &generated()[&format!("{plural}.sovereign.dev.yaml")];
    serde_yaml::from_str(yaml).expect("crd yaml")
}

fn columns(plural: &str) -> Vec<String> {
    crd(plural)["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn printer_columns_are_the_ones_people_read() {
    let starts = |plural: &str, want: &[&str]| {
        let got = columns(plural);
        let visible: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|c| want.contains(c))
            .collect();
        assert_eq!(visible, want, "{plural} columns: {got:?}");
    };
    starts(
        "sovereignworkloads",
        &["Phase", "Progress", "Residency", "Cost", "Age"],
    );
    starts(
        "sovereignclusters",
        &[
            "Provider",
            "Region",
            "Location",
            "Jurisdiction",
            "Reachable",
        ],
    );
    starts("residencypolicies", &["Enforcement", "Locations"]);
    starts(
        "volumetransfers",
        &["PVC", "Pass", "Done/Total", "Rate", "Phase"],
    );
}

#[test]
fn names_scopes_and_subresources() {
    for (plural, kind, short, scope) in [
        (
            "sovereignworkloads",
            "SovereignWorkload",
            "sw",
            "Namespaced",
        ),
        ("sovereignclusters", "SovereignCluster", "sovc", "Cluster"),
        ("residencypolicies", "ResidencyPolicy", "rp", "Cluster"),
        ("volumetransfers", "VolumeTransfer", "vt", "Namespaced"),
    ] {
        let c = crd(plural);
        assert_eq!(c["spec"]["group"], "sovereign.dev");
        assert_eq!(c["spec"]["names"]["kind"], kind);
        assert_eq!(c["spec"]["names"]["shortNames"][0], short);
        assert_eq!(c["spec"]["scope"], scope);
        let v = &c["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert!(
            v["subresources"]["status"].is_object(),
            "{plural} has a status subresource"
        );
        let status = &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert!(
            status["observedGeneration"].is_object(),
            "{plural} status.observedGeneration"
        );
        assert_eq!(
            status["conditions"]["items"]["required"]
                .as_array()
                .map(Vec::len),
            Some(5),
            "{plural} conditions are metav1.Condition"
        );
    }
}

fn rules(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(rs)) = m.get("x-kubernetes-validations") {
                out.extend(
                    rs.iter()
                        .filter_map(|r| r["rule"].as_str().map(String::from)),
                );
            }
            m.values().for_each(|x| rules(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| rules(x, out)),
        _ => {}
    }
}

#[test]
fn cel_rules_are_in_the_schemas() {
    let mut all = Vec::new();
    rules(&crd("sovereignworkloads"), &mut all);
    for needle in [
        "self.source.cluster != self.target.cluster",
        "self == oldSelf",
        "self.all(k, size(k) > 0 && size(self[k]) > 0)",
        "self.mode != 'Plan'",
    ] {
        assert!(
            all.iter().any(|r| r.contains(needle)),
            "no rule with {needle:?} in {all:#?}"
        );
    }
    let mut cluster = Vec::new();
    rules(&crd("sovereignclusters"), &mut cluster);
    assert!(cluster.iter().any(|r| r.contains("kubeconfigSecretRef")));
}
