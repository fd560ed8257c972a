//! How the fake spells things on the wire: error codes and responses in the
//! AWS JSON 1.1 protocol, request fields, timestamps, ARNs and UUIDs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

pub(super) const REGION: &str = "us-east-1";
pub(super) const ACCOUNT: &str = "123456789012";

pub(super) const NOT_FOUND: &str = "ResourceNotFoundException";
pub(super) const INVALID_PARAMETER: &str = "InvalidParameterException";
pub(super) const INVALID_NEXT_TOKEN: &str = "InvalidNextTokenException";
pub(super) const SERIALIZATION: &str = "SerializationException";
pub(super) const UNKNOWN_OPERATION: &str = "UnknownOperationException";
pub(super) const INTERNAL: &str = "InternalServiceError";

/// Shared by every fake in the process so version ids never repeat, even
/// between two fakes a test compares.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub(super) struct ApiError {
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub(super) fn invalid_parameter(message: impl Into<String>) -> Self {
        ApiError::new(INVALID_PARAMETER, message)
    }

    pub(super) fn secret_not_found() -> Self {
        ApiError::new(
            NOT_FOUND,
            "Secrets Manager can't find the specified secret.",
        )
    }

    fn status(&self) -> StatusCode {
        if self.code == INTERNAL {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        }
    }
}

pub(super) fn opt_str<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "{field} must be a string."
        ))),
    }
}

pub(super) fn required_str<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<&'a str, ApiError> {
    opt_str(body, field)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid_parameter(format!("{field} is required.")))
}

pub(super) fn opt_max_results(
    body: &Map<String, Value>,
    limit: usize,
) -> Result<Option<usize>, ApiError> {
    match body.get("MaxResults") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=limit).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "MaxResults must be an integer between 1 and {limit}."
                ))
            }),
    }
}

/// Milliseconds, as AWS returns them, in a JSON number with a fraction.
pub(super) fn epoch_seconds(time: SystemTime) -> Value {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    json!(millis as f64 / 1000.0)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn arn_for(name: &str) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut hash = fnv1a(name.as_bytes());
    let suffix: String = (0..6)
        .map(|_| {
            let c = char::from(ALPHABET[(hash % 62) as usize]);
            hash /= 62;
            c
        })
        .collect();
    format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}")
}

/// UUID-shaped (36 chars), as version and request ids are; the counter in the
/// last group makes it unique.
pub(super) fn generate_uuid(seed: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let hash = fnv1a(seed.as_bytes()) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        hash & 0xfff,
        0x8000 | ((hash >> 48) & 0x3fff),
        n & 0xffff_ffff_ffff,
    )
}

pub(super) fn error_response(error: &ApiError) -> Response<Full<Bytes>> {
    json_response(
        error.status(),
        &json!({ "__type": error.code, "message": error.message }),
        Some(error.code),
    )
}

pub(super) fn json_response(
    status: StatusCode,
    body: &Value,
    error_type: Option<&str>,
) -> Response<Full<Bytes>> {
    let request_id = generate_uuid("request");
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amzn-RequestId", request_id);
    if let Some(code) = error_type {
        response = response.header("x-amzn-ErrorType", code);
    }
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    response
        .body(Full::new(Bytes::from(bytes)))
        .expect("status and headers are valid")
}

/// Bytes as they are, with this status. A success claims to be JSON, as the service's
/// answers do; an error page says it is HTML, as a proxy's does.
pub(super) fn raw_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let content_type = if status.is_success() {
        "application/x-amz-json-1.1"
    } else {
        "text/html"
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header("x-amzn-RequestId", generate_uuid("request"))
        .body(Full::new(Bytes::from(body)))
        .expect("status and headers are valid")
}

/// 64 bytes of noise, the same each time: an invalid UTF-8 byte first, so no parser can take
/// them for JSON.
pub(super) fn garbage() -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    std::iter::once(0xff)
        .chain((1..64).map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        }))
        .collect()
}

/// `answer` with each value in it (GetSecretValue's, or each of a batch's `SecretValues`) a
/// `SecretBinary` that is not base64.
pub(super) fn not_base64(mut answer: Value) -> Value {
    fn spoil(entry: &mut Value) {
        if let Some(entry) = entry.as_object_mut()
            && (entry.remove("SecretString").is_some() | entry.remove("SecretBinary").is_some())
        {
            entry.insert("SecretBinary".into(), json!("%% not base64 %%"));
        }
    }
    spoil(&mut answer);
    if let Some(Value::Array(values)) = answer.get_mut("SecretValues") {
        values.iter_mut().for_each(spoil);
    }
    answer
}

/// What a load balancer answers when it has no answer of the service to give.
pub(super) fn error_page(status: u16) -> Vec<u8> {
    format!("<html><body><h1>{status}</h1>The service is not answering.</body></html>\n")
        .into_bytes()
}
