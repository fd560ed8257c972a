//! Test harness shared by the integration tests.

pub mod cli;
pub mod counting_proxy;
pub mod fake_kube;
pub mod fake_lambda;
pub mod fake_pod_identity;
pub mod fake_sm;
pub mod fd_store;
pub mod http;
pub mod jwt;
pub mod kubernetes;
pub mod local_server;
pub mod moto;
pub mod mount;
pub mod nobody;
pub mod policy;
