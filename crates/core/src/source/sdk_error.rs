//! SDK failures as engine errors, for both AWS sources (Secrets Manager and Parameter Store):
//! the service's error code and status kept for pass-through, a transport failure told apart
//! from an answer that could not be read, and never a word of a body that may hold a value.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::{Error, ErrorKind, Upstream, classify_code, one_line};

/// Turns an SDK failure into an engine error, keeping the code and status for pass-through.
pub(crate) fn classify<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if let Some(refused) = super::response_limit::refusal(what, &err) {
        return refused;
    }
    let detail = chain(&err);
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let Some(code) = service.err().code().map(str::to_owned) else {
                return unreadable(what, status, service.raw().body().bytes(), service.err());
            };
            let message = service.err().message().unwrap_or_default().to_owned();
            Error::upstream(
                classify_code(&code),
                // The service's words, on one line: a proxy or a fake may put a newline in them.
                format!("{what}: {}: {}", one_line(&code), one_line(&message)),
                Upstream {
                    code,
                    status: Some(status),
                    message: Some(message),
                },
            )
        }
        _ if has_source::<CredentialsError>(&err) => {
            Error::config(format!("{what}: no usable AWS credentials: {detail}"))
        }
        SdkError::TimeoutError(_) => unavailable(what, "TimeoutError", &detail, None),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            unavailable(what, "TimeoutError", &detail, None)
        }
        SdkError::DispatchFailure(failure) if failure.is_user() => {
            Error::config(format!("{what}: {detail}"))
        }
        // I/O errors, refused and dropped connections, TLS failures: below the service.
        SdkError::DispatchFailure(_) => unavailable(what, "ConnectionError", &detail, None),
        SdkError::ResponseError(response) => unavailable(
            what,
            "ResponseError",
            &detail,
            Some(response.raw().status().as_u16()),
        ),
        _ => Error::upstream(
            ErrorKind::Internal,
            format!("{what}: {detail}"),
            Upstream {
                code: "InternalFailure".into(),
                status: None,
                message: None,
            },
        ),
    }
}

/// An answer that names no error code: a success the SDK could not read (cut short, not JSON,
/// a SecretBinary that is not base64) or an error whose body is not JSON (a proxy's page).
/// Neither says what Secrets Manager meant, so HTTP answers 500 InternalFailure as the agent
/// does, whatever the status. The kind goes by the status, the one thing known: a 5xx is the
/// service unavailable (so a stale value may still be served), anything else internal.
///
/// The cause never quotes the body, which may hold a value: serde_json's syntax errors give a
/// position only; for JSON the SDK rejected, its own description (the top one: what it
/// expected, never what it found; its sources may quote bytes) stands.
fn unreadable(what: &str, status: u16, body: Option<&[u8]>, err: &dyn StdError) -> Error {
    let size = body.map_or(0, <[u8]>::len);
    let why = match body.map(serde_json::from_slice::<serde::de::IgnoredAny>) {
        None => "no body".to_owned(),
        Some(Err(e)) => format!("not JSON ({e})"),
        Some(Ok(_)) if (200..300).contains(&status) => {
            let sdk = err
                .source()
                .map_or_else(String::new, |e| one_line(&e.to_string()).into_owned());
            format!("JSON, but not the answer expected ({sdk})")
        }
        Some(Ok(_)) => "JSON without an error code".to_owned(),
    };
    let kind = if (500..600).contains(&status) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    };
    Error::upstream(
        kind,
        format!("{what}: unreadable answer, HTTP {status}, {size} bytes: {why}"),
        // No status: it is not passed through.
        Upstream {
            code: "InternalFailure".into(),
            status: None,
            message: None,
        },
    )
}

/// The messages of an error and its sources on one line, each said once: the SDK nests
/// errors that repeat their source's text.
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    one_line(&parts.join(": ")).into_owned()
}

fn unavailable(what: &str, code: &str, detail: &str, status: Option<u16>) -> Error {
    Error::upstream(
        ErrorKind::Unavailable,
        format!("{what}: {code}: {detail}"),
        Upstream {
            code: code.into(),
            status,
            message: None,
        },
    )
}

fn has_source<T: StdError + 'static>(err: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// The SDK's error with no source, as for an error status.
    #[derive(Debug)]
    struct Sdk;
    impl fmt::Display for Sdk {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("unhandled error")
        }
    }
    impl StdError for Sdk {}

    #[test]
    fn an_unreadable_answer_is_internal_failure_by_its_status_without_quoting_it() {
        let cases: [(u16, &[u8], ErrorKind, &str); 5] = [
            (
                200,
                br#"{"SecretString":"s3cret-val"#,
                ErrorKind::Internal,
                "not JSON",
            ),
            (200, b"\xffs3cret-val", ErrorKind::Internal, "not JSON"),
            (
                503,
                b"<html>s3cret-val</html>",
                ErrorKind::Unavailable,
                "HTTP 503",
            ),
            (
                418,
                b"<html>s3cret-val</html>",
                ErrorKind::Internal,
                "HTTP 418",
            ),
            (
                400,
                br#"{"message":"s3cret-val"}"#,
                ErrorKind::Internal,
                "without an error code",
            ),
        ];
        for (status, body, kind, cause) in cases {
            let err = unreadable("GetSecretValue x", status, Some(body), &Sdk);
            let shown = err.to_string();
            assert!(!shown.contains("s3cret"), "{status}: the body is quoted");
            assert_eq!(err.kind(), kind, "{shown}");
            assert!(shown.contains(cause), "{shown}");
            let up = err.upstream_detail().expect("upstream detail");
            assert_eq!((up.code.as_str(), up.status), ("InternalFailure", None));
        }
    }
}
