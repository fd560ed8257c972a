//! The Secrets Store CSI Driver provider front end (issue 22, in progress): secretsfs as the
//! provider a SecretProviderClass names, a drop-in for the AWS provider's classes. So far, the
//! class's `objects` as the AWS provider reads and checks them ([`spec`]); the gRPC service,
//! per-pod identity and the per-identity caches are still to come.

pub mod spec;
