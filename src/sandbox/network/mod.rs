//! Addresses, load balancers and the TCP proxy behind them.

pub mod addresses;
pub mod loadbalancer;
