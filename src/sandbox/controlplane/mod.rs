//! One cluster's upstream control plane as local processes: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler, each under the supervisor, all bound to the
//! cluster's own loopback address `127.A.0.1` (so two clusters never compete for a port), with
//! the certificates of `pki`, the service-account signing key, a Metadata-level audit log, and
//! the flags a managed cluster runs with (what `hack/local-up-cluster.sh` and kubeadm pass,
//! adjusted for loopback). Data, certificates, logs and kubeconfigs live under the cluster's
//! directory; starting again on the same directory resumes the cluster.

pub mod binaries;
pub mod kubeconfig;
pub mod pki;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binaries::Binaries;
use pki::{Ca, Leaf, Pki, Usage, sans};

use super::process::{self, Launch, LogFormat, Process};

/// The Service network of every sandbox cluster (clusters have separate etcds).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The first address of it: the `kubernetes` Service.
const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// The API server's port on the cluster's address unless the user picks another.
pub const DEFAULT_API_PORT: u16 = 6443;
const ETCD_CLIENT_PORT: u16 = 2379;
const ETCD_PEER_PORT: u16 = 2380;
const KCM_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;
/// How long the API server may take to become ready (2 shared cores, first start).
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The admission plugins of a managed cluster: the API server's defaults (named here so the list
/// is visible) plus NodeRestriction.
const ADMISSION: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,TaintNodesByCondition,PodSecurity,Priority,DefaultTolerationSeconds,DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,RuntimeClass,CertificateApproval,CertificateSigning,ClusterTrustBundleAttest,CertificateSubjectRestriction,DefaultIngressClass,MutatingAdmissionPolicy,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota,NodeRestriction";

/// Metadata for every request but the noisy read-only health and discovery paths.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /readyz*, /livez*, /version, /openapi*, /api, /apis, /api/*, /apis/*]
  verbs: [get]
- level: Metadata
";

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster {cluster}: {component} exited ({status}); its log {log} ends with:\n{tail}")]
    Exited {
        cluster: String,
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("cluster {cluster}: {what} not ready after {}s; {log} ends with:\n{tail}", .after.as_secs())]
    NotReady {
        cluster: String,
        what: String,
        after: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error("cluster {cluster}: cannot build a client: {message}")]
    Client { cluster: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ControlPlaneError + '_ {
    move |source| ControlPlaneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How one control plane is started.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    /// The cluster's name (`source`, `target`): in certificates and messages.
    pub name: String,
    /// The cluster's directory: `etcd/`, `pki/`, `logs/`, `kubeconfig/`, `audit.log`.
    pub dir: PathBuf,
    /// The cluster's own loopback address (`127.A.0.1`).
    pub address: Ipv4Addr,
    pub api_port: u16,
    /// fsync etcd's writes (off for throwaway test clusters, on for a user's `--dir`).
    pub durable: bool,
    /// This project's binary: the supervisor of every process.
    pub sovereign: PathBuf,
}

/// A running control plane.
pub struct ControlPlane {
    name: String,
    api: SocketAddr,
    dir: PathBuf,
    pki: Arc<Pki>,
    admin: Leaf,
    processes: Vec<Process>,
}

/// The API server's client identities the rest of the sandbox uses.
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

impl ControlPlane {
    /// Starts (or resumes) the cluster's control plane and waits until the API server is ready.
    pub async fn start(
        cfg: &ControlPlaneConfig,
        bins: &Binaries,
    ) -> Result<ControlPlane, ControlPlaneError> {
        let started = Instant::now();
        for d in ["etcd", "logs", "kubeconfig"] {
            let p = cfg.dir.join(d);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let pki = Arc::new(Pki::load_or_create(&cfg.dir.join("pki"), &cfg.name)?);
        let certs = Certs::issue(&pki, cfg)?;
        let api = SocketAddr::from((cfg.address, cfg.api_port));
        let mut cp = ControlPlane {
            name: cfg.name.clone(),
            api,
            dir: cfg.dir.clone(),
            pki,
            admin: certs.admin.clone(),
            processes: Vec::new(),
        };
        let policy = cfg.dir.join("audit-policy.yaml");
        std::fs::write(&policy, AUDIT_POLICY).map_err(io_err(&policy))?;
        let etcd = cp.launch(cfg, "etcd", bins.path("etcd"), etcd_args(cfg, &certs))?;
        cp.processes.push(etcd);
        let apiserver_args = apiserver_args(cfg, &certs, &cp.pki, &policy)?;
        let apiserver = cp.launch(
            cfg,
            "kube-apiserver",
            bins.path("kube-apiserver"),
            apiserver_args,
        )?;
        cp.processes.push(apiserver);
        cp.wait_ready().await?;
        let kcm = kcm_args(cfg, &cp, &certs)?;
        let kcm = cp.launch(
            cfg,
            "kube-controller-manager",
            bins.path("kube-controller-manager"),
            kcm,
        )?;
        cp.processes.push(kcm);
        let sched = scheduler_args(cfg, &cp, &certs)?;
        let sched = cp.launch(cfg, "kube-scheduler", bins.path("kube-scheduler"), sched)?;
        cp.processes.push(sched);
        tracing::info!(cluster = %cfg.name, api = %api, secs = started.elapsed().as_secs_f64(), "control plane ready");
        Ok(cp)
    }

    fn launch(
        &self,
        cfg: &ControlPlaneConfig,
        component: &str,
        program: PathBuf,
        args: Vec<String>,
    ) -> Result<Process, ControlPlaneError> {
        let launch = Launch {
            program,
            args,
            env: process::base_env(),
            cwd: Some(cfg.dir.clone()),
            log: cfg.dir.join("logs").join(format!("{component}.log")),
            log_format: LogFormat::Plain,
        };
        Process::spawn(&cfg.sovereign, component, &launch).map_err(|source| {
            ControlPlaneError::Spawn {
                program: launch.program.display().to_string(),
                source,
            }
        })
    }

    /// Polls `/readyz` with the admin identity; fails early when a process ended.
    async fn wait_ready(&mut self) -> Result<(), ControlPlaneError> {
        let client = self.admin_client().await?;
        let started = Instant::now();
        loop {
            self.check_alive()?;
            let req = http::Request::get("/readyz").body(Vec::new());
            if let Ok(req) = req
                && let Ok(body) = client.request_text(req).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let log = self.dir.join("logs/kube-apiserver.log");
                return Err(ControlPlaneError::NotReady {
                    cluster: self.name.clone(),
                    what: "kube-apiserver".into(),
                    after: READY_TIMEOUT,
                    tail: process::log_tail(&log, 20),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An error naming the first process that ended.
    pub fn check_alive(&mut self) -> Result<(), ControlPlaneError> {
        for p in &mut self.processes {
            if let Some(st) = p.exited() {
                return Err(ControlPlaneError::Exited {
                    cluster: self.name.clone(),
                    component: p.name().to_string(),
                    status: st.to_string(),
                    log: p.log().to_path_buf(),
                    tail: process::log_tail(p.log(), 20),
                });
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `127.A.0.1:6443`
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.api)
    }

    pub fn pki(&self) -> &Arc<Pki> {
        &self.pki
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The processes' ids, by component (for `ps` checks and diagnostics).
    pub fn pids(&self) -> Vec<(String, Option<u32>)> {
        self.processes
            .iter()
            .map(|p| (p.name().to_string(), p.pid()))
            .collect()
    }

    /// A kubeconfig user entry for the cluster admin (inline certificate, as users get them).
    pub fn admin_kubeconfig(&self, context: &str) -> kubeconfig::Entry {
        kubeconfig::Entry::certificate(
            context,
            &self.url(),
            self.pki.ca_pem(Ca::Cluster),
            &self.admin.cert_pem,
            &self.admin.key_pem,
        )
    }

    /// A client with the admin identity.
    pub async fn admin_client(&self) -> Result<kube::Client, ControlPlaneError> {
        kubeconfig::client(&[self.admin_kubeconfig("admin")], "admin")
            .await
            .map_err(|message| ControlPlaneError::Client {
                cluster: self.name.clone(),
                message,
            })
    }

    /// A client certificate of the cluster CA for another identity (CN user, O groups),
    /// written under `pki/` as `<stem>.crt`/`.key` and reused on the next start.
    pub fn identity(
        &self,
        stem: &str,
        user: &str,
        groups: &[&str],
    ) -> Result<kubeconfig::Entry, ControlPlaneError> {
        let leaf = self
            .pki
            .leaf(Ca::Cluster, stem, user, groups, &[], Usage::Client)?;
        Ok(kubeconfig::Entry::certificate(
            stem,
            &self.url(),
            self.pki.ca_pem(Ca::Cluster),
            &leaf.cert_pem,
            &leaf.key_pem,
        ))
    }

    /// Starts the snapshot-controller (once its CRDs are served), as the ServiceAccount its
    /// published RBAC binds: `system:serviceaccount:kube-system:snapshot-controller`.
    pub fn start_snapshot_controller(
        &mut self,
        cfg: &ControlPlaneConfig,
        bins: &Binaries,
    ) -> Result<(), ControlPlaneError> {
        let leaf = self.pki.leaf(
            Ca::Cluster,
            "snapshot-controller",
            "system:serviceaccount:kube-system:snapshot-controller",
            &[],
            &[],
            Usage::Client,
        )?;
        let kubeconfig = cfg.dir.join("kubeconfig/snapshot-controller.yaml");
        kubeconfig::write_files(
            &kubeconfig,
            &self.url(),
            self.pki.ca_file(Ca::Cluster),
            &leaf,
        )
        .map_err(io_err(&kubeconfig))?;
        let args = vec![
            format!("--kubeconfig={}", s(&kubeconfig)),
            "--leader-election=false".into(),
            // A claim not yet bound is retried with backoff; a sandbox keeps that short.
            "--retry-interval-max=30s".into(),
            "--kube-api-qps=50".into(),
            "--kube-api-burst=100".into(),
            "--v=1".into(),
        ];
        let program = bins.snapshot_controller();
        let p = self.launch(cfg, binaries::SNAPSHOT_CONTROLLER, program, args)?;
        self.processes.push(p);
        Ok(())
    }

    /// Stops the add-ons, the scheduler and controller manager, then the API server, then etcd.
    pub async fn stop(&mut self) {
        while let Some(mut p) = self.processes.pop() {
            p.stop(Duration::from_secs(10)).await;
        }
    }
}

/// The certificates the processes are started with.
struct Certs {
    apiserver: Leaf,
    kubelet_client: Leaf,
    front_proxy_client: Leaf,
    etcd_server: Leaf,
    etcd_client: Leaf,
    admin: Leaf,
    controller_manager: Leaf,
    scheduler: Leaf,
}

impl Certs {
    fn issue(pki: &Pki, cfg: &ControlPlaneConfig) -> Result<Certs, ControlPlaneError> {
        let ip = IpAddr::V4(cfg.address);
        let api_sans = sans(
            &[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            &[
                ip,
                IpAddr::V4(KUBERNETES_SERVICE_IP),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ],
        );
        let etcd_sans = sans(&["localhost"], &[ip, IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        Ok(Certs {
            apiserver: pki.leaf(
                Ca::Cluster,
                "apiserver",
                "kube-apiserver",
                &[],
                &api_sans,
                Usage::Server,
            )?,
            kubelet_client: pki.leaf(
                Ca::Cluster,
                "apiserver-kubelet-client",
                APISERVER_KUBELET_CLIENT,
                &["kubeadm:cluster-admins"],
                &[],
                Usage::Client,
            )?,
            front_proxy_client: pki.leaf(
                Ca::FrontProxy,
                "front-proxy-client",
                "front-proxy-client",
                &[],
                &[],
                Usage::Client,
            )?,
            etcd_server: pki.leaf(
                Ca::Etcd,
                "etcd-server",
                &cfg.name,
                &[],
                &etcd_sans,
                Usage::ServerAndClient,
            )?,
            etcd_client: pki.leaf(
                Ca::Etcd,
                "apiserver-etcd-client",
                "kube-apiserver-etcd-client",
                &[],
                &[],
                Usage::Client,
            )?,
            admin: pki.leaf(
                Ca::Cluster,
                "admin",
                ADMIN_USER,
                &["system:masters"],
                &[],
                Usage::Client,
            )?,
            controller_manager: pki.leaf(
                Ca::Cluster,
                "controller-manager",
                "system:kube-controller-manager",
                &[],
                &[],
                Usage::Client,
            )?,
            scheduler: pki.leaf(
                Ca::Cluster,
                "scheduler",
                "system:kube-scheduler",
                &[],
                &[],
                Usage::Client,
            )?,
        })
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn etcd_args(cfg: &ControlPlaneConfig, c: &Certs) -> Vec<String> {
    let a = cfg.address;
    let mut args = vec![
        format!("--name={}", cfg.name),
        format!("--data-dir={}", s(&cfg.dir.join("etcd"))),
        format!("--listen-client-urls=https://{a}:{ETCD_CLIENT_PORT}"),
        format!("--advertise-client-urls=https://{a}:{ETCD_CLIENT_PORT}"),
        format!("--listen-peer-urls=http://{a}:{ETCD_PEER_PORT}"),
        format!("--initial-advertise-peer-urls=http://{a}:{ETCD_PEER_PORT}"),
        format!("--initial-cluster={}=http://{a}:{ETCD_PEER_PORT}", cfg.name),
        "--listen-metrics-urls=".into(),
        format!("--cert-file={}", s(&c.etcd_server.cert_file)),
        format!("--key-file={}", s(&c.etcd_server.key_file)),
        format!(
            "--trusted-ca-file={}",
            s(&c.etcd_server.cert_file.with_file_name("etcd-ca.crt"))
        ),
        "--client-cert-auth=true".into(),
        "--log-level=warn".into(),
        "--snapshot-count=10000".into(),
    ];
    if !cfg.durable {
        args.push("--unsafe-no-fsync=true".into());
    }
    args
}

fn apiserver_args(
    cfg: &ControlPlaneConfig,
    c: &Certs,
    pki: &Pki,
    policy: &Path,
) -> Result<Vec<String>, ControlPlaneError> {
    let (sa_key, sa_pub) = pki.service_account_key()?;
    let a = cfg.address;
    Ok(vec![
        format!("--etcd-servers=https://{a}:{ETCD_CLIENT_PORT}"),
        format!("--etcd-cafile={}", s(pki.ca_file(Ca::Etcd))),
        format!("--etcd-certfile={}", s(&c.etcd_client.cert_file)),
        format!("--etcd-keyfile={}", s(&c.etcd_client.key_file)),
        format!("--bind-address={a}"),
        format!("--secure-port={}", cfg.api_port),
        format!("--advertise-address={a}"),
        // A loopback advertise address cannot be an Endpoints address; pods reach the API server
        // at its own address (the node agent sets KUBERNETES_SERVICE_HOST to it).
        "--endpoint-reconciler-type=none".into(),
        format!("--cert-dir={}", s(&cfg.dir.join("pki/generated"))),
        format!("--tls-cert-file={}", s(&c.apiserver.cert_file)),
        format!("--tls-private-key-file={}", s(&c.apiserver.key_file)),
        format!("--client-ca-file={}", s(pki.ca_file(Ca::Cluster))),
        "--authorization-mode=Node,RBAC".into(),
        format!("--enable-admission-plugins={ADMISSION}"),
        "--allow-privileged=true".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", s(&sa_pub)),
        format!("--service-account-signing-key-file={}", s(&sa_key)),
        "--service-account-lookup=true".into(),
        format!(
            "--kubelet-client-certificate={}",
            s(&c.kubelet_client.cert_file)
        ),
        format!("--kubelet-client-key={}", s(&c.kubelet_client.key_file)),
        format!(
            "--kubelet-certificate-authority={}",
            s(pki.ca_file(Ca::Cluster))
        ),
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!(
            "--requestheader-client-ca-file={}",
            s(pki.ca_file(Ca::FrontProxy))
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!(
            "--proxy-client-cert-file={}",
            s(&c.front_proxy_client.cert_file)
        ),
        format!(
            "--proxy-client-key-file={}",
            s(&c.front_proxy_client.key_file)
        ),
        "--enable-aggregator-routing=true".into(),
        format!("--audit-policy-file={}", s(policy)),
        format!("--audit-log-path={}", s(&cfg.dir.join("audit.log"))),
        "--audit-log-maxsize=100".into(),
        "--audit-log-maxbackup=2".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ])
}

fn kcm_args(
    cfg: &ControlPlaneConfig,
    cp: &ControlPlane,
    c: &Certs,
) -> Result<Vec<String>, ControlPlaneError> {
    let kubeconfig = cfg.dir.join("kubeconfig/controller-manager.yaml");
    kubeconfig::write_files(
        &kubeconfig,
        &cp.url(),
        cp.pki.ca_file(Ca::Cluster),
        &c.controller_manager,
    )
    .map_err(io_err(&kubeconfig))?;
    let (sa_key, _) = cp.pki.service_account_key()?;
    let k = s(&kubeconfig);
    Ok(vec![
        format!("--kubeconfig={k}"),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        format!("--bind-address={}", cfg.address),
        format!("--secure-port={KCM_PORT}"),
        format!("--cert-dir={}", s(&cfg.dir.join("pki/generated"))),
        "--controllers=*".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", s(&sa_key)),
        format!("--root-ca-file={}", s(cp.pki.ca_file(Ca::Cluster))),
        format!(
            "--cluster-signing-cert-file={}",
            s(cp.pki.ca_file(Ca::Cluster))
        ),
        format!(
            "--cluster-signing-key-file={}",
            s(&cp.pki.dir().join("ca.key"))
        ),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--leader-elect=false".into(),
        // Binding reacts to events; the periodic resync only catches what was missed.
        "--pvclaimbinder-sync-period=5s".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ])
}

fn scheduler_args(
    cfg: &ControlPlaneConfig,
    cp: &ControlPlane,
    c: &Certs,
) -> Result<Vec<String>, ControlPlaneError> {
    let kubeconfig = cfg.dir.join("kubeconfig/scheduler.yaml");
    kubeconfig::write_files(
        &kubeconfig,
        &cp.url(),
        cp.pki.ca_file(Ca::Cluster),
        &c.scheduler,
    )
    .map_err(io_err(&kubeconfig))?;
    let config = cfg.dir.join("kube-scheduler.yaml");
    let text = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\nleaderElection:\n  leaderElect: false\n",
        s(&kubeconfig)
    );
    std::fs::write(&config, text).map_err(io_err(&config))?;
    let k = s(&kubeconfig);
    Ok(vec![
        format!("--config={}", s(&config)),
        format!("--authentication-kubeconfig={k}"),
        format!("--authorization-kubeconfig={k}"),
        format!("--bind-address={}", cfg.address),
        format!("--secure-port={SCHEDULER_PORT}"),
        format!("--cert-dir={}", s(&cfg.dir.join("pki/generated"))),
        "--v=1".into(),
    ])
}
