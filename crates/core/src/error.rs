//! Errors of the engine and its sources.
//!
//! Every failure is classified once, where it happens, into an [`ErrorKind`] that the front
//! ends map onto their own vocabulary (an exit code, an errno, an HTTP status). Upstream
//! errors are classified by their Secrets Manager error code, never by HTTP status: moto
//! answers 404 where AWS answers 400.
//!
//! No error message ever carries a secret value: messages name secrets, never their contents.

use std::fmt;
use std::sync::Arc;

/// `text` with its control characters escaped (`\n`, `\u{7}`), for a message that repeats
/// what it was given (a field name, an id, a query parameter): every error, log line and
/// plain-text answer stays one line.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut line = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line.into()
}

/// What went wrong, in the terms every front end needs to decide its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The selector or secret id is malformed; nothing was sent upstream.
    InvalidSelector,
    /// The secret, version, stage or JSON key does not exist.
    NotFound,
    /// Secrets Manager or the local access policy refused.
    AccessDenied,
    /// Secrets Manager could not decrypt the value with its KMS key.
    Decryption,
    /// Secrets Manager rejected the request as invalid (e.g. a secret scheduled for deletion).
    InvalidRequest,
    /// A failure that may pass: throttling, 5xx, timeouts, connection errors.
    Unavailable,
    /// secretsfs itself is misconfigured (source, region, credentials, policy).
    Config,
    /// A local I/O failure, such as writing the output.
    Io,
    /// Anything else secretsfs did not expect.
    Internal,
}

impl ErrorKind {
    /// Transient failures are the ones a stale value may mask (docs/ARCHITECTURE.md#cache).
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

/// How an upstream call failed, kept so the HTTP front end can pass it through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The Secrets Manager error code (`ResourceNotFoundException`), or a synthetic one for
    /// failures below the service (`TimeoutError`, `ConnectionError`).
    pub code: String,
    /// The HTTP status Secrets Manager answered with, when it answered at all.
    pub status: Option<u16>,
    /// The service's own message, passed through by the HTTP API as the agent does.
    pub message: Option<String>,
}

#[derive(Debug, Clone)]
struct Inner {
    kind: ErrorKind,
    message: String,
    upstream: Option<Upstream>,
}

/// An error of the engine: cheap to clone, because one failed upstream call is shared by every
/// reader that waited on it.
#[derive(Clone)]
pub struct Error(Arc<Inner>);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Arc::new(Inner {
            kind,
            message: message.into(),
            upstream: None,
        }))
    }

    pub fn upstream(kind: ErrorKind, message: impl Into<String>, upstream: Upstream) -> Self {
        Error(Arc::new(Inner {
            kind,
            message: message.into(),
            upstream: Some(upstream),
        }))
    }

    pub fn invalid_selector(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidSelector, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn upstream_detail(&self) -> Option<&Upstream> {
        self.0.upstream.as_ref()
    }

    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }
}

/// Maps a Secrets Manager (or Parameter Store) error code onto its kind. Unknown codes are not transient: masking
/// an error we do not understand with a stale value would hide it.
pub fn classify_code(code: &str) -> ErrorKind {
    match code {
        "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => {
            ErrorKind::NotFound
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "NotAuthorized" => ErrorKind::AccessDenied,
        // Parameter Store's SecureString: the KMS key is wrong, disabled or not usable.
        "DecryptionFailure"
        | "InvalidKeyId"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException" => ErrorKind::Decryption,
        "InvalidRequestException"
        | "InvalidParameterException"
        | "InvalidNextTokenException"
        | "ValidationException"
        | "ValidationError"
        | "ParameterVersionLabelLimitExceeded" => ErrorKind::InvalidRequest,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "InternalServiceError"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)?;
        if let Some(up) = &self.0.upstream {
            let code = one_line(&up.code);
            if !self.0.message.contains(code.as_ref()) {
                write!(f, " ({code})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("upstream", &self.0.upstream)
            .finish()
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify_by_name_not_status() {
        assert_eq!(
            classify_code("ResourceNotFoundException"),
            ErrorKind::NotFound
        );
        assert_eq!(classify_code("ThrottlingException"), ErrorKind::Unavailable);
        assert_eq!(
            classify_code("InternalServiceError"),
            ErrorKind::Unavailable
        );
        assert_eq!(classify_code("DecryptionFailure"), ErrorKind::Decryption);
        assert_eq!(
            classify_code("AccessDeniedException"),
            ErrorKind::AccessDenied
        );
        assert_eq!(
            classify_code("InvalidRequestException"),
            ErrorKind::InvalidRequest
        );
        assert_eq!(classify_code("ParameterNotFound"), ErrorKind::NotFound);
        assert_eq!(
            classify_code("ParameterVersionNotFound"),
            ErrorKind::NotFound
        );
        assert_eq!(classify_code("InvalidKeyId"), ErrorKind::Decryption);
        assert_eq!(classify_code("InternalServerError"), ErrorKind::Unavailable);
        assert_eq!(classify_code("SomethingNew"), ErrorKind::Internal);
    }

    #[test]
    fn only_unavailable_is_transient() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AccessDenied,
            ErrorKind::Decryption,
            ErrorKind::InvalidRequest,
            ErrorKind::InvalidSelector,
            ErrorKind::Config,
            ErrorKind::Internal,
        ] {
            assert!(!kind.is_transient(), "{kind:?}");
        }
        assert!(ErrorKind::Unavailable.is_transient());
    }

    #[test]
    fn display_names_the_code_once() {
        let e = Error::upstream(
            ErrorKind::NotFound,
            "secret prod/db not found",
            Upstream {
                code: "ResourceNotFoundException".into(),
                status: Some(400),
                message: None,
            },
        );
        assert_eq!(
            e.to_string(),
            "secret prod/db not found (ResourceNotFoundException)"
        );
    }
}
