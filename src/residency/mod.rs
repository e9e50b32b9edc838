//! Residency and jurisdiction: where a workload and its data live, and under whose law, from evidence
//! the cluster shows, judged against a `ResidencyPolicy`.

pub mod catalog;
pub mod collect;
pub mod evaluate;
pub mod inventory;
pub mod policy;
pub mod preflight;

pub use catalog::Catalog;
pub use evaluate::{Evaluation, evaluate};
pub use inventory::Inventory;
