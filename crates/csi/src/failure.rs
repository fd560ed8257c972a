//! Why a Mount is refused: the short code the driver is answered with (`MountResponse.error`,
//! documented in docs/kubernetes-csi.md#error-codes) and the cause, for the provider's log
//! only. Neither ever holds a value or a token.

use std::borrow::Cow;

use secretsfs_core::{Error, ErrorKind};

use crate::spec::SpecError;

/// The class (its parameters, objects or the request's attributes) is not one the AWS
/// provider would accept.
pub const INVALID_CLASS: &str = "InvalidSecretProviderClass";
/// The request carries no token for the identity's audience.
pub const MISSING_TOKEN: &str = "MissingServiceAccountToken";
/// The token is not one for this pod's service account and audience, or it has expired.
pub const INVALID_TOKEN: &str = "InvalidServiceAccountToken";
/// IRSA without a role: the service account has no `eks.amazonaws.com/role-arn`.
pub const NO_ROLE: &str = "NoRoleForServiceAccount";
/// The Kubernetes API did not answer a lookup (service account, pod, node).
pub const KUBERNETES_API: &str = "KubernetesApiError";
/// No region: none in the class, none in the provider's environment, none on the node.
pub const NO_REGION: &str = "RegionNotFound";
/// The class names no object: the driver refuses an answer without object versions.
pub const NO_OBJECTS: &str = "NoObjects";
/// STS could not be asked (the call failed below the service).
pub const STS_UNAVAILABLE: &str = "StsUnavailable";
/// The Pod Identity Agent could not be asked, or answered without a code.
pub const POD_IDENTITY_AGENT: &str = "PodIdentityAgentError";
/// The provider keeps a cache for this many identities at most: those with an unexpired
/// acceptance, when it must forget some.
pub const TOO_MANY_IDENTITIES: &str = "TooManyIdentities";
/// jmesPath: the value is not JSON.
pub const JMES_NOT_JSON: &str = "JmesPathValueNotJson";
/// jmesPath: the expression does not parse, or fails on the value.
pub const JMES_INVALID: &str = "InvalidJmesPath";
/// jmesPath: the expression selects nothing (null).
pub const JMES_NO_MATCH: &str = "JmesPathNoMatch";
/// jmesPath: the expression selects something other than a string.
pub const JMES_NOT_STRING: &str = "JmesPathResultNotString";
/// The files add up to more than the driver takes in one answer.
pub const TOO_LARGE: &str = "ResponseTooLarge";

#[derive(Debug, Clone)]
pub struct Failure {
    pub code: Cow<'static, str>,
    pub cause: String,
    /// The object (its file name) the failure is about, if one.
    pub object: Option<String>,
}

impl Failure {
    pub fn new(code: &'static str, cause: impl Into<String>) -> Failure {
        Failure {
            code: Cow::Borrowed(code),
            cause: cause.into(),
            object: None,
        }
    }

    /// A failure with a code another service chose (STS's, the agent's, Secrets Manager's).
    pub fn coded(code: String, cause: impl Into<String>) -> Failure {
        Failure {
            code: Cow::Owned(code),
            cause: cause.into(),
            object: None,
        }
    }

    pub fn about(mut self, object: &str) -> Failure {
        self.object = Some(object.to_owned());
        self
    }

    /// A refused class, in the AWS provider's words.
    pub fn class(err: SpecError) -> Failure {
        Failure::new(INVALID_CLASS, err.0)
    }

    /// An object that could not be read: the service's own error code where it answered one
    /// (`ResourceNotFoundException`, `ParameterNotFound`, `AccessDeniedException`, ...), else
    /// the kind of failure.
    pub fn of_read(err: &Error) -> Failure {
        let code = match err.upstream_detail() {
            Some(upstream) if !upstream.code.is_empty() => Cow::Owned(upstream.code.clone()),
            _ => Cow::Borrowed(match err.kind() {
                ErrorKind::InvalidSelector => "InvalidObjectName",
                ErrorKind::NotFound => "NotFound",
                ErrorKind::AccessDenied => "AccessDenied",
                ErrorKind::Decryption => "DecryptionFailure",
                ErrorKind::InvalidRequest => "InvalidRequest",
                ErrorKind::Unavailable => "Unavailable",
                ErrorKind::Config => "ConfigurationError",
                ErrorKind::Io | ErrorKind::Internal => "InternalError",
            }),
        };
        Failure {
            code,
            cause: err.message().to_owned(),
            object: None,
        }
    }
}
