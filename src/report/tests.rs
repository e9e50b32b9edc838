//! The attestation built and rendered from hand-built objects: what each kind of history makes the
//! report say, and that the signature covers the JSON bytes.

use serde_json::json;

use super::model::{Inputs, Provenance, Signer, build};
use super::render_markdown::{SignatureBlock, render};
use super::sign::{SigningKey, parse_public_key, parse_signature, verify};
use super::{Attestation, render_json};
use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload, VolumeTransfer};

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const PLAN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn workload(status: serde_json::Value, cutover: serde_json::Value) -> SovereignWorkload {
    serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignWorkload",
        "metadata": {"name": "dossier-sante", "namespace": "migrations", "uid": "uid-1234", "generation": 3},
        "spec": {
            "source": {"cluster": "aws-us-east-1", "namespace": "sante"},
            "target": {"cluster": "qc-cloud", "namespace": "sante-qc"},
            "mode": "Move",
            "cutover": cutover,
            "residencyPolicy": "quebec-strict",
            "governance": {"dataClassification": "Confidential", "privacyImpactAssessmentRef": "EFVP-2026-0412", "owner": "Direction des TI"},
            "cost": {"currency": "CAD", "budget": {"amount": 5000.0, "currency": "CAD"}}
        },
        "status": status
    }))
    .expect("workload")
}

fn completed_status() -> serde_json::Value {
    json!({
        "phase": "Completed", "observedGeneration": 3,
        "message": "moved: the target serves with 2 verified volume(s)",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Completed", "message": "moved", "lastTransitionTime": "2026-03-02T10:00:00Z"}],
        "plan": {"hash": PLAN, "objects": 16, "volumes": 2, "bytes": 3145728, "transforms": ["strip-server-fields", "rewrite-images"],
                 "findings": [{"object": "Service/sante/web", "evidence": "service.beta.kubernetes.io/aws-load-balancer-type", "rule": "cloud load-balancer annotation removed", "severity": "Info"}],
                 "approvedHash": PLAN, "approvedBy": "alice@sante.gouv.qc.ca", "approvedAt": "2026-03-01T09:00:00Z"},
        "volumes": [{"pvc": "data", "transfer": "dossier-sante-data"}, {"pvc": "uploads", "transfer": "dossier-sante-uploads"}],
        "residency": {"verdict": "Compliant", "location": "CA-QC", "jurisdiction": "CA", "policy": "quebec-strict", "checkedAt": "2026-03-02T10:05:00Z",
                      "findings": [{"object": "Pod/sante-qc/web-0", "field": "spec.nodeName", "evidence": "ca-east-1", "rule": "node region inside CA-QC", "severity": "Info", "remediation": "nothing to do"}]},
        "cost": {"currency": "CAD", "estimated": {"oneTime": 12.5, "monthlyBefore": 900.0, "monthlyAfter": 640.25}, "actual": {"oneTime": 3.1, "wireBytes": 3000, "parallelSeconds": 3600},
                 "items": [{"name": "egress", "quantity": 0.003, "unit": "GiB", "unitPrice": 0.09, "amount": 0.0003, "source": "catalog 2026-01"}]},
        "startedAt": "2026-03-01T08:00:00Z", "cutoverAt": "2026-03-02T09:50:00Z", "completedAt": "2026-03-02T10:00:00Z"
    })
}

/// An empty hash stands for one not recorded.
fn transfer(pvc: &str, phase: &str, source_hash: &str, target_hash: &str) -> VolumeTransfer {
    let mut vt: VolumeTransfer = serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "VolumeTransfer",
        "metadata": {"name": format!("dossier-sante-{pvc}"), "namespace": "migrations"},
        "spec": {"workload": "dossier-sante",
                 "source": {"cluster": "aws-us-east-1", "namespace": "sante", "pvc": pvc},
                 "target": {"cluster": "qc-cloud", "namespace": "sante-qc", "pvc": pvc}},
        "status": {"phase": phase, "pass": 2, "finalPass": true, "bytesDone": 1048576, "bytesTotal": 1048576, "filesTotal": 12,
                   "wireBytes": 1500, "passWireBytes": [1400, 100],
                   "sourceRootHash": source_hash, "targetRootHash": target_hash, "completedAt": "2026-03-02T09:55:00Z"}
    }))
    .expect("transfer");
    if let Some(s) = vt.status.as_mut() {
        s.source_root_hash = s.source_root_hash.take().filter(|h| !h.is_empty());
        s.target_root_hash = s.target_root_hash.take().filter(|h| !h.is_empty());
    }
    vt
}

fn cluster(name: &str, provider: &str, location: &str, jurisdiction: &str) -> SovereignCluster {
    let (country, province) = location.split_once('-').unwrap_or((location, ""));
    serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "SovereignCluster",
        "metadata": {"name": name},
        "spec": {"inCluster": true, "provider": provider, "region": "r1",
                 "location": {"country": country, "province": province}, "jurisdiction": jurisdiction},
        "status": {"reachable": true, "provider": provider, "region": "r1", "location": location, "jurisdiction": jurisdiction,
                   "sovereignty": if jurisdiction == "CA" { "Sovereign" } else { "ForeignControlled" },
                   "verdict": if jurisdiction == "CA" { "Compliant" } else { "NonCompliant" },
                   "nodes": {"count": 3, "regions": ["r1"], "zones": ["r1a"], "providerIdSchemes": [provider]},
                   "lastProbeTime": "2026-03-02T10:04:00Z"}
    }))
    .expect("cluster")
}

fn policy() -> ResidencyPolicy {
    serde_json::from_value(json!({
        "apiVersion": "sovereign.dev/v1alpha1", "kind": "ResidencyPolicy",
        "metadata": {"name": "quebec-strict", "generation": 1},
        "spec": {"enforcement": "Block", "allowedLocations": ["CA-QC"], "allowedJurisdictions": ["CA"], "requirePrivacyImpactAssessment": true}
    }))
    .expect("policy")
}

fn provenance() -> Provenance {
    Provenance {
        generated_at: "2026-03-03T12:00:00Z".parse().expect("ts"),
        signer: Signer {
            algorithm: "Ed25519".into(),
            key_secret: "sovereign-system/sovereign-report-signing-key".into(),
            public_key: "AAAA".into(),
            api_server: Some("https://qc.example".into()),
        },
    }
}

fn attest(w: &SovereignWorkload, transfers: &[VolumeTransfer]) -> Attestation {
    let (s, t, p) = (
        cluster("aws-us-east-1", "aws", "US-VA", "US"),
        cluster("qc-cloud", "micrologic", "CA-QC", "CA"),
        policy(),
    );
    build(
        &Inputs {
            workload: w,
            transfers,
            source: Some(&s),
            target: Some(&t),
            policy: Some(&p),
        },
        &provenance(),
    )
}

fn md(a: &Attestation) -> String {
    render(
        a,
        &SignatureBlock {
            json_file: "dossier-sante.json",
            json_sha256: "feed",
            signature_b64: "c2ln",
        },
    )
}

fn matching() -> Vec<VolumeTransfer> {
    vec![
        transfer("data", "Completed", HASH_A, HASH_A),
        transfer("uploads", "Completed", HASH_B, HASH_B),
    ]
}

#[test]
fn a_completed_compliant_verified_move_is_attested_with_its_evidence() {
    let w = workload(completed_status(), json!({"retainSourceFor": "168h"}));
    let a = attest(&w, &matching());
    assert!(a.conclusion.attested, "{:?}", a.conclusion);
    assert!(a.conclusion.problems.is_empty());
    assert!(
        a.conclusion.statement.contains("migrations/dossier-sante was moved from aws-us-east-1 (aws, location US-VA, jurisdiction US) to qc-cloud (micrologic, location CA-QC, jurisdiction CA)"),
        "{}",
        a.conclusion.statement
    );
    assert_eq!(a.workload.uid.as_deref(), Some("uid-1234"));
    assert_eq!(a.workload.generation, Some(3));
    assert_eq!(
        a.governance.privacy_impact_assessment_ref.as_deref(),
        Some("EFVP-2026-0412")
    );
    assert_eq!(
        a.migration.cutover_at.as_deref(),
        Some("2026-03-02T09:50:00Z")
    );
    assert_eq!(a.target.observed.jurisdiction.as_deref(), Some("CA"));
    assert_eq!(a.target.sovereignty.as_deref(), Some("Sovereign"));
    assert_eq!(a.source.declared.location.as_deref(), Some("US-VA"));
    let plan = a.plan.as_ref().expect("plan");
    assert!(plan.approval_matches_plan);
    assert_eq!(plan.approved_by.as_deref(), Some("alice@sante.gouv.qc.ca"));
    assert_eq!(a.volumes.len(), 2);
    assert!(
        a.volumes
            .iter()
            .all(|v| v.hashes_match && v.verification == "Verified")
    );
    assert_eq!(a.volumes[0].pass_wire_bytes, vec![1400, 100]);
    assert_eq!(
        a.volumes[0].source_claim.as_deref(),
        Some("aws-us-east-1/sante/data")
    );
    // The source is kept with its data: said, though it does not stop the attestation.
    assert_eq!(
        a.decommissioning.retained_until.as_deref(),
        Some("2026-03-09T10:00:00Z")
    );
    assert!(
        a.decommissioning
            .statement
            .contains("decommissioning was not requested"),
        "{}",
        a.decommissioning.statement
    );
    assert!(
        a.conclusion
            .notes
            .iter()
            .any(|n| n.contains("retained, scaled to zero, until at least 2026-03-09T10:00:00Z"))
    );
    let cost = a.cost.as_ref().expect("cost");
    assert_eq!(cost.actual.as_ref().map(|c| c.wire_bytes), Some(3000));
    assert_eq!(cost.budget.as_ref().map(|b| b.amount), Some(5000.0));

    let text = md(&a);
    assert!(text.contains("> **ATTESTED.**"), "{text}");
    assert!(
        text.contains("| Jurisdiction (declared / observed) | US / US | CA / CA |"),
        "{text}"
    );
    assert!(text.contains(&format!("`{HASH_A}`")), "{text}");
    assert!(text.contains("verified: hashes match"), "{text}");
    assert!(text.contains("(1400 B) + 100 B"), "{text}");
    assert!(
        text.contains("| Monthly run-rate after | 640.25 CAD |"),
        "{text}"
    );
    assert!(text.contains("Remediation: nothing to do"), "{text}");
    assert!(
        text.contains("| SHA-256 of the signed file | `feed` |"),
        "{text}"
    );
    assert!(
        text.contains("sovereign report verify --json dossier-sante.json --sig dossier-sante.sig"),
        "{text}"
    );
    assert!(!text.contains("NOT COMPLETED"), "{text}");
}

#[test]
fn a_migration_not_completed_says_it_is_not_an_attestation() {
    let mut status = completed_status();
    status["phase"] = json!("Replicating");
    status.as_object_mut().map(|s| {
        s.remove("completedAt");
        s.remove("cutoverAt")
    });
    let w = workload(status, json!({}));
    let transfers = vec![
        transfer("data", "Synced", HASH_A, HASH_A),
        transfer("uploads", "Transferring", HASH_B, ""),
    ];
    let a = attest(&w, &transfers);
    assert!(!a.conclusion.attested);
    assert!(
        a.conclusion
            .statement
            .starts_with("NOT COMPLETED — this is not an attestation of a finished move"),
        "{}",
        a.conclusion.statement
    );
    assert!(a.conclusion.problems[0].contains("phase Replicating"));
    assert!(
        a.decommissioning
            .statement
            .contains("still holds the workload and its data")
    );
    assert_eq!(a.migration.completed_at, None);
    // A pass under way has no target hash yet: not verified. The pre-copy that matched is only a
    // note while the move is under way.
    assert!(
        a.conclusion
            .problems
            .iter()
            .any(|p| p.contains("volume uploads: the target root hash is not recorded"))
    );
    assert!(
        a.conclusion
            .notes
            .iter()
            .any(|n| n.contains("volume data") && n.contains("phase Synced"))
    );
    let text = md(&a);
    assert!(
        text.starts_with(
            "# Residency and cost attestation — `migrations/dossier-sante`\n\n> **NOT COMPLETED"
        ),
        "{text}"
    );
    assert!(!text.contains("ATTESTED."), "{text}");
}

#[test]
fn differing_root_hashes_are_flagged_and_stop_the_attestation() {
    let w = workload(completed_status(), json!({}));
    let transfers = vec![
        transfer("data", "Completed", HASH_A, HASH_A),
        transfer("uploads", "Completed", HASH_A, HASH_B),
    ];
    let a = attest(&w, &transfers);
    assert!(!a.conclusion.attested);
    assert!(a.conclusion.statement.starts_with("PROBLEMS FOUND"));
    let bad = a
        .volumes
        .iter()
        .find(|v| v.pvc == "uploads")
        .expect("uploads");
    assert!(!bad.hashes_match);
    assert_eq!(bad.verification, "Mismatch");
    assert!(
        a.conclusion
            .problems
            .iter()
            .any(|p| p.contains("volume uploads") && p.contains("DIFFER")),
        "{:?}",
        a.conclusion.problems
    );
    let text = md(&a);
    assert!(text.contains("**MISMATCH: hashes differ**"), "{text}");
    assert!(text.contains("| **no** |"), "{text}");
}

#[test]
fn missing_evidence_is_named_not_filled_in() {
    // One transfer the status lists is gone, the other has no target hash; no cost, no residency.
    let mut status = completed_status();
    let s = status.as_object_mut().expect("object");
    s.remove("residency");
    s.remove("cost");
    let w = workload(status, json!({}));
    let mut half = transfer("data", "Completed", HASH_A, HASH_A);
    if let Some(st) = half.status.as_mut() {
        st.target_root_hash = None;
    }
    let s = cluster("aws-us-east-1", "aws", "US-VA", "US");
    let a = build(
        &Inputs {
            workload: &w,
            transfers: &[half],
            source: Some(&s),
            target: None,
            policy: None,
        },
        &provenance(),
    );
    assert!(!a.conclusion.attested);
    let problems = a.conclusion.problems.join("\n");
    for want in [
        "volume data: the target root hash is not recorded",
        "volume uploads: its VolumeTransfer dossier-sante-uploads does not exist",
        "no residency verdict is recorded",
        "the target SovereignCluster qc-cloud does not exist",
    ] {
        assert!(problems.contains(want), "{want}\n{problems}");
    }
    let notes = a.conclusion.notes.join("\n");
    assert!(notes.contains("no cost is recorded"), "{notes}");
    assert!(
        notes.contains("ResidencyPolicy quebec-strict does not exist"),
        "{notes}"
    );
    let text = md(&a);
    assert!(text.contains("**SovereignCluster not found**"), "{text}");
    assert!(
        text.contains("**NOT VERIFIED: VolumeTransfer missing**"),
        "{text}"
    );
    assert!(text.contains("**No cost is recorded.**"), "{text}");
}

#[test]
fn a_decommissioned_source_carries_the_operators_evidence() {
    let mut status = completed_status();
    status["decommissioned"] = json!([
        "Deployment/web (uid u-1) deleted from the source",
        "PersistentVolume/pv-9 (claim data) has reclaimPolicy Retain: its disk stays in the source cluster until someone deletes it",
        "PersistentVolumeClaim/data (uid u-2) deleted from the source",
    ]);
    let w = workload(
        status,
        json!({"decommissionSource": true, "retainSourceFor": "0s"}),
    );
    let a = attest(&w, &matching());
    assert!(a.conclusion.attested, "{:?}", a.conclusion.problems);
    assert!(a.decommissioning.requested);
    assert_eq!(a.decommissioning.evidence.len(), 3);
    assert!(
        a.decommissioning
            .statement
            .starts_with("The source (aws-us-east-1, jurisdiction US) was decommissioned"),
        "{}",
        a.decommissioning.statement
    );
    // What decommissioning left behind is raised to the conclusion.
    assert!(
        a.conclusion
            .notes
            .iter()
            .any(|n| n.contains("left something behind") && n.contains("pv-9"))
    );
    let text = md(&a);
    assert!(
        text.contains("- Deployment/web (uid u-1) deleted from the source"),
        "{text}"
    );
}

#[test]
fn the_same_history_gives_the_same_signed_bytes_and_tampering_is_detected() {
    let w = workload(completed_status(), json!({}));
    let a = attest(&w, &matching());
    let bytes = render_json::to_bytes(&a).expect("json");
    assert_eq!(
        bytes,
        render_json::to_bytes(&attest(&w, &matching())).expect("json"),
        "deterministic"
    );
    let back: Attestation = serde_json::from_slice(&bytes).expect("round trip");
    assert_eq!(back, a);
    // Optional evidence is written as null, not left out: a reader sees what is missing.
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("value");
    assert!(v["migration"].get("startedAt").is_some());

    let (key, _) = SigningKey::generate().expect("key");
    let sig = parse_signature(&key.sign_b64(&bytes), "sig").expect("sig");
    let public = parse_public_key(&key.public_key_b64(), "pk").expect("pk");
    assert!(verify(&public, &bytes, &sig));
    // Change the verdict in the file: one byte, and the signature no longer holds.
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    let tampered = text.replacen("\"attested\": true", "\"attested\": tru3", 1);
    assert_ne!(tampered, text);
    assert!(!verify(&public, tampered.as_bytes(), &sig));
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    assert!(!verify(&public, &flipped, &sig));
}
