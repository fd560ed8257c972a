//! Test harness shared by the integration tests.

pub mod cli;
pub mod counting_proxy;
pub mod fake_sm;
pub mod fd_store;
pub mod http;
pub mod moto;
pub mod mount;
pub mod nobody;
pub mod policy;
