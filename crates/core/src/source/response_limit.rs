//! A bound on the size of one answer of Secrets Manager or Parameter Store, before the SDK
//! reads it: the SDK reads a body whole, then deserializes a copy, so a 100 MB value cost the
//! process over 300 MB at its peak, and the allocator kept much of it, even though
//! [`super::checked`] refuses the value afterwards.
//!
//! Every answer secretsfs asks for is far smaller than [`MAX_RESPONSE_BYTES`]: a
//! BatchGetSecretValue of 20 values at the service's 64 KiB each, every byte escaped as JSON's
//! `\u0000`, is under 8 MiB. An answer that says it is bigger (Content-Length) is refused
//! unread; one that does not say is cut off past the bound.

use std::error::Error as StdError;
use std::fmt;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

use crate::error::{Error, ErrorKind, Upstream};

pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
const SHOWN: &str = "16 MiB";

/// The interceptor of both clients (see the module's documentation).
#[derive(Debug)]
pub(super) struct ResponseLimit;

/// An answer whose Content-Length is over the bound.
#[derive(Debug)]
struct TooLarge(u64);

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Content-Length {}", self.0)
    }
}

impl StdError for TooLarge {}

impl Intercept for ResponseLimit {
    fn name(&self) -> &'static str {
        "secretsfs-response-limit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = length.filter(|&n| n > MAX_RESPONSE_BYTES as u64) {
            return Err(Box::new(TooLarge(length)));
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_RESPONSE_BYTES));
        Ok(())
    }
}

/// The error of an SDK failure caused by this bound, if it was: what an unreadable answer is
/// (HTTP 500, exit 71, `EIO`), never masked by a stale value since it will not pass.
pub(super) fn refusal(what: &str, err: &(dyn StdError + 'static)) -> Option<Error> {
    let mut cause = Some(err);
    let mut said = None;
    while let Some(e) = cause {
        if let Some(TooLarge(length)) = e.downcast_ref::<TooLarge>() {
            said = Some(format!(" (Content-Length {length}); not read"));
        } else if e.is::<http_body_util::LengthLimitError>() {
            said = Some("; cut off there".to_owned());
        }
        cause = e.source();
    }
    let said = said?;
    Some(Error::upstream(
        ErrorKind::Internal,
        format!("{what}: the answer is over the limit of {SHOWN} for one answer{said}"),
        Upstream {
            code: "InternalFailure".into(),
            status: None,
            message: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full, Limited};

    use super::*;

    #[tokio::test]
    async fn a_body_cut_off_at_the_bound_is_refused_as_unreadable() {
        let body = Full::new(bytes::Bytes::from(vec![0u8; 10]));
        let cut = Limited::new(body, 5).collect().await.unwrap_err();
        let err = refusal("GetSecretValue x", cut.as_ref()).expect("recognised");
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.message(),
            "GetSecretValue x: the answer is over the limit of 16 MiB for one answer; cut off there"
        );
        let other = std::io::Error::other("something else");
        assert!(refusal("GetSecretValue x", &other).is_none());
    }
}
