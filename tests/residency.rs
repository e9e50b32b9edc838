//! Residency verdicts on fixtures written in the exact formats the providers produce.

use sovereign::api::cluster::SovereignClusterSpec;
use sovereign::api::{Finding, Severity, SovereignCluster, Verdict};
use sovereign::residency::policy::quebec_strict;
use sovereign::residency::{Catalog, Evaluation, Inventory, evaluate};

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/residency")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn inventory(names: &[&str]) -> Inventory {
    let text = names
        .iter()
        .map(|n| fixture(n))
        .collect::<Vec<_>>()
        .join("\n---\n");
    Inventory::from_yaml(&text).expect("fixture parses")
}

fn declared(yaml: &str) -> SovereignClusterSpec {
    serde_yaml::from_str::<SovereignCluster>(yaml)
        .expect("SovereignCluster")
        .spec
}

fn judge(names: &[&str], decl: Option<&SovereignClusterSpec>) -> Evaluation {
    evaluate(
        &inventory(names),
        decl,
        &quebec_strict(),
        Catalog::embedded(),
    )
}

fn has(e: &Evaluation, severity: Severity, needle: &str) -> bool {
    e.findings.iter().any(|f: &Finding| {
        f.severity == severity
            && format!(
                "{} {} {} {} {}",
                f.object, f.field, f.evidence, f.rule, f.remediation
            )
            .contains(needle)
    })
}

#[track_caller]
fn expect(e: &Evaluation, verdict: Verdict, location: Option<&str>, jurisdiction: Option<&str>) {
    assert_eq!(e.verdict, verdict, "{e:#?}");
    assert_eq!(e.location.as_deref(), location, "{e:#?}");
    assert_eq!(e.jurisdiction.as_deref(), jurisdiction, "{e:#?}");
}

#[test]
fn eks_in_virginia_is_us_and_non_compliant() {
    let e = judge(&["eks-us-east-1.yaml"], None);
    expect(&e, Verdict::NonCompliant, Some("US-VA"), Some("US"));
    assert_eq!(e.provider.as_deref(), Some("aws"));
    assert_eq!(e.region.as_deref(), Some("us-east-1"));
    assert!(has(&e, Severity::Error, "compute must be located in CA-QC"));
    assert!(has(&e, Severity::Error, "US CLOUD Act"));
    // The volume's zone is evidence of its own.
    assert!(
        has(&e, Severity::Error, "PersistentVolume/pvc-5f1c2a9e"),
        "{e:#?}"
    );
    // Two nodes of one pool make one compute finding, not two.
    let compute = e
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("compute must be located"))
        .count();
    assert_eq!(compute, 1, "{e:#?}");
}

#[test]
fn aks_and_gke_are_recognised() {
    let aks = judge(&["aks-eastus.yaml"], None);
    expect(&aks, Verdict::NonCompliant, Some("US-VA"), Some("US"));
    assert_eq!(aks.provider.as_deref(), Some("azure"));
    let gke = judge(&["gke-us-central1.yaml"], None);
    expect(&gke, Verdict::NonCompliant, Some("US-IA"), Some("US"));
    assert_eq!(gke.provider.as_deref(), Some("gcp"));
}

#[test]
fn us_parented_regions_located_in_quebec_fail_on_jurisdiction_only() {
    for (file, provider) in [
        ("eks-ca-central-1.yaml", "aws"),
        ("oke-ca-montreal-1.yaml", "oci"),
    ] {
        let e = judge(&[file], None);
        expect(&e, Verdict::NonCompliant, Some("CA-QC"), Some("US"));
        assert_eq!(e.provider.as_deref(), Some(provider));
        assert!(
            !has(&e, Severity::Error, "compute must be located"),
            "{file}: the location is fine: {e:#?}"
        );
        assert!(
            has(
                &e,
                Severity::Error,
                "compute must be operated under CA jurisdiction"
            ),
            "{file}: {e:#?}"
        );
    }
    // A policy that accepts foreign-controlled providers in Québec passes the same cluster.
    let mut lenient = quebec_strict();
    lenient.allow_foreign_controlled_providers = true;
    let e = evaluate(
        &inventory(&["eks-ca-central-1.yaml"]),
        None,
        &lenient,
        Catalog::embedded(),
    );
    assert_eq!(e.verdict, Verdict::Compliant, "{e:#?}");
}

#[test]
fn a_french_parented_provider_in_beauharnois_fails_quebec_strict() {
    let e = judge(&["ovh-bhs5.yaml"], None);
    expect(&e, Verdict::NonCompliant, Some("CA-QC"), Some("FR"));
    assert_eq!(e.provider.as_deref(), Some("ovhcloud"));
    assert!(
        has(&e, Severity::Error, "OVH Groupe SA is a FR company"),
        "{e:#?}"
    );
    // With a catalog override recording a Canadian contracting entity, the same cluster complies.
    let catalog = Catalog::with_override(
        "asOf: '2026-12-01'\nproviders:\n- id: ovhcloud\n  name: OVHcloud Canada\n  parent: {name: OVH Hébergement Canada, country: CA}\n  source: contract 2026-12\n  detect: {nodeLabelPrefixes: ['k8s.ovh.net/']}\n  regions: {bhs5: {country: CA, province: QC, city: Beauharnois}}\n",
    )
    .expect("override");
    let e = evaluate(
        &inventory(&["ovh-bhs5.yaml"]),
        None,
        &quebec_strict(),
        &catalog,
    );
    expect(&e, Verdict::Compliant, Some("CA-QC"), Some("CA"));
}

#[test]
fn no_provider_signal_is_unknown_never_compliant() {
    let e = judge(&["self-managed.yaml"], None);
    expect(&e, Verdict::Unknown, None, None);
    assert!(has(
        &e,
        Severity::Warning,
        "declare provider, location and jurisdiction"
    ));
}

#[test]
fn a_declaration_with_no_contradiction_carries_the_verdict_and_says_so() {
    let d = declared(&fixture("micrologic-declared.yaml"));
    let e = judge(&["self-managed.yaml"], Some(&d));
    expect(&e, Verdict::Compliant, Some("CA-QC"), Some("CA"));
    assert!(e.declared);
    assert!(
        e.findings
            .iter()
            .any(|f| f.evidence == "declared" && f.severity == Severity::Info),
        "{e:#?}"
    );
}

#[test]
fn a_declared_region_that_contradicts_the_nodes_is_a_finding() {
    let d = declared(
        "apiVersion: sovereign.dev/v1alpha1\nkind: SovereignCluster\nmetadata: {name: x}\nspec: {inCluster: true, provider: aws, region: ca-central-1, location: {country: CA, province: QC}, jurisdiction: US}\n",
    );
    let e = judge(&["eks-us-east-1.yaml"], Some(&d));
    assert_eq!(e.verdict, Verdict::NonCompliant);
    assert!(
        has(
            &e,
            Severity::Warning,
            "declared ca-central-1, observed us-east-1"
        ),
        "{e:#?}"
    );
    assert!(
        has(&e, Severity::Warning, "declared CA-QC, observed US-VA"),
        "{e:#?}"
    );
    assert!(
        !e.declared,
        "observation wins over a contradicted declaration"
    );
}

#[test]
fn a_mixed_cluster_with_one_foreign_node_pool_fails_on_that_pool() {
    let text = format!(
        "{}\n---\n{}",
        fixture("ovh-bhs5.yaml"),
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: gpu-pool-1\n  labels: {topology.kubernetes.io/region: us-east-1, eks.amazonaws.com/nodegroup: gpu}\nspec: {providerID: 'aws:///us-east-1c/i-0aaaabbbbccccdddd'}\n"
    );
    let inv = Inventory::from_yaml(&text).expect("inventory");
    let catalog = Catalog::with_override("providers:\n- id: ovhcloud\n  name: OVHcloud Canada\n  parent: {name: OVH Canada, country: CA}\n  detect: {nodeLabelPrefixes: ['k8s.ovh.net/']}\n  regions: {bhs5: {country: CA, province: QC, city: Beauharnois}}\n").expect("override");
    let e = evaluate(&inv, None, &quebec_strict(), &catalog);
    assert_eq!(e.verdict, Verdict::NonCompliant);
    assert_eq!(e.location.as_deref(), Some("CA-QC,US-VA"));
    assert!(
        e.findings
            .iter()
            .any(|f| f.object == "Node/gpu-pool-1" && f.severity == Severity::Error),
        "{e:#?}"
    );
    assert!(
        !e.findings
            .iter()
            .any(|f| f.object.starts_with("Node/nodepool-b3-8") && f.severity == Severity::Error),
        "{e:#?}"
    );
}

#[test]
fn a_pv_provisioned_in_a_foreign_zone_is_found() {
    let pv = "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pvc-foreign}\nspec:\n  capacity: {storage: 10Gi}\n  accessModes: [ReadWriteOnce]\n  csi: {driver: pd.csi.storage.gke.io, volumeHandle: projects/p/zones/us-central1-a/disks/d}\n  nodeAffinity:\n    required:\n      nodeSelectorTerms:\n      - matchExpressions:\n        - {key: topology.gke.io/zone, operator: In, values: [us-central1-a]}\n";
    let d = declared(&fixture("micrologic-declared.yaml"));
    let inv = Inventory::from_yaml(&format!("{}\n---\n{pv}", fixture("self-managed.yaml")))
        .expect("inventory");
    let e = evaluate(&inv, Some(&d), &quebec_strict(), Catalog::embedded());
    assert_eq!(e.verdict, Verdict::NonCompliant);
    let f = e
        .findings
        .iter()
        .find(|f| f.object == "PersistentVolume/pvc-foreign")
        .expect("volume finding");
    assert!(
        f.evidence.contains("us-central1-a") && f.evidence.contains("pd.csi.storage.gke.io"),
        "{f:?}"
    );
    assert!(f.remediation.contains("US-IA"), "{f:?}");
}

#[test]
fn the_workloads_dependencies_are_judged() {
    let d = declared(&fixture("micrologic-declared.yaml"));
    let mut policy = quebec_strict();
    policy.allowed_registries = vec!["registry.sante.gouv.qc.ca".into()];
    let inv = inventory(&["self-managed.yaml", "workload-dossier.yaml"]);
    let e = evaluate(&inv, Some(&d), &policy, Catalog::embedded());
    assert_eq!(e.verdict, Verdict::NonCompliant);
    let image = e
        .findings
        .iter()
        .find(|f| f.field.ends_with("containers[0].image"))
        .expect("image finding");
    assert_eq!(image.object, "Deployment/sante/dossier-api");
    assert!(
        image
            .evidence
            .starts_with("123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    );
    assert!(
        image.remediation.contains("registry.sante.gouv.qc.ca"),
        "{image:?}"
    );
    // The allow-listed registry is fine.
    assert!(
        !e.findings
            .iter()
            .any(|f| f.evidence.starts_with("registry.sante.gouv.qc.ca")),
        "{e:#?}"
    );
    let s3 = e
        .findings
        .iter()
        .find(|f| f.evidence == "dossiers-patients.s3.us-east-1.amazonaws.com")
        .expect("S3 finding");
    assert!(
        s3.field.contains("DOCUMENTS_BUCKET_URL") && s3.rule.contains("US-VA"),
        "{s3:?}"
    );
    assert!(
        e.findings
            .iter()
            .any(|f| f.object == "ConfigMap/sante/dossier-config"
                && f.evidence.ends_with("rds.amazonaws.com")),
        "{e:#?}"
    );
    assert!(
        !e.findings
            .iter()
            .any(|f| f.evidence == "auth.sante.gouv.qc.ca"),
        "a Québec endpoint is not a finding"
    );
    assert!(
        e.findings
            .iter()
            .any(|f| f.object == "ServiceAccount/sante/dossier-api" && f.rule.contains("IAM")),
        "{e:#?}"
    );
    // Without the allow-list, the Québec registry is not known to comply: Unknown at best.
    let e = evaluate(
        &inventory(&["self-managed.yaml"]),
        Some(&d),
        &quebec_strict(),
        Catalog::embedded(),
    );
    assert_eq!(e.verdict, Verdict::Compliant);
    let only_proxy = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec:\n  containers: [{name: c, image: registry.sante.gouv.qc.ca/infra/envoy:1.30}]\n";
    let inv = Inventory::from_yaml(&format!(
        "{}\n---\n{only_proxy}",
        fixture("self-managed.yaml")
    ))
    .expect("inventory");
    let e = evaluate(&inv, Some(&d), &quebec_strict(), Catalog::embedded());
    assert_eq!(e.verdict, Verdict::Unknown, "{e:#?}");
}
