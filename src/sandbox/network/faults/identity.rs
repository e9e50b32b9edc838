//! Who a client is, from its certificate, as the API server's x509 authenticator reads it: the
//! subject's Common Name is the user, each Organization a group. The proxy passes that on in
//! `X-Remote-User` / `X-Remote-Group` (request-header authentication).

use rustls::pki_types::CertificateDer;

/// A user and its groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
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

/// The text of a directory string (UTF8String, PrintableString, IA5String, T61String or
/// BMPString).
fn text(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => Some(String::from_utf8_lossy(value).into_owned()),
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// The identity in a subject Name's content (the RDNSequence without its outer SEQUENCE).
pub fn from_subject(mut rdns: &[u8]) -> Option<Identity> {
    let mut id = Identity::default();
    let mut cn = None;
    while !rdns.is_empty() {
        let (tag, set, rest) = element(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, attr, rest) = element(attrs)?;
            attrs = rest;
            let (oid_tag, oid, value) = element(attr)?;
            let (value_tag, value, _) = element(value)?;
            if oid_tag != 0x06 {
                continue;
            }
            match (oid, text(value_tag, value)) {
                (o, Some(v)) if o == OID_COMMON_NAME => cn = cn.or(Some(v)),
                (o, Some(v)) if o == OID_ORGANIZATION => id.groups.push(v),
                _ => {}
            }
        }
    }
    id.user = cn?;
    Some(id)
}

/// The identity a client certificate carries (None: unparsable, or no Common Name).
pub fn from_certificate(cert: &CertificateDer<'_>) -> Option<Identity> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    from_subject(parsed.subject())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::controlplane::pki::{Ca, Pki, Usage};
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn users_and_groups_come_from_the_common_name_and_organizations() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki = Pki::load_or_create(dir.path(), "c").expect("pki");
        let (pem, _) = pki
            .issue(Ca::Cluster, "jane", &["dev"], &[], Usage::Client)
            .expect("cert");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        assert_eq!(
            from_certificate(&der),
            Some(Identity {
                user: "jane".into(),
                groups: vec!["dev".into()]
            })
        );
    }

    #[test]
    fn malformed_subjects_are_refused_not_misread() {
        assert_eq!(from_subject(&[0x31, 0x05, 0x30]), None, "truncated");
        assert_eq!(from_subject(&[]), None, "no common name");
        // One RDN: SET { SEQUENCE { OID 2.5.4.3, PrintableString "ab" } }
        let rdn = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x02, b'a', b'b',
        ];
        assert_eq!(from_subject(&rdn).map(|i| i.user), Some("ab".into()));
    }

    #[test]
    fn every_organization_is_a_group() {
        // O=dev, O=qa (UTF8String), CN=ab: what openssl or cfssl write for two groups.
        let subject = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x03, b'd', b'e', b'v',
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x02, b'q', b'a', 0x31,
            0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x02, b'a', b'b',
        ];
        assert_eq!(
            from_subject(&subject),
            Some(Identity {
                user: "ab".into(),
                groups: vec!["dev".into(), "qa".into()]
            })
        );
    }
}
