//! Ed25519 signatures over the attestation's JSON bytes, with `ring`.
//!
//! The private key is a PKCS#8 document as `ring` generates it (v2: seed and public key), kept in a
//! Secret of the Québec cluster; the public key is the raw 32 bytes, written base64 in the Secret,
//! in the Markdown and in the attestation. Ed25519 because its signatures are deterministic (the same
//! bytes always give the same signature), need no random numbers at signing time, and every
//! language's standard crypto library verifies them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The algorithm's name as the attestation records it.
pub const ALGORITHM: &str = "Ed25519";
/// Raw Ed25519 public keys and signatures are 32 and 64 bytes.
const PUBLIC_KEY_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot generate an Ed25519 key: the system's random number generator failed")]
    Generate,
    #[error("{what} is not an Ed25519 PKCS#8 private key: {why}")]
    PrivateKey { what: String, why: String },
    #[error("{what} is not an Ed25519 public key: {why}")]
    PublicKey { what: String, why: String },
    #[error("{what} is not an Ed25519 signature: {why}")]
    Signature { what: String, why: String },
}

/// A signing key and its public half.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    // Never print the private key, even by accident in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public_key", &self.public_key_b64())
            .finish()
    }
}

impl SigningKey {
    /// A new key; returns it with its PKCS#8 document (what is stored).
    pub fn generate() -> Result<(SigningKey, Vec<u8>), SignError> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignError::Generate)?;
        let pkcs8 = doc.as_ref().to_vec();
        let key = SigningKey::from_pkcs8(&pkcs8, "the generated key")?;
        Ok((key, pkcs8))
    }

    /// Loads a stored key; `what` names where it came from, for the error.
    pub fn from_pkcs8(pkcs8: &[u8], what: &str) -> Result<SigningKey, SignError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| SignError::PrivateKey {
            what: what.to_string(),
            why: e.to_string(),
        })?;
        Ok(SigningKey { pair })
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn public_key_b64(&self) -> String {
        B64.encode(self.public_key())
    }

    /// The signature of exactly these bytes, base64.
    pub fn sign_b64(&self, message: &[u8]) -> String {
        B64.encode(self.pair.sign(message).as_ref())
    }
}

/// A public key written as base64 or hex of the raw 32 bytes (surrounding whitespace ignored).
pub fn parse_public_key(text: &str, what: &str) -> Result<Vec<u8>, SignError> {
    let bytes = decode_b64_or_hex(text, PUBLIC_KEY_LEN).ok_or_else(|| SignError::PublicKey {
        what: what.to_string(),
        why: format!(
            "expected the raw {PUBLIC_KEY_LEN}-byte key in base64 (44 characters) or hex (64 characters)"
        ),
    })?;
    Ok(bytes)
}

/// A signature written as base64 (or hex) of the raw 64 bytes.
pub fn parse_signature(text: &str, what: &str) -> Result<Vec<u8>, SignError> {
    decode_b64_or_hex(text, SIGNATURE_LEN).ok_or_else(|| SignError::Signature {
        what: what.to_string(),
        why: format!(
            "expected the raw {SIGNATURE_LEN}-byte signature in base64 (88 characters) or hex (128 characters)"
        ),
    })
}

fn decode_b64_or_hex(text: &str, len: usize) -> Option<Vec<u8>> {
    let t = text.trim();
    let decoded = if t.len() == 2 * len && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()
    } else {
        B64.decode(t).ok()
    };
    decoded.filter(|b| b.len() == len)
}

/// Whether `signature` is the public key's signature of exactly `message`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(key: &SigningKey, msg: &[u8]) -> Vec<u8> {
        parse_signature(&key.sign_b64(msg), "test").expect("a signature we made parses")
    }

    #[test]
    fn a_signature_verifies_and_any_changed_byte_breaks_it() {
        let (key, pkcs8) = SigningKey::generate().expect("key");
        let msg = br#"{"kind":"SovereignMigrationAttestation","attested":true}"#.to_vec();
        let s = sig(&key, &msg);
        assert!(verify(key.public_key(), &msg, &s));
        // Reloaded from its stored form, the key is the same key.
        let again = SigningKey::from_pkcs8(&pkcs8, "stored").expect("reload");
        assert_eq!(again.public_key(), key.public_key());
        for i in 0..msg.len() {
            let mut tampered = msg.clone();
            tampered[i] ^= 0x01;
            assert!(!verify(key.public_key(), &tampered, &s), "byte {i} flipped");
        }
        let mut bad_sig = s.clone();
        bad_sig[10] ^= 0x80;
        assert!(!verify(key.public_key(), &msg, &bad_sig));
        let (other, _) = SigningKey::generate().expect("key");
        assert!(!verify(other.public_key(), &msg, &s), "another key");
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_bad_ones_are_named() {
        let (key, _) = SigningKey::generate().expect("key");
        let b64 = key.public_key_b64();
        let hexed = hex::encode(key.public_key());
        assert_eq!(
            parse_public_key(&format!("  {b64}\n"), "k").expect("b64"),
            key.public_key()
        );
        assert_eq!(
            parse_public_key(&hexed, "k").expect("hex"),
            key.public_key()
        );
        let err = parse_public_key("bm90IGEga2V5", "--public-key").expect_err("short");
        assert!(err.to_string().contains("--public-key"), "{err}");
        assert!(
            parse_signature(&b64, "sig").is_err(),
            "a key is not a signature"
        );
        let err = SigningKey::from_pkcs8(b"nonsense", "Secret a/b key ed25519.pk8")
            .expect_err("not pkcs8");
        assert!(err.to_string().contains("Secret a/b"), "{err}");
        assert!(
            !format!("{key:?}").contains("pair"),
            "no private material in Debug"
        );
    }
}
