//! Every validation the CRDs promise, checked against the generated schemas with real validators:
//! the structural OpenAPI part with a JSON Schema validator, the `x-kubernetes-validations` CEL rules
//! (including `oldSelf` transition rules) with `kube-cel`, the Kubernetes CEL library for Rust. Each
//! bad manifest must be refused with the message a person reads.

use serde_json::Value;
use sovereign::cli::crd::documents;

fn schema(plural: &str) -> Value {
    let docs = documents().expect("CRDs");
    let (_, yaml) = docs
        .iter()
        .find(|(n, _)| n == &format!("{plural}.sovereign.dev.yaml"))
        .expect("crd exists");
    let crd: Value = serde_yaml::from_str(yaml).expect("crd yaml");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn plural_of(obj: &Value) -> &'static str {
    match obj["kind"].as_str() {
        Some("SovereignWorkload") => "sovereignworkloads",
        Some("SovereignCluster") => "sovereignclusters",
        Some("ResidencyPolicy") => "residencypolicies",
        Some("VolumeTransfer") => "volumetransfers",
        other => panic!("unexpected kind {other:?}"),
    }
}

/// All the reasons the API server would refuse `obj` (an update of `old` when given).
fn refusals(obj: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema(plural_of(obj));
    let structural = jsonschema::draft4::new(&schema).expect("schema compiles");
    let mut out: Vec<String> = structural
        .iter_errors(obj)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(errors) = kube_cel::Validator::new().validate(&schema, obj, old) {
        out.extend(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    out
}

fn yaml(s: &str) -> Value {
    serde_yaml::from_str(s).expect("fixture yaml")
}

fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    yaml(&std::fs::read_to_string(&path).expect("example"))
}

/// Applies a JSON merge patch (RFC 7386) written as YAML to a copy of `base`.
fn with(base: &Value, patch: &str) -> Value {
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
    let mut out = base.clone();
    merge(&mut out, &yaml(patch));
    out
}

#[track_caller]
fn refused(obj: &Value, old: Option<&Value>, needle: &str) {
    let why = refusals(obj, old);
    assert!(
        why.iter().any(|w| w.contains(needle)),
        "expected a refusal containing {needle:?}, got {why:#?}"
    );
}

#[track_caller]
fn accepted(obj: &Value, old: Option<&Value>) {
    let why = refusals(obj, old);
    assert!(why.is_empty(), "expected acceptance, got {why:#?}");
}

#[test]
fn every_example_is_accepted() {
    for name in [
        "01-sovereigncluster-aws.yaml",
        "02-sovereigncluster-ovh.yaml",
        "03-residencypolicy-quebec-strict.yaml",
        "04-sovereignworkload-dossier-sante.yaml",
        "05-volumetransfer.yaml",
    ] {
        let obj = example(name);
        let why = refusals(&obj, Some(&obj));
        assert!(why.is_empty(), "{name} is refused: {why:#?}");
    }
}

#[test]
fn workload_source_and_target_must_differ() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {target: {cluster: aws-us-east-1}}"),
        None,
        "source.cluster and target.cluster must name different SovereignClusters",
    );
}

#[test]
fn workload_storage_class_map_has_no_empty_names() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {target: {storageClassMap: {gp3: ''}}}"),
        None,
        "storageClassMap must not contain empty StorageClass names",
    );
    refused(
        &with(
            &w,
            "spec: {target: {storageClassMap: {'': csi-cinder-classic}}}",
        ),
        None,
        "storageClassMap must not contain empty StorageClass names",
    );
}

#[test]
fn workload_budget_is_not_negative() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {cost: {budget: {amount: -1, currency: CAD}}}"),
        None,
        "minimum of 0",
    );
    refused(
        &with(&w, "spec: {cost: {budget: {amount: 10, currency: cad}}}"),
        None,
        "does not match",
    );
}

#[test]
fn plan_mode_cannot_carry_an_approval() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    let hash = "a".repeat(64);
    refused(
        &with(
            &w,
            &format!("spec: {{mode: Plan, cutover: {{approvedPlanHash: '{hash}'}}}}"),
        ),
        None,
        "a Plan-mode workload touches nothing, so it cannot carry a cutover approval",
    );
    accepted(
        &with(
            &w,
            &format!("spec: {{mode: Move, cutover: {{approvedPlanHash: '{hash}'}}}}"),
        ),
        None,
    );
    accepted(&with(&w, "spec: {mode: Plan}"), None);
    refused(
        &with(&w, "spec: {cutover: {approvedPlanHash: 'not-a-hash'}}"),
        None,
        "does not match",
    );
}

#[test]
fn source_and_target_are_immutable() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    for (patch, message) in [
        (
            "spec: {source: {cluster: gcp-us-central1}}",
            "source.cluster is immutable",
        ),
        (
            "spec: {source: {namespace: autre}}",
            "source.namespace is immutable",
        ),
        (
            "spec: {target: {cluster: micrologic-qc}}",
            "target.cluster is immutable",
        ),
        (
            "spec: {target: {namespace: autre}}",
            "target.namespace is immutable once set",
        ),
    ] {
        refused(&with(&w, patch), Some(&w), message);
        // The same object on create is fine: immutability is a transition rule.
        accepted(&with(&w, patch), None);
    }
    // Other fields may change.
    accepted(
        &with(
            &w,
            "spec: {target: {storageClassMap: {gp3: csi-cinder-classic}}}",
        ),
        Some(&w),
    );
}

#[test]
fn workload_enums_bounds_and_required_fields() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {mode: Teleport}"),
        None,
        "\"Teleport\" is not one of",
    );
    refused(
        &with(&w, "spec: {data: {consistency: Hope}}"),
        None,
        "is not one of",
    );
    refused(
        &with(&w, "spec: {data: {preCopyPasses: 11}}"),
        None,
        "maximum of 10",
    );
    refused(
        &with(&w, "spec: {cutover: {healthTimeout: 5s}}"),
        None,
        "healthTimeout must be between 30s and 24h",
    );
    refused(
        &with(&w, "spec: {governance: {dataClassification: TopSecret}}"),
        None,
        "is not one of",
    );
    refused(
        &with(&w, "spec: {target: null}"),
        None,
        "\"target\" is a required property",
    );
    refused(
        &with(&w, "spec: {source: {namespace: Sante_1}}"),
        None,
        "does not match",
    );
}

#[test]
fn endpoint_transport_needs_an_endpoint() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {data: {transport: Endpoint}}"),
        None,
        "data.transport Endpoint needs data.endpoint",
    );
    accepted(
        &with(
            &w,
            "spec: {data: {transport: Endpoint, endpoint: 'mover.qc.example:7443'}}",
        ),
        None,
    );
}

#[test]
fn image_rewrites_and_patches_are_checked() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(
            &w,
            "spec: {target: {imageRewrites: [{from: docker.io, to: docker.io}]}}",
        ),
        None,
        "an image rewrite must change the registry",
    );
    refused(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: add, path: /spec/replicas}]}]}}",
        ),
        None,
        "add, replace and test need a value",
    );
    refused(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: move, path: /a}]}]}}",
        ),
        None,
        "move and copy need from",
    );
    refused(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: remove, path: 'no-slash'}]}]}}",
        ),
        None,
        "does not match",
    );
}

#[test]
fn a_cluster_has_exactly_one_way_in() {
    let c = example("01-sovereigncluster-aws.yaml");
    refused(
        &with(&c, "spec: {inCluster: true}"),
        None,
        "set exactly one of kubeconfigSecretRef or inCluster: true",
    );
    refused(
        &with(&c, "spec: {kubeconfigSecretRef: null}"),
        None,
        "set exactly one of kubeconfigSecretRef or inCluster: true",
    );
    accepted(
        &with(&c, "spec: {kubeconfigSecretRef: null, inCluster: true}"),
        None,
    );
}

#[test]
fn cluster_prices_and_codes_are_checked() {
    let c = example("01-sovereigncluster-aws.yaml");
    refused(
        &with(
            &c,
            "spec: {pricing: {egressTiers: [{upToGiB: 500, perGiB: 0.09}, {upToGiB: 100, perGiB: 0.08}]}}",
        ),
        None,
        "egressTiers must be sorted by strictly increasing upToGiB",
    );
    refused(
        &with(
            &c,
            "spec: {pricing: {egressTiers: [{upToGiB: 100, perGiB: 0.09}, {upToGiB: 100, perGiB: 0.08}]}}",
        ),
        None,
        "egressTiers must be sorted by strictly increasing upToGiB",
    );
    refused(
        &with(&c, "spec: {pricing: {storagePerGiBMonth: {gp3: -0.5}}}"),
        None,
        "prices must not be negative",
    );
    refused(
        &with(&c, "spec: {pricing: {vcpuHour: -1}}"),
        None,
        "minimum of 0",
    );
    refused(
        &with(&c, "spec: {pricing: {currency: dollars}}"),
        None,
        "does not match",
    );
    refused(
        &with(&c, "spec: {jurisdiction: USA}"),
        None,
        "does not match",
    );
    refused(
        &with(&c, "spec: {probeInterval: 1s}"),
        None,
        "probeInterval must be between 10s and 24h",
    );
}

#[test]
fn policy_codes_and_enforcement_are_checked() {
    let p = example("03-residencypolicy-quebec-strict.yaml");
    refused(
        &with(&p, "spec: {allowedLocations: [Quebec]}"),
        None,
        "allowedLocations entries must be ISO 3166 codes",
    );
    refused(
        &with(&p, "spec: {allowedLocations: []}"),
        None,
        "has less than 1 item",
    );
    refused(
        &with(&p, "spec: {allowedJurisdictions: [Canada]}"),
        None,
        "allowedJurisdictions entries must be ISO 3166-1 alpha-2",
    );
    refused(
        &with(&p, "spec: {enforcement: Maybe}"),
        None,
        "is not one of",
    );
    refused(
        &with(
            &p,
            "spec: {allowedRegistries: ['https://registry.example']}",
        ),
        None,
        "without a scheme",
    );
    refused(
        &with(&p, "spec: {recheckInterval: 10s}"),
        None,
        "recheckInterval must be at least 1m",
    );
}

#[test]
fn a_volume_transfer_spec_is_immutable() {
    let v = example("05-volumetransfer.yaml");
    refused(
        &with(&v, "spec: {capacity: 100Gi}"),
        Some(&v),
        "a VolumeTransfer's spec is immutable",
    );
    accepted(&v, Some(&v));
}
