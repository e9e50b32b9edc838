//! Addresses, load balancers and the TCP proxy behind them, and the fault-injecting proxy the
//! reliability tests put between one client and a cluster's API server.

pub mod addresses;
pub mod endpoints;
pub mod faults;
pub mod ingress;
pub mod loadbalancer;
pub mod proxy;
