//! Every answer of the HTTP API that is not a value: a status and a plain-text or AWS-style
//! JSON body, as the agent gives them. The one mapping of an engine error onto a status and a
//! body ([`refusal_for`]), and the API's own refusals by name (docs/ARCHITECTURE.md#errors).

use hyper::StatusCode;
use serde::Serialize;

use secretsfs_core::error::{Error, ErrorKind};

/// An answer that is not a secret.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub body: String,
    pub json: bool,
}

const POLICY_DENIED: &str = "access denied by the secretsfs policy";

impl Refusal {
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Self {
        Refusal {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: body.into(),
            json: false,
        }
    }

    pub(crate) fn aws(status: u16, code: &str, message: Option<&str>) -> Self {
        #[derive(Serialize)]
        struct AwsError<'a> {
            #[serde(rename = "__type")]
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'a str>,
        }
        // As the agent: an empty message, or an InternalFailure, carries no message at all.
        let message = message.filter(|m| !m.is_empty() && code != "InternalFailure");
        Refusal {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: serde_json::to_string(&AwsError { code, message }).unwrap_or_default(),
            json: true,
        }
    }

    /// Over TCP without the SSRF token, as the agent.
    pub(crate) fn bad_token() -> Self {
        Refusal::text(403, "Bad Token")
    }

    /// The access policy's no, for a caller of the Unix socket (the agent has no policy: its
    /// AccessDeniedException shape, with a status of its own so that clients tell it from
    /// Secrets Manager's 400).
    pub(crate) fn denied_by_policy() -> Self {
        Refusal::aws(403, "AccessDeniedException", Some(POLICY_DENIED))
    }

    /// A new connection past `max_conn` (all but `/ping`).
    pub(crate) fn connection_limit() -> Self {
        Refusal::text(429, "Connection limit exceeded")
    }

    /// Whether this is a denial (the token or the policy) rather than a failure: what the
    /// audit records as denied.
    pub(crate) fn is_denial(&self) -> bool {
        self.status == StatusCode::FORBIDDEN
    }
}

/// The status an engine error is answered with, as the agent does: Secrets Manager's own
/// status passed through, 504 for a timeout, 502 for a connection failure; for sources
/// without an HTTP service behind them (the file source), what AWS would answer.
fn status_of(err: &Error) -> u16 {
    if let Some(up) = err.upstream_detail() {
        return match (up.code.as_str(), up.status) {
            ("TimeoutError", _) => 504,
            ("ConnectionError" | "ResponseError", _) => 502,
            (_, Some(status)) => status,
            _ => 500,
        };
    }
    match err.kind() {
        ErrorKind::NotFound
        | ErrorKind::AccessDenied
        | ErrorKind::InvalidSelector
        | ErrorKind::InvalidRequest
        | ErrorKind::Decryption => 400,
        ErrorKind::Unavailable => 502,
        ErrorKind::Config | ErrorKind::Io | ErrorKind::Internal => 500,
    }
}

/// The agent's mapping of a failure onto a status and an AWS-style body.
pub fn refusal_for(err: &Error) -> Refusal {
    let status = status_of(err);
    if let Some(up) = err.upstream_detail() {
        return match up.code.as_str() {
            "TimeoutError" => Refusal::aws(status, "TimeoutError", Some("Timeout")),
            "ConnectionError" => Refusal::aws(status, "ConnectionError", Some("Read Error")),
            "ResponseError" => Refusal::aws(status, "ConnectionError", Some("Response Error")),
            code if up.status.is_some() => Refusal::aws(status, code, up.message.as_deref()),
            _ => Refusal::aws(status, "InternalFailure", None),
        };
    }
    // Sources without an HTTP service behind them (the file source) answer as AWS would.
    match err.kind() {
        ErrorKind::NotFound => Refusal::aws(
            status,
            "ResourceNotFoundException",
            Some("Secrets Manager can't find the specified secret."),
        ),
        ErrorKind::AccessDenied => {
            Refusal::aws(status, "AccessDeniedException", Some(err.message()))
        }
        ErrorKind::InvalidSelector | ErrorKind::InvalidRequest => {
            Refusal::aws(status, "InvalidParameterException", Some(err.message()))
        }
        ErrorKind::Decryption => Refusal::aws(status, "DecryptionFailure", Some(err.message())),
        ErrorKind::Unavailable => Refusal::aws(status, "ConnectionError", Some("Read Error")),
        _ => Refusal::aws(status, "InternalFailure", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secretsfs_core::error::Upstream;

    #[test]
    fn kinds_without_upstream_detail_answer_as_aws_would() {
        let status = |kind| refusal_for(&Error::new(kind, "x")).status.as_u16();
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AccessDenied,
            ErrorKind::InvalidSelector,
            ErrorKind::InvalidRequest,
            ErrorKind::Decryption,
        ] {
            assert_eq!(status(kind), 400, "{kind:?}");
        }
        assert_eq!(status(ErrorKind::Unavailable), 502);
        for kind in [ErrorKind::Config, ErrorKind::Io, ErrorKind::Internal] {
            assert_eq!(status(kind), 500, "{kind:?}");
        }
    }

    #[test]
    fn upstream_statuses_pass_through_and_transport_failures_are_gateway_errors() {
        let upstream = |code: &str, status| {
            let detail = Upstream {
                code: code.into(),
                status,
                message: Some("m".into()),
            };
            refusal_for(&Error::upstream(ErrorKind::Unavailable, "x", detail))
        };
        assert_eq!(upstream("ThrottlingException", Some(400)).status, 400);
        assert_eq!(upstream("TimeoutError", None).status, 504);
        assert_eq!(upstream("ConnectionError", None).status, 502);
        assert_eq!(upstream("ResponseError", None).status, 502);
        assert_eq!(upstream("Whatever", None).status, 500);
        let timeout = upstream("TimeoutError", None);
        assert_eq!(
            timeout.body,
            r#"{"__type":"TimeoutError","message":"Timeout"}"#
        );
    }

    #[test]
    fn the_api_s_own_refusals() {
        assert!(Refusal::bad_token().is_denial());
        assert!(Refusal::denied_by_policy().is_denial());
        assert!(!Refusal::connection_limit().is_denial());
        assert_eq!(Refusal::connection_limit().status.as_u16(), 429);
    }
}
