//! `sovereign report`: the signed residency-and-cost attestation of one workload, read from the live
//! operator cluster; `sovereign report verify`: checks an attestation's signature offline.
//!
//! Exit codes. `report`: 0 the report attests a completed, compliant move with every volume's root
//! hashes matching; 1 the report was written but attests a problem (not completed, not compliant,
//! hashes missing or different); 2 nothing was written (bad input, workload not found, cluster
//! unreachable, signing key unusable). `report verify`: 0 valid, 1 invalid, 2 bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::api::workload::keys;
use crate::api::{ResidencyPolicy, SovereignCluster, SovereignWorkload, VolumeTransfer};
use crate::report::render_markdown::SignatureBlock;
use crate::report::sign::{self, SigningKey};
use crate::report::{Attestation, Inputs, Provenance, Signer, render_json, render_markdown};

/// Where the signing key is kept unless `--signing-key-secret` says otherwise.
pub const DEFAULT_KEY_SECRET: &str = "sovereign-system/sovereign-report-signing-key";
/// The Secret's key holding the PKCS#8 private key, as `ring` generates it.
pub const PRIVATE_KEY: &str = "ed25519.pk8";
/// The Secret's key holding the raw public key, base64: what a verifier copies.
pub const PUBLIC_KEY: &str = "ed25519.pub";

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    #[command(flatten)]
    pub make: MakeArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// Check that an attestation's JSON is exactly what was signed: exit 0 valid, 1 invalid, 2 bad input.
    Verify(VerifyArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    Md,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct MakeArgs {
    /// The SovereignWorkload to report on.
    #[arg(required = true)]
    pub workload: Option<String>,
    /// Namespace of the SovereignWorkload (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Kubeconfig of the operator's cluster (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Directory the `<workload>.json`, `.md` and `.sig` files are written to.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// `NAMESPACE/NAME` of the Secret holding the Ed25519 signing key in the operator's (Québec)
    /// cluster; created with a new key when it does not exist.
    #[arg(long, default_value = DEFAULT_KEY_SECRET)]
    pub signing_key_secret: String,
    /// Print the signed JSON or the Markdown instead of writing files.
    #[arg(long, value_enum)]
    pub stdout: Option<Stdout>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The attestation, as written by `sovereign report`.
    #[arg(long)]
    pub json: PathBuf,
    /// The `.sig` file written with it (base64 signature).
    #[arg(long)]
    pub sig: PathBuf,
    /// The public key, base64 (or hex) of the raw 32 bytes, or `@FILE` to read it from a file;
    /// take it from the key Secret's `ed25519.pub` in the Québec cluster.
    #[arg(long)]
    pub public_key: String,
}

/// Why no report was written. Each names the object, Secret, file or API server concerned.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot use the kubeconfig{}: {why}", context.as_ref().map(|c| format!(" (context {c})")).unwrap_or_default())]
    Kubeconfig {
        context: Option<String>,
        why: String,
    },
    #[error("cannot reach the API server at {server} to read {what}: {source}")]
    Unreachable {
        server: String,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{server} refused to let this kubeconfig {verb} {what}: {message}")]
    Forbidden {
        server: String,
        verb: &'static str,
        what: String,
        message: String,
    },
    #[error(
        "the API server at {server} does not serve SovereignWorkloads: the sovereign.dev CRDs are not installed there (is this the operator's cluster?)"
    )]
    CrdsMissing { server: String },
    #[error(
        "SovereignWorkload {namespace}/{name} not found at {server}{}",
        hint(present)
    )]
    NotFound {
        namespace: String,
        name: String,
        server: String,
        present: Vec<String>,
    },
    #[error("{server} answered an error reading {what}: {source}")]
    Api {
        server: String,
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("signing key Secret {secret}: {why}")]
    SigningKey { secret: String, why: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialize the attestation: {0}")]
    Serialize(#[from] serde_json::Error),
}

fn hint(present: &[String]) -> String {
    if present.is_empty() {
        " (the namespace has no SovereignWorkload)".into()
    } else {
        format!(" (the namespace has: {})", present.join(", "))
    }
}

/// Reads everything, signs, writes; the exit code carries what the report attests.
pub async fn run(args: &MakeArgs) -> ExitCode {
    match make(args).await {
        Ok(made) => {
            print!("{}", made.summary);
            ExitCode::from(if made.attested { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

struct Made {
    attested: bool,
    /// What is printed: the paths and the verdict, or the document itself with `--stdout`.
    summary: String,
}

async fn make(args: &MakeArgs) -> Result<Made, ReportError> {
    let name = args
        .workload
        .clone()
        .ok_or_else(|| ReportError::Usage("name the SovereignWorkload to report on".into()))?;
    let (key_ns, key_name) = split_secret(&args.signing_key_secret)?;
    let (client, server) = connect(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());

    let workload = read_workload(&client, &server, &namespace, &name).await?;
    let transfers = read_transfers(&client, &server, &workload).await?;
    let clusters: Api<SovereignCluster> = Api::all(client.clone());
    let source = get_opt(
        &clusters,
        &workload.spec.source.cluster,
        &server,
        "SovereignCluster",
    )
    .await?;
    let target = get_opt(
        &clusters,
        &workload.spec.target.cluster,
        &server,
        "SovereignCluster",
    )
    .await?;
    let policies: Api<ResidencyPolicy> = Api::all(client.clone());
    let policy = get_opt(
        &policies,
        &workload.spec.residency_policy,
        &server,
        "ResidencyPolicy",
    )
    .await?;

    let (key, created) = signing_key(&client, &server, &key_ns, &key_name).await?;
    let secret = format!("{key_ns}/{key_name}");
    let provenance = Provenance {
        generated_at: jiff::Timestamp::now(),
        signer: Signer {
            algorithm: sign::ALGORITHM.into(),
            key_secret: secret.clone(),
            public_key: key.public_key_b64(),
            api_server: Some(server.clone()),
        },
    };
    let attestation = crate::report::build(
        &Inputs {
            workload: &workload,
            transfers: &transfers,
            source: source.as_ref(),
            target: target.as_ref(),
            policy: policy.as_ref(),
        },
        &provenance,
    );
    let signed = Signed::new(&attestation, &key, &name)?;
    let attested = attestation.conclusion.attested;
    let mut summary = String::new();
    if created {
        // On stderr: with --stdout the document alone goes to stdout.
        eprintln!(
            "created signing key Secret {secret} (Ed25519, public key {})",
            key.public_key_b64()
        );
    }
    match args.stdout {
        Some(Stdout::Json) => {
            summary.push_str(&String::from_utf8_lossy(&signed.json));
        }
        Some(Stdout::Md) => summary.push_str(&signed.markdown),
        None => {
            let paths = signed.write(&args.out)?;
            for p in &paths {
                summary.push_str(&format!("wrote {}\n", p.display()));
            }
            summary.push_str(&format!(
                "signed with Ed25519 key {secret} (public key {}); JSON sha256 {}\n",
                key.public_key_b64(),
                signed.sha256
            ));
            summary.push_str(&verdict_lines(&attestation));
        }
    }
    Ok(Made { attested, summary })
}

/// The JSON bytes, their signature and the Markdown that names both.
struct Signed {
    file_stem: String,
    json: Vec<u8>,
    sha256: String,
    signature: String,
    markdown: String,
}

impl Signed {
    fn new(a: &Attestation, key: &SigningKey, file_stem: &str) -> Result<Signed, ReportError> {
        let json = render_json::to_bytes(a)?;
        let sha256 = render_json::sha256_hex(&json);
        let signature = key.sign_b64(&json);
        let json_file = format!("{file_stem}.json");
        let markdown = render_markdown::render(
            a,
            &SignatureBlock {
                json_file: &json_file,
                json_sha256: &sha256,
                signature_b64: &signature,
            },
        );
        Ok(Signed {
            file_stem: file_stem.to_string(),
            json,
            sha256,
            signature,
            markdown,
        })
    }

    /// Writes the three files, each through a temporary file and a rename, so that a reader never
    /// sees a new JSON next to an old signature.
    fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = [
            ("json", self.json.clone()),
            ("md", self.markdown.clone().into_bytes()),
            ("sig", format!("{}\n", self.signature).into_bytes()),
        ];
        let mut paths = Vec::new();
        for (ext, bytes) in files {
            let path = dir.join(format!("{}.{ext}", self.file_stem));
            let tmp = dir.join(format!(".{}.{ext}.tmp", self.file_stem));
            std::fs::write(&tmp, &bytes)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|source| ReportError::Write {
                    path: path.clone(),
                    source,
                })?;
            paths.push(path);
        }
        Ok(paths)
    }
}

fn verdict_lines(a: &Attestation) -> String {
    let mut out = if a.conclusion.attested {
        format!("ATTESTED: {}\n", a.conclusion.statement)
    } else {
        format!("NOT ATTESTED: {}\n", a.conclusion.statement)
    };
    for p in &a.conclusion.problems {
        out.push_str(&format!("  problem: {p}\n"));
    }
    out
}

fn split_secret(s: &str) -> Result<(String, String), ReportError> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(ReportError::Usage(format!(
            "--signing-key-secret must be NAMESPACE/NAME, got {s:?}"
        ))),
    }
}

/// A client for the operator's cluster and its server URL (named in errors and in the report).
async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(Client, String), ReportError> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    let bad = |why: String| ReportError::Kubeconfig {
        context: context.map(String::from),
        why,
    };
    let config = match kubeconfig {
        Some(path) => {
            let k = Kubeconfig::read_from(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(k, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    }
    .map_err(|e| bad(e.to_string()))?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    let client = Client::try_from(config).map_err(|e| bad(e.to_string()))?;
    Ok((client, server))
}

/// Sorts a kube error: forbidden and unreachable are told apart from other API errors, because
/// each asks a different thing of the person running the command.
fn classify(e: kube::Error, server: &str, verb: &'static str, what: String) -> ReportError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => ReportError::Forbidden {
            server: server.to_string(),
            verb,
            what,
            message: s.message.clone(),
        },
        e @ kube::Error::Api(_) => ReportError::Api {
            server: server.to_string(),
            what,
            source: e,
        },
        e => ReportError::Unreachable {
            server: server.to_string(),
            what,
            source: e,
        },
    }
}

async fn read_workload(
    client: &Client,
    server: &str,
    namespace: &str,
    name: &str,
) -> Result<SovereignWorkload, ReportError> {
    let api: Api<SovereignWorkload> = Api::namespaced(client.clone(), namespace);
    let what = || format!("SovereignWorkload {namespace}/{name}");
    if let Some(w) = api
        .get_opt(name)
        .await
        .map_err(|e| classify(e, server, "read", what()))?
    {
        return Ok(w);
    }
    // A 404 is also what an API server without the CRDs answers; listing tells the two apart and
    // names the workloads that do exist, for a mistyped name.
    match api.list(&ListParams::default().limit(20)).await {
        Ok(list) => Err(ReportError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
            server: server.to_string(),
            present: list.items.iter().map(|w| w.name_any()).collect(),
        }),
        Err(kube::Error::Api(s)) if s.is_not_found() => Err(ReportError::CrdsMissing {
            server: server.to_string(),
        }),
        Err(e) => Err(classify(e, server, "list", what())),
    }
}

/// The workload's transfers: labelled with its name and owned by its uid (a label alone could be
/// copied onto anything; evidence must come from the transfers the operator made for it).
async fn read_transfers(
    client: &Client,
    server: &str,
    w: &SovereignWorkload,
) -> Result<Vec<VolumeTransfer>, ReportError> {
    let ns = w.namespace().unwrap_or_default();
    let api: Api<VolumeTransfer> = Api::namespaced(client.clone(), &ns);
    let selector = format!("{}={}", keys::WORKLOAD, w.name_any());
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            classify(
                e,
                server,
                "list",
                format!("VolumeTransfers in {ns} ({selector})"),
            )
        })?;
    let uid = w.uid();
    Ok(list
        .items
        .into_iter()
        .filter(|vt| {
            uid.as_deref()
                .is_some_and(|u| vt.owner_references().iter().any(|o| o.uid == u))
        })
        .collect())
}

async fn get_opt<K>(
    api: &Api<K>,
    name: &str,
    server: &str,
    kind: &str,
) -> Result<Option<K>, ReportError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|e| classify(e, server, "read", format!("{kind} {name}")))
}

/// The signing key from its Secret, created with a new key when the Secret does not exist.
/// Returns whether it was created. An existing Secret that does not hold a usable key is an error:
/// it is never overwritten (earlier reports were signed with whatever it held).
async fn signing_key(
    client: &Client,
    server: &str,
    namespace: &str,
    name: &str,
) -> Result<(SigningKey, bool), ReportError> {
    let secret = format!("{namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let what = || format!("Secret {secret}");
    if let Some(s) = api
        .get_opt(name)
        .await
        .map_err(|e| classify(e, server, "read", what()))?
    {
        return Ok((load_key(&s, &secret)?, false));
    }
    let (key, pkcs8) = SigningKey::generate().map_err(|e| ReportError::SigningKey {
        secret: secret.clone(),
        why: e.to_string(),
    })?;
    let new = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [
                    (keys::MANAGED_BY.to_string(), keys::MANAGER.to_string()),
                    (
                        "app.kubernetes.io/component".to_string(),
                        "report-signing-key".to_string(),
                    ),
                ]
                .into(),
            ),
            annotations: Some(
                [(
                    "sovereign.dev/description".to_string(),
                    "Ed25519 key that signs `sovereign report` attestations. Never edit: create a new Secret to rotate; reports name the key they were signed with.".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        // Immutable: a key that changed under earlier reports would make them unverifiable.
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(
            [
                (PRIVATE_KEY.to_string(), ByteString(pkcs8)),
                (
                    PUBLIC_KEY.to_string(),
                    ByteString(key.public_key_b64().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &new).await {
        Ok(_) => Ok((key, true)),
        // Another `sovereign report` created it first: use that one, never a second key.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
            match api
                .get_opt(name)
                .await
                .map_err(|e| classify(e, server, "read", what()))?
            {
                Some(s) => Ok((load_key(&s, &secret)?, false)),
                None => Err(ReportError::SigningKey {
                    secret,
                    why: "it was reported as existing, then could not be found".into(),
                }),
            }
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Err(ReportError::SigningKey {
            secret,
            why: format!(
                "it does not exist and cannot be created: namespace {namespace} does not exist (create it, or choose another with --signing-key-secret)"
            ),
        }),
        Err(e) => Err(classify(e, server, "create", what())),
    }
}

fn load_key(s: &Secret, secret: &str) -> Result<SigningKey, ReportError> {
    let bad = |why: String| ReportError::SigningKey {
        secret: secret.to_string(),
        why,
    };
    let data = s.data.clone().unwrap_or_default();
    let Some(pkcs8) = data.get(PRIVATE_KEY) else {
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        return Err(bad(format!(
            "it has no key {PRIVATE_KEY:?} (keys: {}); it is not a signing key Secret, choose another with --signing-key-secret",
            if keys.is_empty() {
                "none".to_string()
            } else {
                keys.join(", ")
            }
        )));
    };
    let key = SigningKey::from_pkcs8(&pkcs8.0, &format!("key {PRIVATE_KEY:?}"))
        .map_err(|e| bad(e.to_string()))?;
    // The published public key must be the private key's: verifiers copy it from here.
    if let Some(published) = data.get(PUBLIC_KEY) {
        let text = String::from_utf8_lossy(&published.0);
        let public = sign::parse_public_key(&text, &format!("key {PUBLIC_KEY:?}"))
            .map_err(|e| bad(e.to_string()))?;
        if public != key.public_key() {
            return Err(bad(format!(
                "{PUBLIC_KEY:?} is not the public half of {PRIVATE_KEY:?}: reports signed with it could not be verified"
            )));
        }
    }
    Ok(key)
}

/// `sovereign report verify`.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    match check(args) {
        Ok(Check {
            valid: true,
            message,
        }) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(Check { message, .. }) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

struct Check {
    valid: bool,
    message: String,
}

fn check(args: &VerifyArgs) -> Result<Check, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let json = read(&args.json)?;
    let sig_text = String::from_utf8(read(&args.sig)?)
        .map_err(|_| format!("{} is not text (a base64 signature)", args.sig.display()))?;
    let signature = sign::parse_signature(&sig_text, &args.sig.display().to_string())
        .map_err(|e| e.to_string())?;
    let (key_text, key_from) = match args.public_key.strip_prefix('@') {
        Some(path) => {
            let bytes = read(Path::new(path))?;
            (
                String::from_utf8_lossy(&bytes).into_owned(),
                path.to_string(),
            )
        }
        None => (args.public_key.clone(), "--public-key".to_string()),
    };
    let public = sign::parse_public_key(&key_text, &key_from).map_err(|e| e.to_string())?;
    let sha = render_json::sha256_hex(&json);
    // What the file says about itself: only read after the signature decides, and only to help.
    let claimed: Option<Attestation> = serde_json::from_slice(&json).ok();
    if sign::verify(&public, &json, &signature) {
        let what = claimed
            .map(|a| {
                format!(
                    "\n{} {}/{}: {}",
                    if a.conclusion.attested {
                        "ATTESTED"
                    } else {
                        "NOT ATTESTED"
                    },
                    a.workload.namespace,
                    a.workload.name,
                    a.conclusion.statement
                )
            })
            .unwrap_or_default();
        return Ok(Check {
            valid: true,
            message: format!(
                "signature valid: {} (sha256 {sha}) is exactly what the key signed{what}",
                args.json.display()
            ),
        });
    }
    let named_key = claimed
        .map(|a| a.signing.public_key)
        .filter(|k| sign::parse_public_key(k, "").ok().as_deref() != Some(public.as_slice()))
        .map(|k| {
            format!(" (the file names key {k}, not the one given: was it signed with another key?)")
        })
        .unwrap_or_default();
    Ok(Check {
        valid: false,
        message: format!(
            "signature INVALID: {} (sha256 {sha}) was changed after it was signed, or {} is not the signature of this key{named_key}",
            args.json.display(),
            args.sig.display()
        ),
    })
}
