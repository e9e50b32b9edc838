//! Addresses, load balancers and the TCP proxy behind them.

pub mod addresses;
pub mod endpoints;
pub mod ingress;
pub mod loadbalancer;
pub mod proxy;
