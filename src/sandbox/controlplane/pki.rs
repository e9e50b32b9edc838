//! One cluster's certificates, laid out as kubeadm lays them out: a cluster CA (the API server's
//! serving certificate, every client certificate, the node agent's kubelet serving certificates),
//! a front-proxy CA (request-header authentication: the aggregator and the fault proxies), an
//! etcd CA (etcd's serving certificate and the API server's etcd client certificate) and the
//! service-account signing key. Everything is written under `<cluster dir>/pki` and read back on
//! the next start, so a resumed cluster keeps its identity and its issued tokens stay valid.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the certificate {what}: {source}")]
    Cert {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

/// Which authority signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ca {
    Cluster,
    FrontProxy,
    Etcd,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// A certificate and its key, PEM, and where they are on disk (when written).
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

struct Authority {
    cert_pem: String,
    cert_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

pub struct Pki {
    dir: PathBuf,
    cluster: Authority,
    front_proxy: Authority,
    etcd: Authority,
}

const CA_YEARS: i64 = 10;
const LEAF_YEARS: i64 = 2;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

fn validity(params: &mut CertificateParams, years: i64) {
    let today = jiff::Zoned::now().date();
    let start = today.yesterday().unwrap_or(today);
    let end = today
        .checked_add(jiff::Span::new().years(years))
        .unwrap_or(today);
    params.not_before = rcgen::date_time_ymd(
        i32::from(start.year()),
        start.month() as u8,
        start.day() as u8,
    );
    params.not_after =
        rcgen::date_time_ymd(i32::from(end.year()), end.month() as u8, end.day() as u8);
}

fn ca_params(cn: &str) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err(cn))?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_YEARS);
    Ok(p)
}

/// Writes a file atomically enough for a single writer, with its mode from the start.
pub fn write_private(path: &Path, content: &str, mode: u32) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(content.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn read_pair(dir: &Path, stem: &str) -> Option<(String, String)> {
    let cert = fs::read_to_string(dir.join(format!("{stem}.crt"))).ok()?;
    let key = fs::read_to_string(dir.join(format!("{stem}.key"))).ok()?;
    Some((cert, key))
}

impl Authority {
    fn load_or_create(dir: &Path, stem: &str, cn: &str) -> Result<Authority, PkiError> {
        let params = ca_params(cn)?;
        let cert_file = dir.join(format!("{stem}.crt"));
        if let Some((cert_pem, key_pem)) = read_pair(dir, stem)
            && let Ok(key) = KeyPair::from_pem(&key_pem)
        {
            // Same subject, same key: what it signs chains to the certificate on disk.
            return Ok(Authority {
                cert_pem,
                cert_file,
                issuer: Issuer::new(params, key),
            });
        }
        let key = KeyPair::generate().map_err(cert_err(cn))?;
        let cert = params.self_signed(&key).map_err(cert_err(cn))?;
        let cert_pem = cert.pem();
        write_private(
            &dir.join(format!("{stem}.key")),
            &key.serialize_pem(),
            0o600,
        )?;
        write_private(&cert_file, &cert_pem, 0o644)?;
        Ok(Authority {
            cert_pem,
            cert_file,
            issuer: Issuer::new(params, key),
        })
    }
}

impl Pki {
    /// Loads the cluster's authorities from `dir`, making the missing ones.
    pub fn load_or_create(dir: &Path, cluster: &str) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            cluster: Authority::load_or_create(dir, "ca", &format!("kubernetes-ca {cluster}"))?,
            front_proxy: Authority::load_or_create(
                dir,
                "front-proxy-ca",
                &format!("front-proxy-ca {cluster}"),
            )?,
            etcd: Authority::load_or_create(dir, "etcd-ca", &format!("etcd-ca {cluster}"))?,
        })
    }

    fn authority(&self, ca: Ca) -> &Authority {
        match ca {
            Ca::Cluster => &self.cluster,
            Ca::FrontProxy => &self.front_proxy,
            Ca::Etcd => &self.etcd,
        }
    }

    pub fn ca_pem(&self, ca: Ca) -> &str {
        &self.authority(ca).cert_pem
    }

    pub fn ca_file(&self, ca: Ca) -> &Path {
        &self.authority(ca).cert_file
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The leaf `<stem>.crt`/`.key` under the PKI directory: read back when present, else
    /// issued and written.
    pub fn leaf(
        &self,
        ca: Ca,
        stem: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[SanType],
        usage: Usage,
    ) -> Result<Leaf, PkiError> {
        let cert_file = self.dir.join(format!("{stem}.crt"));
        let key_file = self.dir.join(format!("{stem}.key"));
        if let Some((cert_pem, key_pem)) = read_pair(&self.dir, stem) {
            return Ok(Leaf {
                cert_pem,
                key_pem,
                cert_file,
                key_file,
            });
        }
        let (cert_pem, key_pem) = self.issue(ca, cn, orgs, sans, usage)?;
        write_private(&key_file, &key_pem, 0o600)?;
        write_private(&cert_file, &cert_pem, 0o644)?;
        Ok(Leaf {
            cert_pem,
            key_pem,
            cert_file,
            key_file,
        })
    }

    /// A fresh certificate and key, PEM, not written anywhere. `orgs` (the groups a client
    /// certificate carries) holds at most one: rcgen keeps one value per attribute type.
    pub fn issue(
        &self,
        ca: Ca,
        cn: &str,
        orgs: &[&str],
        sans: &[SanType],
        usage: Usage,
    ) -> Result<(String, String), PkiError> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err(cn))?;
        p.distinguished_name.push(DnType::CommonName, cn);
        debug_assert!(orgs.len() <= 1, "one organization per certificate");
        if let Some(o) = orgs.first() {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.subject_alt_names = sans.to_vec();
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        validity(&mut p, LEAF_YEARS);
        let key = KeyPair::generate().map_err(cert_err(cn))?;
        let cert = p
            .signed_by(&key, &self.authority(ca).issuer)
            .map_err(cert_err(cn))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The service-account signing key (`sa.key`) and its public half (`sa.pub`).
    pub fn service_account_key(&self) -> Result<(PathBuf, PathBuf), PkiError> {
        let key_file = self.dir.join("sa.key");
        let pub_file = self.dir.join("sa.pub");
        let existing = fs::read_to_string(&key_file)
            .ok()
            .and_then(|k| KeyPair::from_pem(&k).ok());
        let key = match existing {
            Some(k) => k,
            None => {
                let k = KeyPair::generate().map_err(cert_err("service-account key"))?;
                write_private(&key_file, &k.serialize_pem(), 0o600)?;
                k
            }
        };
        if !pub_file.exists() {
            write_private(&pub_file, &key.public_key_pem(), 0o644)?;
        }
        Ok((key_file, pub_file))
    }
}

/// SANs for names and addresses.
pub fn sans(dns: &[&str], ips: &[IpAddr]) -> Vec<SanType> {
    let mut out: Vec<SanType> = dns
        .iter()
        .filter_map(|d| {
            rcgen::string::Ia5String::try_from(*d)
                .ok()
                .map(SanType::DnsName)
        })
        .collect();
    out.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_read_back_and_still_sign_for_the_same_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = Pki::load_or_create(dir.path(), "c").expect("pki");
        let ca = first.ca_pem(Ca::Cluster).to_string();
        let again = Pki::load_or_create(dir.path(), "c").expect("pki");
        assert_eq!(again.ca_pem(Ca::Cluster), ca);
        let leaf = again
            .leaf(
                Ca::Cluster,
                "admin",
                "admin",
                &["system:masters"],
                &[],
                Usage::Client,
            )
            .expect("leaf");
        let reread = again
            .leaf(Ca::Cluster, "admin", "x", &[], &[], Usage::Client)
            .expect("leaf");
        assert_eq!(leaf.cert_pem, reread.cert_pem, "an existing leaf is kept");
        let (sa_key, sa_pub) = again.service_account_key().expect("sa");
        assert!(sa_key.exists() && sa_pub.exists());
    }
}
