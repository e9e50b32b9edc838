//! The migration plan from a realistic namespace: selection and references, order, each transform,
//! findings, and a hash that changes exactly when the plan does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;
use sovereign::api::Severity;
use sovereign::api::workload::{ImageRewrite, ObjectPatch};
use sovereign::migrate::footprint::usage;
use sovereign::migrate::{Plan, PlanInput, build};
use sovereign::residency::Catalog;

fn objects() -> Vec<Value> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/sante.yaml");
    let list: Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("yaml");
    list["items"].as_array().expect("items").clone()
}

struct Spec {
    selector: Option<LabelSelector>,
    include: Vec<String>,
    exclude: Vec<String>,
    map: BTreeMap<String, String>,
    rewrites: Vec<ImageRewrite>,
    patches: Vec<ObjectPatch>,
    target_classes: Vec<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            selector: None,
            include: vec![],
            exclude: vec![],
            map: BTreeMap::from([("gp3".to_string(), "csi-cinder-high-speed".to_string())]),
            rewrites: vec![ImageRewrite {
                from: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
                to: "registry.sante.gouv.qc.ca".into(),
            }],
            patches: vec![],
            target_classes: vec!["csi-cinder-high-speed".into(), "csi-cinder-classic".into()],
        }
    }
}

fn plan_with(spec: &Spec) -> Plan {
    let objs = objects();
    build(&PlanInput {
        objects: &objs,
        source_namespace: "sante",
        target_namespace: "sante-qc",
        target_cluster: "ovh-bhs5",
        selector: spec.selector.as_ref(),
        include_kinds: &spec.include,
        exclude_kinds: &spec.exclude,
        storage_class_map: &spec.map,
        target_storage_classes: &spec.target_classes,
        image_rewrites: &spec.rewrites,
        target_region: Some("bhs5"),
        patches: &spec.patches,
        workload: "migrations/dossier",
        catalog: Catalog::embedded(),
    })
}

fn object<'p>(p: &'p Plan, kind: &str, name: &str) -> &'p Value {
    &p.objects
        .iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} is not planned"))
        .object
}

fn names(p: &Plan) -> Vec<String> {
    p.objects
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect()
}

#[test]
fn what_moves_and_what_does_not() {
    let p = plan_with(&Spec::default());
    let planned = names(&p);
    for skipped in [
        "ReplicaSet/dossier-api-5d9f8c7b6",
        "Pod/dossier-api-5d9f8c7b6-abcde",
        "Event/dossier-api.17a",
        "ServiceAccount/default",
        "ConfigMap/kube-root-ca.crt",
        "Secret/dossier-api-token-x7k2p",
        "Job/dossier-purge-29012345",
    ] {
        assert!(
            !planned.contains(&skipped.to_string()),
            "{skipped} must not move"
        );
        assert!(
            p.skipped.iter().any(|s| s.object == skipped),
            "{skipped} must be listed as skipped with a reason"
        );
    }
    for moved in [
        "Deployment/dossier-api",
        "StatefulSet/dossier-db",
        "PersistentVolumeClaim/data-dossier-db-0",
        "CronJob/dossier-purge",
        "HorizontalPodAutoscaler/dossier-api",
        "DossierConfig/defaults",
        "Deployment/autre-app",
    ] {
        assert!(
            planned.contains(&moved.to_string()),
            "{moved} must move: {planned:?}"
        );
    }
    // Dependency order: identities before configuration before claims before services before
    // workloads before what routes to or scales them.
    let pos = |n: &str| {
        planned
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert!(pos("ServiceAccount/dossier-api") < pos("RoleBinding/dossier-reader"));
    assert!(pos("Role/dossier-reader") < pos("ConfigMap/dossier-config"));
    assert!(pos("Secret/dossier-db") < pos("PersistentVolumeClaim/data-dossier-db-0"));
    assert!(pos("PersistentVolumeClaim/data-dossier-db-0") < pos("Service/dossier-api"));
    assert!(pos("Service/dossier-api") < pos("Deployment/dossier-api"));
    assert!(pos("Deployment/dossier-api") < pos("Ingress/dossier"));
    assert!(pos("NetworkPolicy/dossier-db") < pos("DossierConfig/defaults"));
}

#[test]
fn a_selector_pulls_in_what_the_selected_workloads_need() {
    let spec = Spec {
        selector: Some(
            serde_json::from_value(
                serde_json::json!({"matchLabels": {"app.kubernetes.io/part-of": "dossier"}}),
            )
            .expect("selector"),
        ),
        ..Spec::default()
    };
    let p = plan_with(&spec);
    let planned = names(&p);
    // Unlabelled, but referenced or selecting the selected pods:
    for pulled in [
        "ConfigMap/dossier-config",
        "Secret/dossier-db",
        "ServiceAccount/dossier-api",
        "PersistentVolumeClaim/data-dossier-db-0",
        "Service/dossier-db",
        "Secret/dossier-tls",
        "RoleBinding/dossier-reader",
        "Role/dossier-reader",
        "HorizontalPodAutoscaler/dossier-api",
        "PodDisruptionBudget/dossier-api",
        "NetworkPolicy/dossier-db",
    ] {
        assert!(
            planned.contains(&pulled.to_string()),
            "{pulled} must come along: {planned:?}"
        );
    }
    assert!(
        !planned.contains(&"Deployment/autre-app".to_string()),
        "outside the selector"
    );
    // The optional ConfigMap that does not exist is no finding; nothing else is missing.
    assert!(
        !p.findings
            .iter()
            .any(|f| f.evidence == "ConfigMap/dossier-flags"),
        "{:?}",
        p.findings
    );
}

#[test]
fn include_and_exclude_kinds() {
    let p = plan_with(&Spec {
        exclude: vec!["Secret".into(), "DossierConfig.sante.gouv.qc.ca".into()],
        ..Spec::default()
    });
    let planned = names(&p);
    assert!(!planned.iter().any(|n| n.starts_with("Secret/")));
    assert!(!planned.contains(&"DossierConfig/defaults".to_string()));
    // A workload's excluded reference is a finding: the target must provide it.
    assert!(
        p.findings
            .iter()
            .any(|f| f.evidence == "Secret/dossier-db" && f.severity == Severity::Warning),
        "{:?}",
        p.findings
    );
    let p = plan_with(&Spec {
        include: vec!["ConfigMap".into(), "Deployment".into()],
        ..Spec::default()
    });
    assert!(
        p.objects
            .iter()
            .all(|o| o.kind == "ConfigMap" || o.kind == "Deployment"),
        "{:?}",
        names(&p)
    );
}

#[test]
fn a_missing_reference_is_a_finding_before_cutover() {
    let mut objs = objects();
    objs.retain(|o| !(o["kind"] == "Secret" && o["metadata"]["name"] == "dossier-db"));
    let spec = Spec::default();
    let p = build(&PlanInput {
        objects: &objs,
        source_namespace: "sante",
        target_namespace: "sante",
        target_cluster: "ovh-bhs5",
        selector: None,
        include_kinds: &[],
        exclude_kinds: &[],
        storage_class_map: &spec.map,
        target_storage_classes: &[],
        image_rewrites: &[],
        target_region: None,
        patches: &[],
        workload: "migrations/dossier",
        catalog: Catalog::embedded(),
    });
    let f = p
        .findings
        .iter()
        .find(|f| f.evidence == "Secret/dossier-db")
        .expect("finding");
    assert_eq!(
        (f.severity, f.object.as_str()),
        (Severity::Error, "Deployment/dossier-api")
    );
    assert!(
        f.field.contains("secretKeyRef") || f.field.contains("env[0]"),
        "{f:?}"
    );
    assert!(p.has_errors());
}

#[test]
fn every_transform_does_its_job() {
    let spec = Spec {
        patches: vec![serde_json::from_value(serde_json::json!({"kind": "Deployment", "name": "dossier-api", "operations": [{"op": "add", "path": "/metadata/annotations/sante.gouv.qc.ca~1owner", "value": "dgti"}]})).expect("patch")],
        ..Spec::default()
    };
    let p = plan_with(&spec);
    let d = object(&p, "Deployment", "dossier-api");
    // strip-server-fields
    for f in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ] {
        assert!(d["metadata"][f].is_null(), "metadata.{f} kept");
    }
    assert!(d["status"].is_null());
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_null()
    );
    // map-namespace
    assert_eq!(d["metadata"]["namespace"], "sante-qc");
    assert_eq!(
        object(&p, "RoleBinding", "dossier-reader")["subjects"][0]["namespace"],
        "sante-qc"
    );
    // rewrite-images
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.sante.gouv.qc.ca/dossier/api:2.4.1"
    );
    assert_eq!(
        object(&p, "CronJob", "dossier-purge")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            [0]["image"],
        "registry.sante.gouv.qc.ca/dossier/purge:1.0"
    );
    assert_eq!(
        object(&p, "StatefulSet", "dossier-db")["spec"]["template"]["spec"]["containers"][0]["image"],
        "postgres:16.4",
        "other registries untouched"
    );
    // rewrite-node-placement: the region is the target's, the EKS node group is gone.
    let ns = &d["spec"]["template"]["spec"]["nodeSelector"];
    assert_eq!(ns["topology.kubernetes.io/region"], "bhs5");
    assert!(ns["eks.amazonaws.com/nodegroup"].is_null());
    // start-at-zero-replicas, with the count kept for cutover
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["metadata"]["annotations"]["sovereign.dev/replicas"], "3");
    let cj = object(&p, "CronJob", "dossier-purge");
    assert_eq!(
        (
            cj["spec"]["suspend"].as_bool(),
            cj["metadata"]["annotations"]["sovereign.dev/suspended"].as_str()
        ),
        (Some(true), Some("false"))
    );
    // user-patches
    assert_eq!(
        d["metadata"]["annotations"]["sante.gouv.qc.ca/owner"],
        "dgti"
    );
    // mark-ownership and the source's identity
    assert_eq!(
        d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sovereign-operator"
    );
    assert_eq!(
        d["metadata"]["labels"]["sovereign.dev/workload"],
        "migrations.dossier"
    );
    assert_eq!(
        d["metadata"]["annotations"]["sovereign.dev/source-uid"],
        "7d1b7a4e-0000-4000-8000-000000000001"
    );
    assert_eq!(
        d["metadata"]["annotations"]["sovereign.dev/source-hash"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    // Service: new address, same headlessness, no node port, no AWS load balancer.
    let svc = object(&p, "Service", "dossier-api");
    assert!(svc["spec"]["clusterIP"].is_null() && svc["spec"]["clusterIPs"].is_null());
    assert!(svc["spec"]["ports"][0]["nodePort"].is_null());
    assert!(
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"]
            .is_null()
    );
    assert_eq!(
        object(&p, "Service", "dossier-db")["spec"]["clusterIP"],
        "None"
    );
    // map-storage-class, on claims and on claim templates; the claim is unbound.
    let pvc = object(&p, "PersistentVolumeClaim", "data-dossier-db-0");
    assert_eq!(pvc["spec"]["storageClassName"], "csi-cinder-high-speed");
    assert!(pvc["spec"]["volumeName"].is_null());
    assert!(pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"].is_null());
    assert_eq!(
        object(&p, "StatefulSet", "dossier-db")["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "csi-cinder-high-speed"
    );
    // drop-cloud-identity, with a finding
    assert!(object(&p, "ServiceAccount", "dossier-api")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_null());
    assert!(object(&p, "ServiceAccount", "dossier-api")["secrets"].is_null());
    assert!(p.findings.iter().any(|f| f.object == "ServiceAccount/dossier-api" && f.evidence.contains("arn:aws:iam")), "{:?}", p.findings);
    // The plan lists the transforms, and each object the ones that changed it.
    for t in [
        "strip-server-fields",
        "map-namespace",
        "map-storage-class",
        "rewrite-images",
        "drop-cloud-identity",
        "drop-cloud-load-balancer",
        "rewrite-node-placement",
        "start-at-zero-replicas",
        "user-patches",
        "mark-ownership",
    ] {
        assert!(
            p.transforms.iter().any(|x| x == t),
            "{t} not listed in {:?}",
            p.transforms
        );
    }
    let planned = p
        .objects
        .iter()
        .find(|o| o.kind == "ConfigMap")
        .expect("cm");
    assert!(!planned.transforms.iter().any(|t| t == "rewrite-images"));
    // Volumes: the claim's capacity stands in for the bytes.
    assert_eq!(p.volumes.len(), 1);
    assert_eq!(p.volumes[0].capacity_bytes, 20 * 1024 * 1024 * 1024);
    assert_eq!(
        p.volumes[0].target_storage_class.as_deref(),
        Some("csi-cinder-high-speed")
    );
}

#[test]
fn an_unmapped_class_falls_back_to_the_targets_default_with_a_finding() {
    let p = plan_with(&Spec {
        map: BTreeMap::new(),
        ..Spec::default()
    });
    assert_eq!(
        object(&p, "PersistentVolumeClaim", "data-dossier-db-0")["spec"]["storageClassName"],
        "csi-cinder-high-speed"
    );
    assert!(
        p.findings
            .iter()
            .any(|f| f.evidence == "gp3" && f.severity == Severity::Warning)
    );
}

#[test]
fn a_failing_user_patch_is_an_error_finding_and_the_object_is_unchanged_by_it() {
    let spec = Spec {
        patches: vec![serde_json::from_value(serde_json::json!({"kind": "Deployment", "name": "dossier-api", "operations": [{"op": "remove", "path": "/spec/nope"}]})).expect("patch")],
        ..Spec::default()
    };
    let p = plan_with(&spec);
    assert!(
        p.findings
            .iter()
            .any(|f| f.object == "Deployment/dossier-api"
                && f.severity == Severity::Error
                && f.field == "spec.target.patches")
    );
}

#[test]
fn the_hash_is_stable_and_changes_with_the_plan() {
    let a = plan_with(&Spec::default());
    let b = plan_with(&Spec::default());
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    let mut shuffled = objects();
    shuffled.reverse();
    let spec = Spec::default();
    let c = build(&PlanInput {
        objects: &shuffled,
        source_namespace: "sante",
        target_namespace: "sante-qc",
        target_cluster: "ovh-bhs5",
        selector: None,
        include_kinds: &[],
        exclude_kinds: &[],
        storage_class_map: &spec.map,
        target_storage_classes: &spec.target_classes,
        image_rewrites: &spec.rewrites,
        target_region: Some("bhs5"),
        patches: &[],
        workload: "migrations/dossier",
        catalog: Catalog::embedded(),
    });
    assert_eq!(
        a.hash, c.hash,
        "the order objects are listed in does not matter"
    );
    let d = plan_with(&Spec {
        rewrites: vec![],
        ..Spec::default()
    });
    assert_ne!(
        a.hash, d.hash,
        "a different image rewrite is a different plan"
    );
    // The source running (its controllers writing status, resourceVersions moving, revisions
    // and binding annotations) leaves the approved plan as it was; its authors' edits do not.
    let mut running = objects();
    for o in &mut running {
        o["metadata"]["resourceVersion"] = serde_json::json!("98765");
        o["metadata"]["managedFields"] =
            serde_json::json!([{"manager": "kube-controller-manager", "operation": "Update"}]);
        o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = serde_json::json!("7");
        o["status"] = serde_json::json!({"observedGeneration": 4, "readyReplicas": 2});
    }
    let spec = Spec::default();
    let input = |objects| PlanInput {
        objects,
        source_namespace: "sante",
        target_namespace: "sante-qc",
        target_cluster: "ovh-bhs5",
        selector: None,
        include_kinds: &[],
        exclude_kinds: &[],
        storage_class_map: &spec.map,
        target_storage_classes: &spec.target_classes,
        image_rewrites: &spec.rewrites,
        target_region: Some("bhs5"),
        patches: &[],
        workload: "migrations/dossier",
        catalog: Catalog::embedded(),
    };
    assert_eq!(
        a.hash,
        build(&input(&running)).hash,
        "status churn is not a new plan"
    );
    let mut edited = running.clone();
    edited[0]["metadata"]["labels"]["edited"] = serde_json::json!("yes");
    assert_ne!(a.hash, build(&input(&edited)).hash, "an edit is a new plan");
}

#[test]
fn usage_counts_requests_by_replicas_volumes_and_load_balancers() {
    let p = plan_with(&Spec::default());
    let planned: Vec<Value> = p.objects.iter().map(|o| o.object.clone()).collect();
    let u = usage(&planned, "csi-cinder-high-speed");
    // dossier-api: 3 × 0.5 CPU, 3 × 1 GiB (priced at the 3 replicas it gets back, not 0);
    // dossier-db: 1 × 1 CPU, 1 × 2 GiB; autre-app and the CronJob request nothing.
    assert!((u.cpu_cores - 2.5).abs() < 1e-9, "{u:?}");
    assert!((u.memory_gib - 5.0).abs() < 1e-9, "{u:?}");
    assert_eq!(u.volumes, vec![("csi-cinder-high-speed".to_string(), 20.0)]);
    assert_eq!(u.load_balancers, 1);
    let source = usage(&objects(), "gp3");
    assert_eq!(source.volumes, vec![("gp3".to_string(), 20.0)]);
}
