//! `sovereign report`: a workload's history turned into an attestation a compliance officer can file
//! (DESIGN.md, "Evidence"): what moved, from where to where, the approved plan, the verified root
//! hashes of every volume, the residency evidence, the decommissioning evidence and the cost.
//!
//! The attestation is built purely from the objects the operator keeps ([`model::build`]), rendered
//! as JSON (the signed record, [`render_json`]) and Markdown (for people, [`render_markdown`]), and
//! signed with an Ed25519 key that lives in the Québec cluster ([`sign`]). Reading the objects and
//! the key from a live cluster is the CLI's job (`src/cli/report.rs`), so that everything here can be
//! tested from hand-built objects.

pub mod model;
pub mod render_json;
pub mod render_markdown;
pub mod sign;

pub use model::{Attestation, Inputs, Provenance, Signer, build};

#[cfg(test)]
mod tests;
