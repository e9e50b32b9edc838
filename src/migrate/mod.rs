//! The migration: what moves (selection and references), in which order, transformed how, and the
//! plan that an approval names by its hash. Planning is pure: objects in, plan out, no cluster.

pub mod apply;
pub mod approval;
pub mod discover;
pub mod footprint;
pub mod order;
pub mod plan;
pub mod select;
pub mod snapshot;
pub mod transform;

pub use plan::{Plan, PlanInput, PlannedObject, PlannedVolume, build};

use serde_json::Value;

/// The kind of a raw object.
pub fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

/// The name of a raw object.
pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// `Kind/name` as people read it in findings and results.
pub fn key(v: &Value) -> String {
    format!("{}/{}", kind(v), name(v))
}
