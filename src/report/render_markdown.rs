//! The attestation for people: Markdown a compliance officer reads, prints and files next to the
//! signed JSON. Everything shown comes from the attestation; the last section names the JSON file by
//! its SHA-256 and carries the signature, so the printout points at the record that can be checked.

use std::fmt::Write;

use super::model::{
    Attestation, ClusterEvidence, MISMATCH, NOT_RECORDED, TRANSFER_MISSING, VERIFIED,
};
use crate::api::{Finding, Severity};
use crate::controller::transfer::human_bytes;
use crate::cost::money::format_money;

/// The signature section's content.
pub struct SignatureBlock<'a> {
    /// File name of the signed JSON (`dossier.json`).
    pub json_file: &'a str,
    pub json_sha256: &'a str,
    pub signature_b64: &'a str,
}

/// The Markdown rendering. Writing to a `String` cannot fail, so `write!` results are ignored.
pub fn render(a: &Attestation, sig: &SignatureBlock) -> String {
    let mut md = String::new();
    let id = format!("{}/{}", a.workload.namespace, a.workload.name);
    let _ = writeln!(md, "# Residency and cost attestation — `{}`\n", cell(&id));
    if a.conclusion.attested {
        let _ = writeln!(md, "> **ATTESTED.** {}\n", text(&a.conclusion.statement));
    } else {
        let _ = writeln!(md, "> **{}**\n", text(&a.conclusion.statement));
    }
    let _ = writeln!(
        md,
        "Generated {} by {}. The signed record is `{}`; this page is a rendering of it.\n",
        a.generated_at, a.generator, sig.json_file
    );

    section(&mut md, "Conclusion");
    let _ = writeln!(
        md,
        "Attested: **{}**\n",
        if a.conclusion.attested { "yes" } else { "no" }
    );
    if a.conclusion.problems.is_empty() {
        md.push_str("Problems: none.\n\n");
    } else {
        md.push_str("Problems (each one stops the attestation):\n\n");
        for p in &a.conclusion.problems {
            let _ = writeln!(md, "- **{}**", text(p));
        }
        md.push('\n');
    }
    if !a.conclusion.notes.is_empty() {
        md.push_str("Notes:\n\n");
        for n in &a.conclusion.notes {
            let _ = writeln!(md, "- {}", text(n));
        }
        md.push('\n');
    }

    section(&mut md, "Workload");
    table(
        &mut md,
        &["", ""],
        &[
            vec!["Namespace/name".into(), code(&id)],
            vec!["UID".into(), opt_code(&a.workload.uid)],
            vec!["Generation".into(), opt_num(a.workload.generation)],
            vec![
                "Status of generation".into(),
                opt_num(a.workload.observed_generation),
            ],
            vec![
                "Data classification".into(),
                opt(&a.governance.data_classification),
            ],
            vec![
                "Privacy-impact assessment".into(),
                opt(&a.governance.privacy_impact_assessment_ref),
            ],
            vec!["Accountable owner".into(), opt(&a.governance.owner)],
        ],
    );

    section(&mut md, "Migration");
    table(
        &mut md,
        &["", ""],
        &[
            vec!["Mode".into(), cell(&a.migration.mode)],
            vec!["Phase".into(), opt(&a.migration.phase)],
            vec!["Message".into(), opt(&a.migration.message)],
            vec!["Started".into(), opt(&a.migration.started_at)],
            vec!["Cut over".into(), opt(&a.migration.cutover_at)],
            vec!["Completed".into(), opt(&a.migration.completed_at)],
        ],
    );
    if !a.migration.conditions.is_empty() {
        let rows: Vec<Vec<String>> = a
            .migration
            .conditions
            .iter()
            .map(|c| {
                vec![
                    cell(&c.type_),
                    cell(&c.status),
                    cell(&c.reason),
                    cell(&c.message),
                    cell(&c.last_transition_time),
                ]
            })
            .collect();
        table(
            &mut md,
            &["Condition", "Status", "Reason", "Message", "Since"],
            &rows,
        );
    }

    section(&mut md, "Source and target");
    clusters(&mut md, &a.source, &a.target);

    section(&mut md, "Approved plan");
    match &a.plan {
        None => md.push_str("**No plan is recorded.**\n\n"),
        Some(p) => {
            let approval = match (&p.approved_hash, p.approval_matches_plan) {
                (None, _) => "**not recorded**".to_string(),
                (Some(_), true) => "matches the plan hash".to_string(),
                (Some(h), false) => format!("**differs from the plan hash**: {}", code(h)),
            };
            table(
                &mut md,
                &["", ""],
                &[
                    vec!["Plan hash".into(), code(&p.hash)],
                    vec!["Approved hash".into(), approval],
                    vec!["Approved by".into(), opt(&p.approved_by)],
                    vec!["Approved at".into(), opt(&p.approved_at)],
                    vec!["Computed at".into(), opt(&p.computed_at)],
                    vec!["Objects".into(), p.objects.to_string()],
                    vec!["Volumes".into(), p.volumes.to_string()],
                    vec!["Bytes".into(), bytes(p.bytes)],
                    vec![
                        "Transforms".into(),
                        if p.transforms.is_empty() {
                            "none".into()
                        } else {
                            p.transforms
                                .iter()
                                .map(|t| code(t))
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    ],
                ],
            );
            findings(&mut md, "Plan findings", &p.findings);
        }
    }

    section(&mut md, "Volumes");
    if a.volumes.is_empty() {
        md.push_str("The workload has no volumes (none planned, no VolumeTransfer).\n\n");
    } else {
        let rows: Vec<Vec<String>> = a
            .volumes
            .iter()
            .map(|v| {
                let verdict = match v.verification.as_str() {
                    VERIFIED => "verified: hashes match".to_string(),
                    MISMATCH => "**MISMATCH: hashes differ**".to_string(),
                    NOT_RECORDED => "**NOT VERIFIED: hash not recorded**".to_string(),
                    TRANSFER_MISSING => "**NOT VERIFIED: VolumeTransfer missing**".to_string(),
                    other => cell(other),
                };
                vec![
                    code(&v.pvc),
                    code(&v.transfer),
                    opt(&v.phase),
                    format!("{}{}", v.passes, if v.final_pass { " (final)" } else { "" }),
                    if v.pass_wire_bytes.is_empty() {
                        "—".into()
                    } else {
                        v.pass_wire_bytes
                            .iter()
                            .map(|b| bytes(*b))
                            .collect::<Vec<_>>()
                            .join(" + ")
                    },
                    bytes(v.wire_bytes),
                    bytes(v.bytes),
                    opt(&v.completed_at),
                    verdict,
                ]
            })
            .collect();
        table(
            &mut md,
            &[
                "PVC",
                "Transfer",
                "Phase",
                "Passes",
                "Wire bytes per pass",
                "Wire bytes",
                "Bytes",
                "Completed",
                "Verification",
            ],
            &rows,
        );
        md.push_str("Root hashes (BLAKE3 over every file's type, mode, owner, size, link target and content hash, computed independently by the sender from the source volume and by the receiver from the target volume; equal hashes mean equal trees):\n\n");
        let rows: Vec<Vec<String>> = a
            .volumes
            .iter()
            .map(|v| {
                vec![
                    code(&v.pvc),
                    opt(&v.source_claim),
                    opt_code(&v.source_root_hash),
                    opt(&v.target_claim),
                    opt_code(&v.target_root_hash),
                    if v.hashes_match {
                        "yes".into()
                    } else {
                        "**no**".into()
                    },
                ]
            })
            .collect();
        table(
            &mut md,
            &[
                "PVC",
                "Source claim",
                "Source root hash",
                "Target claim",
                "Target root hash",
                "Match",
            ],
            &rows,
        );
    }

    section(&mut md, "Residency");
    let r = &a.residency;
    table(
        &mut md,
        &["", ""],
        &[
            vec![
                "Verdict".into(),
                match r.verdict.as_deref() {
                    Some("Compliant") => "Compliant".into(),
                    Some(v) => format!("**{}**", cell(v)),
                    None => "**not recorded**".into(),
                },
            ],
            vec!["Location".into(), opt(&r.location)],
            vec!["Jurisdiction".into(), opt(&r.jurisdiction)],
            vec!["Policy".into(), opt(&r.policy)],
            vec!["Checked at".into(), opt(&r.checked_at)],
        ],
    );
    match &r.policy_rules {
        Some(p) => {
            let _ = writeln!(
                md,
                "Policy `{}`{}: enforcement {}; allowed locations {}; allowed jurisdictions {}; foreign-controlled providers {}; privacy-impact assessment {}.\n",
                cell(&p.name),
                p.generation
                    .map(|g| format!(" (generation {g})"))
                    .unwrap_or_default(),
                cell(&p.enforcement),
                list(&p.allowed_locations),
                list(&p.allowed_jurisdictions),
                if p.allow_foreign_controlled_providers {
                    "allowed"
                } else {
                    "not allowed"
                },
                if p.require_privacy_impact_assessment {
                    "required"
                } else {
                    "not required"
                },
            );
        }
        None => md.push_str(
            "The policy's rules are not available (the ResidencyPolicy no longer exists).\n\n",
        ),
    }
    if r.findings.is_empty() {
        md.push_str("No residency findings.\n\n");
    } else {
        findings(&mut md, "Residency findings", &r.findings);
    }

    section(&mut md, "Decommissioning of the source");
    let d = &a.decommissioning;
    let _ = writeln!(md, "{}\n", text(&d.statement));
    let _ = writeln!(
        md,
        "Decommissioning requested: {}; retention: `{}`{}.\n",
        if d.requested { "yes" } else { "no" },
        cell(&d.retain_source_for),
        d.retained_until
            .as_ref()
            .map(|u| format!(" (until {u})"))
            .unwrap_or_default()
    );
    if !d.evidence.is_empty() {
        md.push_str("Evidence recorded by the operator:\n\n");
        for line in &d.evidence {
            let _ = writeln!(md, "- {}", text(line));
        }
        md.push('\n');
    }

    section(&mut md, "Cost");
    match &a.cost {
        None => md.push_str("**No cost is recorded.**\n\n"),
        Some(c) => {
            let money = |x: f64| format_money(x, &c.currency);
            let mut rows = Vec::new();
            match &c.estimated {
                Some(e) => {
                    rows.push(vec!["Estimated one-time".into(), money(e.one_time)]);
                    rows.push(vec![
                        "Monthly run-rate before".into(),
                        money(e.monthly_before),
                    ]);
                    rows.push(vec![
                        "Monthly run-rate after".into(),
                        money(e.monthly_after),
                    ]);
                }
                None => rows.push(vec!["Estimate".into(), "not recorded".into()]),
            }
            match &c.actual {
                Some(x) => {
                    rows.push(vec!["Actual one-time".into(), money(x.one_time)]);
                    rows.push(vec!["Actual wire bytes".into(), bytes(x.wire_bytes)]);
                    rows.push(vec![
                        "Both sides ran in parallel".into(),
                        format!("{} s", x.parallel_seconds),
                    ]);
                }
                None => rows.push(vec!["Actual".into(), "**not recorded**".into()]),
            }
            if let Some(b) = &c.budget {
                rows.push(vec!["Budget".into(), format_money(b.amount, &b.currency)]);
            }
            table(&mut md, &["", ""], &rows);
            if !c.items.is_empty() {
                let rows: Vec<Vec<String>> = c
                    .items
                    .iter()
                    .map(|i| {
                        vec![
                            cell(&i.name),
                            format!("{} {}", i.quantity, cell(&i.unit)),
                            i.unit_price.to_string(),
                            money(i.amount),
                            cell(&i.source),
                        ]
                    })
                    .collect();
                table(
                    &mut md,
                    &["Item", "Quantity", "Unit price", "Amount", "Price source"],
                    &rows,
                );
            }
        }
    }

    section(&mut md, "Signature");
    let _ = writeln!(
        md,
        "The JSON file is the signed record: the signature covers its exact bytes. This Markdown is not signed; it names the JSON by its SHA-256.\n"
    );
    table(
        &mut md,
        &["", ""],
        &[
            vec!["Signed file".into(), code(sig.json_file)],
            vec!["SHA-256 of the signed file".into(), code(sig.json_sha256)],
            vec!["Algorithm".into(), cell(&a.signing.algorithm)],
            vec![
                "Key (Secret in the Québec cluster)".into(),
                code(&a.signing.key_secret),
            ],
            vec!["API server".into(), opt(&a.signing.api_server)],
            vec!["Public key (base64)".into(), code(&a.signing.public_key)],
            vec!["Signature (base64)".into(), code(sig.signature_b64)],
        ],
    );
    let _ = writeln!(
        md,
        "To check it, take the public key from the Secret `{}` in the Québec cluster (not from this page) and run:\n\n```sh\nsovereign report verify --json {} --sig {} --public-key <base64 public key>\n```",
        cell(&a.signing.key_secret),
        sig.json_file,
        sig.json_file
            .strip_suffix(".json")
            .map(|s| format!("{s}.sig"))
            .unwrap_or_else(|| "<file>.sig".into()),
    );
    md
}

fn section(md: &mut String, title: &str) {
    let _ = writeln!(md, "## {title}\n");
}

fn table(md: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(
        md,
        "|{}",
        header.iter().map(|_| " --- |").collect::<String>()
    );
    for r in rows {
        let _ = writeln!(md, "| {} |", r.join(" | "));
    }
    md.push('\n');
}

fn clusters(md: &mut String, s: &ClusterEvidence, t: &ClusterEvidence) {
    let both = |f: &dyn Fn(&ClusterEvidence) -> String| vec![f(s), f(t)];
    let row = |label: &str, f: &dyn Fn(&ClusterEvidence) -> String| {
        let mut r = vec![label.to_string()];
        r.extend(both(f));
        r
    };
    let absent = |c: &ClusterEvidence, v: String| {
        if c.found {
            v
        } else {
            "**SovereignCluster not found**".into()
        }
    };
    let rows = vec![
        row("SovereignCluster", &|c| code(&c.cluster)),
        row("Namespace", &|c| code(&c.namespace)),
        row("Provider (declared / observed)", &|c| {
            absent(c, pair(&c.declared.provider, &c.observed.provider))
        }),
        row("Region (declared / observed)", &|c| {
            absent(c, pair(&c.declared.region, &c.observed.region))
        }),
        row("Location (declared / observed)", &|c| {
            absent(c, pair(&c.declared.location, &c.observed.location))
        }),
        row("Jurisdiction (declared / observed)", &|c| {
            absent(c, pair(&c.declared.jurisdiction, &c.observed.jurisdiction))
        }),
        row("Sovereignty class", &|c| absent(c, opt(&c.sovereignty))),
        row("Cluster verdict", &|c| absent(c, opt(&c.verdict))),
        row("Reachable at last probe", &|c| {
            absent(
                c,
                c.reachable
                    .map(|r| if r { "yes" } else { "no" }.to_string())
                    .unwrap_or_else(|| "not recorded".into()),
            )
        }),
        row("Last probed", &|c| absent(c, opt(&c.last_probe_time))),
        row("Kubernetes version", &|c| {
            absent(c, opt(&c.kubernetes_version))
        }),
        row("Node regions / zones", &|c| {
            absent(
                c,
                format!("{} / {}", list(&c.node_regions), list(&c.node_zones)),
            )
        }),
        row("providerID schemes", &|c| {
            absent(c, list(&c.provider_id_schemes))
        }),
        row("Storage provisioners", &|c| {
            absent(c, list(&c.storage_provisioners))
        }),
    ];
    table(md, &["", "Source", "Target"], &rows);
    for c in [s, t] {
        if !c.findings.is_empty() {
            findings(
                md,
                &format!("Findings about cluster `{}`", cell(&c.cluster)),
                &c.findings,
            );
        }
    }
}

fn findings(md: &mut String, title: &str, list: &[Finding]) {
    if list.is_empty() {
        return;
    }
    let _ = writeln!(md, "{title}:\n");
    for f in list {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let field = if f.field.is_empty() {
            String::new()
        } else {
            format!(" `{}`", cell(&f.field))
        };
        let _ = writeln!(
            md,
            "- **{sev}** `{}`{field}: {} — evidence: `{}`",
            cell(&f.object),
            text(&f.rule),
            cell(&f.evidence)
        );
        if !f.remediation.is_empty() {
            let _ = writeln!(md, "  - Remediation: {}", text(&f.remediation));
        }
    }
    md.push('\n');
}

fn pair(declared: &Option<String>, observed: &Option<String>) -> String {
    format!("{} / {}", opt(declared), opt(observed))
}

fn opt(v: &Option<String>) -> String {
    v.as_deref()
        .map(cell)
        .unwrap_or_else(|| "not recorded".into())
}

fn opt_code(v: &Option<String>) -> String {
    v.as_deref()
        .map(code)
        .unwrap_or_else(|| "**not recorded**".into())
}

fn opt_num(v: Option<i64>) -> String {
    v.map(|n| n.to_string())
        .unwrap_or_else(|| "not recorded".into())
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none recorded".into()
    } else {
        v.iter().map(|s| cell(s)).collect::<Vec<_>>().join(", ")
    }
}

fn bytes(b: i64) -> String {
    if b < 1024 {
        format!("{b} B")
    } else {
        format!("{} ({b} B)", human_bytes(b))
    }
}

fn code(s: &str) -> String {
    // A backtick inside would end the code span; values from the cluster are not trusted to be tidy.
    format!("`{}`", cell(s).replace('`', "'"))
}

/// A value safe inside a table cell: a `|` would start a new column and a newline a new row.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Free text on its own line: newlines folded so that a message cannot start a heading or a list.
fn text(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}
