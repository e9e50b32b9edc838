//! The attestation's JSON: the record that is signed and filed.
//!
//! These bytes are what the signature covers, exactly as written to `<workload>.json`: a verifier
//! checks the file it holds, never a re-serialization of it (two JSON writers may format the same
//! value differently, a signature over bytes does not care).

use super::model::Attestation;

/// The attestation as indented JSON with a final newline. Deterministic: serde writes struct fields
/// in declaration order and the model holds no maps with unordered keys.
pub fn to_bytes(a: &Attestation) -> Result<Vec<u8>, serde_json::Error> {
    let mut bytes = serde_json::to_vec_pretty(a)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The SHA-256 of the bytes, hex, as the Markdown rendering names the JSON it was made from.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
