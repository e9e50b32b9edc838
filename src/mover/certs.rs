//! The per-migration certificate authority and the two role certificates.
//!
//! A fresh CA is made for every migration and its private key is dropped once the two leaf
//! certificates are signed: nothing can issue another sender certificate later, so rotating means
//! generating a new set. Peers are identified by the role name in their certificate (as a DNS SAN
//! and the CN), never by address, because the receiver's address is only known once its Service
//! has one and may sit behind NAT or a relay.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::error::{IoContext, MoverError, Result};

pub const SENDER_NAME: &str = "sovereign-mover-sender";
pub const RECEIVER_NAME: &str = "sovereign-mover-receiver";

pub const CA_FILE: &str = "ca.crt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Sender => SENDER_NAME,
            Role::Receiver => RECEIVER_NAME,
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }
}

/// What one side needs for mutual TLS, as PEM: the migration's CA certificate (the only trust
/// anchor), its own certificate and its private key.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// A migration's certificate set, in memory (what the operator stores as Secrets).
#[derive(Clone, Debug)]
pub struct MigrationCerts {
    pub sender: TlsMaterial,
    pub receiver: TlsMaterial,
}

impl MigrationCerts {
    pub fn for_role(&self, role: Role) -> &TlsMaterial {
        match role {
            Role::Sender => &self.sender,
            Role::Receiver => &self.receiver,
        }
    }
}

fn certs_err(what: &str) -> impl FnOnce(rcgen::Error) -> MoverError + '_ {
    move |e| MoverError::Certs(format!("{what}: {e}"))
}

/// Generates a CA valid for `validity_days` (from yesterday, to tolerate clock skew between
/// clusters) and a sender and a receiver certificate signed by it.
pub fn generate(migration: &str, validity_days: u32) -> Result<MigrationCerts> {
    let today = jiff::Zoned::now().date();
    let start = today
        .yesterday()
        .map_err(|e| MoverError::Certs(e.to_string()))?;
    let end = today
        .checked_add(jiff::Span::new().days(i64::from(validity_days)))
        .map_err(|e| MoverError::Certs(e.to_string()))?;
    let not_before = rcgen::date_time_ymd(
        i32::from(start.year()),
        start.month() as u8,
        start.day() as u8,
    );
    let not_after = rcgen::date_time_ymd(i32::from(end.year()), end.month() as u8, end.day() as u8);

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(certs_err("CA"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("sovereign-mover CA {migration}"),
    );
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().map_err(certs_err("CA key"))?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(certs_err("CA"))?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |role: Role| -> Result<TlsMaterial> {
        let mut params = CertificateParams::new(vec![role.name().to_string()])
            .map_err(certs_err(role.name()))?;
        params
            .distinguished_name
            .push(DnType::CommonName, role.name());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Sender => ExtendedKeyUsagePurpose::ClientAuth,
            Role::Receiver => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().map_err(certs_err(role.name()))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(certs_err(role.name()))?;
        Ok(TlsMaterial {
            ca_pem: ca_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };
    Ok(MigrationCerts {
        sender: leaf(Role::Sender)?,
        receiver: leaf(Role::Receiver)?,
    })
}

/// Writes `ca.crt`, `sender.crt`, `sender.key`, `receiver.crt`, `receiver.key` into `dir`
/// (keys mode 0600). In a cluster each side only gets its own pair plus `ca.crt`.
pub fn write_dir(certs: &MigrationCerts, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    write_file(&dir.join(CA_FILE), &certs.sender.ca_pem, 0o644)?;
    for role in [Role::Sender, Role::Receiver] {
        let m = certs.for_role(role);
        let stem = role.file_stem();
        write_file(&dir.join(format!("{stem}.crt")), &m.cert_pem, 0o644)?;
        write_file(&dir.join(format!("{stem}.key")), &m.key_pem, 0o600)?;
    }
    Ok(())
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .ctx(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())
        .ctx(|| format!("writing {}", path.display()))
}

/// Loads one role's material from a directory written by [`write_dir`] (or a mounted Secret
/// with the same file names).
pub fn load_dir(dir: &Path, role: Role) -> Result<TlsMaterial> {
    let read = |name: String| {
        let path = dir.join(&name);
        fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))
    };
    let stem = role.file_stem();
    Ok(TlsMaterial {
        ca_pem: read(CA_FILE.to_string())?,
        cert_pem: read(format!("{stem}.crt"))?,
        key_pem: read(format!("{stem}.key"))?,
    })
}
