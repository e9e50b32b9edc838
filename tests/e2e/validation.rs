//! Every validation the CRDs promise, checked by the real kube-apiserver: `crds/` applied
//! unchanged (the same files a platform team applies), every example manifest accepted, and each
//! bad manifest refused at apply time (a server-side dry run) with the API server's own message:
//! its OpenAPI schema wording (`Unsupported value`, `should be greater than or equal to`, …) and
//! the CRDs' `x-kubernetes-validations` CEL messages, including `oldSelf` transition rules on
//! updates of objects that really exist.

use std::sync::atomic::{AtomicU32, Ordering};

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::discovery::Scope;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::support;

const NS: &str = "validation";

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

/// `crds/` applied with the real kubectl (server-side, as a platform team would), once.
async fn client() -> Client {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let (_, dst) = support::clients().await;
    DONE.get_or_init(|| async {
        let sh = support::shared();
        let dir = tempfile::tempdir().expect("tmp");
        let kc = dir.path().join("kubeconfig");
        std::fs::write(
            &kc,
            sovereign::sandbox::controlplane::kubeconfig::render(&[sh.target_entry("t")], "t"),
        )
        .expect("kubeconfig");
        let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let out = std::process::Command::new(sh.kubectl())
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crds)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "crds/ refused by the API server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for plural in [
            "sovereignclusters",
            "sovereignworkloads",
            "residencypolicies",
            "volumetransfers",
        ] {
            assert!(
                text.contains(&format!("{plural}.sovereign.dev serverside-applied")),
                "{text}"
            );
        }
        let out = std::process::Command::new(sh.kubectl())
            .arg("--kubeconfig")
            .arg(&kc)
            .args([
                "wait",
                "--for=condition=Established",
                "--timeout=120s",
                "-f",
            ])
            .arg(&crds)
            .output()
            .expect("kubectl wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(dst.clone());
        let _ = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
            )
            .await;
    })
    .await;
    dst
}

async fn api(client: &Client, obj: &Value) -> Api<DynamicObject> {
    let (ar, caps): (ApiResource, _) = sovereign::sandbox::objects::resource(
        client,
        obj["apiVersion"].as_str().expect("apiVersion"),
        obj["kind"].as_str().expect("kind"),
    )
    .await
    .expect("the kind is served");
    match caps.scope {
        Scope::Cluster => Api::all_with(client.clone(), &ar),
        Scope::Namespaced => Api::namespaced_with(client.clone(), NS, &ar),
    }
}

fn unique(obj: &Value) -> Value {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let mut o = obj.clone();
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let name = format!("{}-{n}", o["metadata"]["name"].as_str().unwrap_or("x"));
    o["metadata"] = json!({"name": name, "namespace": NS});
    o
}

/// What the API server answers to creating `obj` (dry run), or to updating a real `old` with
/// it: None when accepted, the message when refused.
async fn answer(obj: &Value, old: Option<&Value>) -> Option<String> {
    let client = client().await;
    let api = api(&client, obj).await;
    let mut obj = unique(obj);
    let name = obj["metadata"]["name"].as_str().expect("name").to_string();
    if let Some(old) = old {
        let mut o = old.clone();
        o["metadata"] = obj["metadata"].clone();
        let dynamic: DynamicObject = serde_json::from_value(o).expect("old");
        api.create(&PostParams::default(), &dynamic)
            .await
            .expect("the old object is accepted");
        let pp = PatchParams::apply("validation-test").force().dry_run();
        let r = api.patch(&name, &pp, &Patch::Apply(&obj)).await;
        let _ = api.delete(&name, &Default::default()).await;
        return r.err().map(|e| e.to_string());
    }
    obj["metadata"]["name"] = json!(name);
    let dynamic: DynamicObject = serde_json::from_value(obj).expect("object");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&pp, &dynamic).await.err().map(|e| e.to_string())
}

#[track_caller]
fn check_refused(why: Option<String>, needle: &str) {
    match why {
        Some(m) => assert!(
            m.contains(needle),
            "expected a refusal containing {needle:?}, got {m}"
        ),
        None => panic!("expected a refusal containing {needle:?}, it was accepted"),
    }
}

async fn refused(obj: &Value, old: Option<&Value>, needle: &str) {
    check_refused(answer(obj, old).await, needle);
}

async fn accepted(obj: &Value, old: Option<&Value>) {
    if let Some(why) = answer(obj, old).await {
        panic!("expected acceptance, got {why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_accepted() {
    for name in [
        "01-sovereigncluster-aws.yaml",
        "02-sovereigncluster-ovh.yaml",
        "03-residencypolicy-quebec-strict.yaml",
        "04-sovereignworkload-dossier-sante.yaml",
        "05-volumetransfer.yaml",
    ] {
        let obj = example(name);
        if let Some(why) = answer(&obj, None).await {
            panic!("{name} is refused: {why}");
        }
        if let Some(why) = answer(&obj, Some(&obj)).await {
            panic!("{name} re-applied unchanged is refused: {why}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_source_and_target_must_differ() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {target: {cluster: aws-us-east-1}}"),
        None,
        "source.cluster and target.cluster must name different SovereignClusters",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_storage_class_map_has_no_empty_names() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {target: {storageClassMap: {gp3: ''}}}"),
        None,
        "storageClassMap must not contain empty StorageClass names",
    )
    .await;
    refused(
        &with(
            &w,
            "spec: {target: {storageClassMap: {'': csi-cinder-classic}}}",
        ),
        None,
        "storageClassMap must not contain empty StorageClass names",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_budget_is_not_negative() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {cost: {budget: {amount: -1, currency: CAD}}}"),
        None,
        "should be greater than or equal to 0",
    )
    .await;
    refused(
        &with(&w, "spec: {cost: {budget: {amount: 10, currency: cad}}}"),
        None,
        "should match",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_mode_cannot_carry_an_approval() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    let hash = "a".repeat(64);
    refused(
        &with(
            &w,
            &format!("spec: {{mode: Plan, cutover: {{approvedPlanHash: '{hash}'}}}}"),
        ),
        None,
        "a Plan-mode workload touches nothing, so it cannot carry a cutover approval",
    )
    .await;
    accepted(
        &with(
            &w,
            &format!("spec: {{mode: Move, cutover: {{approvedPlanHash: '{hash}'}}}}"),
        ),
        None,
    )
    .await;
    accepted(&with(&w, "spec: {mode: Plan}"), None).await;
    refused(
        &with(&w, "spec: {cutover: {approvedPlanHash: 'not-a-hash'}}"),
        None,
        "should match",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_and_target_are_immutable() {
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
        refused(&with(&w, patch), Some(&w), message).await;
        // The same object on create is fine: immutability is a transition rule.
        accepted(&with(&w, patch), None).await;
    }
    // Other fields may change.
    accepted(
        &with(
            &w,
            "spec: {target: {storageClassMap: {gp3: csi-cinder-classic}}}",
        ),
        Some(&w),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_enums_bounds_and_required_fields() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {mode: Teleport}"),
        None,
        "Unsupported value: \"Teleport\"",
    )
    .await;
    refused(
        &with(&w, "spec: {data: {consistency: Hope}}"),
        None,
        "Unsupported value",
    )
    .await;
    refused(
        &with(&w, "spec: {data: {preCopyPasses: 11}}"),
        None,
        "should be less than or equal to 10",
    )
    .await;
    refused(
        &with(&w, "spec: {cutover: {healthTimeout: 5s}}"),
        None,
        "healthTimeout must be between 30s and 24h",
    )
    .await;
    refused(
        &with(&w, "spec: {governance: {dataClassification: TopSecret}}"),
        None,
        "Unsupported value",
    )
    .await;
    refused(
        &with(&w, "spec: {target: null}"),
        None,
        "spec.target: Required value",
    )
    .await;
    refused(
        &with(&w, "spec: {source: {namespace: Sante_1}}"),
        None,
        "should match",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_transport_needs_an_endpoint() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(&w, "spec: {data: {transport: Endpoint}}"),
        None,
        "data.transport Endpoint needs data.endpoint",
    )
    .await;
    accepted(
        &with(
            &w,
            "spec: {data: {transport: Endpoint, endpoint: 'mover.qc.example:7443'}}",
        ),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_rewrites_and_patches_are_checked() {
    let w = example("04-sovereignworkload-dossier-sante.yaml");
    refused(
        &with(
            &w,
            "spec: {target: {imageRewrites: [{from: docker.io, to: docker.io}]}}",
        ),
        None,
        "an image rewrite must change the registry",
    )
    .await;
    // A CEL rule cannot see `value` (any JSON: the API server's CEL has no type for it and
    // refuses a rule naming it), so an `add` without one is the plan's finding, not a refusal.
    accepted(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: add, path: /spec/replicas}]}]}}",
        ),
        None,
    )
    .await;
    refused(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: move, path: /a}]}]}}",
        ),
        None,
        "move and copy need from",
    )
    .await;
    refused(
        &with(
            &w,
            "spec: {target: {patches: [{kind: Deployment, operations: [{op: remove, path: 'no-slash'}]}]}}",
        ),
        None,
        "should match",
    ).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_has_exactly_one_way_in() {
    let c = example("01-sovereigncluster-aws.yaml");
    refused(
        &with(&c, "spec: {inCluster: true}"),
        None,
        "set exactly one of kubeconfigSecretRef or inCluster: true",
    )
    .await;
    refused(
        &with(&c, "spec: {kubeconfigSecretRef: null}"),
        None,
        "set exactly one of kubeconfigSecretRef or inCluster: true",
    )
    .await;
    accepted(
        &with(&c, "spec: {kubeconfigSecretRef: null, inCluster: true}"),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_prices_and_codes_are_checked() {
    let c = example("01-sovereigncluster-aws.yaml");
    refused(
        &with(
            &c,
            "spec: {pricing: {egressTiers: [{upToGiB: 500, perGiB: 0.09}, {upToGiB: 100, perGiB: 0.08}]}}",
        ),
        None,
        "egressTiers must be sorted by strictly increasing upToGiB",
    ).await;
    refused(
        &with(
            &c,
            "spec: {pricing: {egressTiers: [{upToGiB: 100, perGiB: 0.09}, {upToGiB: 100, perGiB: 0.08}]}}",
        ),
        None,
        "egressTiers must be sorted by strictly increasing upToGiB",
    ).await;
    refused(
        &with(&c, "spec: {pricing: {storagePerGiBMonth: {gp3: -0.5}}}"),
        None,
        "prices must not be negative",
    )
    .await;
    refused(
        &with(&c, "spec: {pricing: {vcpuHour: -1}}"),
        None,
        "should be greater than or equal to 0",
    )
    .await;
    refused(
        &with(&c, "spec: {pricing: {currency: dollars}}"),
        None,
        "should match",
    )
    .await;
    refused(&with(&c, "spec: {jurisdiction: USA}"), None, "should match").await;
    refused(
        &with(&c, "spec: {probeInterval: 1s}"),
        None,
        "probeInterval must be between 10s and 24h",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_codes_and_enforcement_are_checked() {
    let p = example("03-residencypolicy-quebec-strict.yaml");
    refused(
        &with(&p, "spec: {allowedLocations: [Quebec]}"),
        None,
        "allowedLocations entries must be ISO 3166 codes",
    )
    .await;
    refused(
        &with(&p, "spec: {allowedLocations: []}"),
        None,
        "should have at least 1 items",
    )
    .await;
    refused(
        &with(&p, "spec: {allowedJurisdictions: [Canada]}"),
        None,
        "allowedJurisdictions entries must be ISO 3166-1 alpha-2",
    )
    .await;
    refused(
        &with(&p, "spec: {enforcement: Maybe}"),
        None,
        "Unsupported value",
    )
    .await;
    refused(
        &with(
            &p,
            "spec: {allowedRegistries: ['https://registry.example']}",
        ),
        None,
        "without a scheme",
    )
    .await;
    refused(
        &with(&p, "spec: {recheckInterval: 10s}"),
        None,
        "recheckInterval must be at least 1m",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_transfer_spec_is_immutable() {
    let v = example("05-volumetransfer.yaml");
    refused(
        &with(&v, "spec: {capacity: 100Gi}"),
        Some(&v),
        "a VolumeTransfer's spec is immutable",
    )
    .await;
    accepted(&v, Some(&v)).await;
}
