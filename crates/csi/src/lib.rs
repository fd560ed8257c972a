//! The Secrets Store CSI Driver provider front end (issue 22, in progress): secretsfs as the
//! provider a SecretProviderClass names, a drop-in for the AWS provider's classes. So far, a
//! Mount request's parameters ([`request`]: the pod, its tokens by audience, the regions, the
//! identity to use) and the class's `objects` ([`spec`]), read and checked as the AWS
//! provider does; the gRPC service, per-pod identity and the per-identity caches are still to
//! come.

pub mod request;
pub mod spec;
