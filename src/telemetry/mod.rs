//! Logs, metrics and the health/metrics HTTP endpoint.

pub mod logging;
pub mod metrics;
pub mod server;

pub use metrics::Metrics;
