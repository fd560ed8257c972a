//! Service account tokens as the kubelet hands them to a CSI driver: well-formed JWTs with the
//! claims of a projected token, and a fixed fake signature (nothing in the tests verifies one;
//! STS and the Pod Identity Agent are fakes or moto). Also the time and uid helpers the fakes
//! share, so a token's service account uid is the one `FakeKube` shows.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

pub const ISSUER: &str = "https://kubernetes.default.svc";

const SIGNATURE: &[u8] = b"fake signature: not signed, never verified";

/// A projected token of `namespace`/`service_account` for `audience`, valid from now for
/// `expires_in_secs` (negative: already expired).
pub fn service_account_token(
    namespace: &str,
    service_account: &str,
    audience: &str,
    expires_in_secs: i64,
) -> String {
    let now = now_secs();
    let header = json!({"alg": "RS256", "kid": "test"});
    let payload = json!({
        "aud": [audience],
        "exp": now + expires_in_secs,
        "iat": now,
        "iss": ISSUER,
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {
                "name": service_account,
                "uid": uid("ServiceAccount", Some(namespace), service_account),
            },
        },
        "nbf": now,
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(SIGNATURE)
    )
}

/// The `csi.storage.k8s.io/serviceAccount.tokens` attribute of a Mount request:
/// `{"AUDIENCE":{"token":"...","expirationTimestamp":"...Z"}}`. The expiration is the token's
/// `exp` when it is one of ours, else an hour from now.
pub fn tokens_attribute(entries: &[(&str, &str)]) -> String {
    let mut tokens = Map::new();
    for (audience, token) in entries {
        let expires = expiry(token).unwrap_or_else(|| now_secs() + 3600);
        tokens.insert(
            (*audience).to_owned(),
            json!({"token": token, "expirationTimestamp": rfc3339(expires)}),
        );
    }
    Value::Object(tokens).to_string()
}

/// A JWT's `exp` claim, if it has one that can be read.
fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    payload.get("exp")?.as_i64()
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// `2026-12-08T02:00:00Z`, as Kubernetes and the Pod Identity Agent write times.
pub fn rfc3339(epoch_secs: i64) -> String {
    DateTime::from_secs(epoch_secs)
        .fmt(DateTimeFormat::DateTime)
        .expect("a time in range")
}

/// A UUID-shaped uid, the same every time for the same object.
pub fn uid(kind: &str, namespace: Option<&str>, name: &str) -> String {
    let mut hasher = DefaultHasher::new();
    (kind, namespace, name).hash(&mut hasher);
    let h = hasher.finish();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        (h >> 4) & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}
