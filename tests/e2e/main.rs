//! End-to-end tests on two real clusters (upstream Kubernetes, the node agent, the operator),
//! started once for this test binary (`support`). Each test has its own namespaces, its own
//! SovereignClusters and an operator serving only its shard.

#![cfg(feature = "sandbox")]

mod apply;
mod kubectl;
mod migration;
mod operator;
mod permissions;
mod profiles;
mod report;
mod support;
mod validation;
