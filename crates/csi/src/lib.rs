//! The Secrets Store CSI Driver provider front end: secretsfs as the provider a
//! SecretProviderClass names (`provider: secretsfs`), a drop-in for the AWS provider's classes
//! (docs/kubernetes-csi.md).
//!
//! [`server`] answers the driver's gRPC API on a Unix socket; [`provider`] runs one Mount: the
//! request's parameters ([`request`]), the class's objects ([`spec`]), the pod's identity and
//! its cache ([`identity`]), the values ([`fetch`], [`jmes`]), and the answer or the refusal
//! ([`failure`]).

pub mod client;
pub mod failure;
pub mod fetch;
pub mod identity;
pub mod jmes;
pub mod kube;
pub mod proto;
pub mod provider;
pub mod request;
pub mod server;
pub mod spec;
pub mod token;
