//! Who a client certificate names: the user is its subject's CommonName, the groups its
//! Organizations (what the API server's and the kubelet's x509 authenticators take), plus
//! `system:authenticated`. The certificate was verified against the cluster CA during the TLS
//! handshake; this only reads its subject, with a minimal DER walk.

/// An authenticated client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// One DER element: its tag, its content, and what follows it.
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
const ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];

/// The subject Name of a DER certificate.
fn subject(der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, name, _) = element(rest)? else {
        return None;
    };
    Some(name)
}

/// The CommonName and Organizations of a DER certificate's subject.
pub fn of_certificate(der: &[u8]) -> Option<Identity> {
    let mut name = subject(der)?;
    let mut user = None;
    let mut groups = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, rest) = element(name)? else {
            return None;
        };
        name = rest;
        while !set.is_empty() {
            let (SEQUENCE, attr, more) = element(set)? else {
                return None;
            };
            set = more;
            let (OID, oid, value) = element(attr)? else {
                return None;
            };
            let (_, text, _) = element(value)?;
            let text = String::from_utf8_lossy(text).into_owned();
            if oid == COMMON_NAME {
                user = Some(text);
            } else if oid == ORGANIZATION {
                groups.push(text);
            }
        }
    }
    groups.push("system:authenticated".into());
    Some(Identity {
        user: user?,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::controlplane::pki::{Ca, Pki, Usage};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn the_subject_names_user_and_groups() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = Pki::load_or_create(dir.path(), "c").expect("pki");
        let (pem, _) = pki
            .issue(
                Ca::Cluster,
                "kube-apiserver-kubelet-client",
                &["kubeadm:cluster-admins"],
                &[],
                Usage::Client,
            )
            .expect("issue");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        let id = of_certificate(&der).expect("identity");
        assert_eq!(id.user, "kube-apiserver-kubelet-client");
        assert_eq!(
            id.groups,
            ["kubeadm:cluster-admins", "system:authenticated"]
        );
        assert_eq!(of_certificate(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(of_certificate(b""), None);
    }
}
