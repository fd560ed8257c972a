//! The HTTP API: the requests the mount's and `serve`'s runs make, values and errors.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::support::http::{Conn, Response, TOKEN_HEADER};

use super::differs;
use super::seed::{
    BINARY, CURRENT, Canary, ESCAPED, JSON_KEY, PLAIN, PREVIOUS, V_PREVIOUS, V_UNKNOWN, json_with,
    text_of,
};

/// Where requests go: TCP (with the token) or the Unix socket (as root, no token).
pub(super) enum Front {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Front {
    pub(super) async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut conn = match self {
            Front::Tcp(addr) => Conn::tcp(*addr).await,
            Front::Unix(path) => Conn::unix(path).await,
        };
        conn.send(method, target, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }
}

/// The value in a 200 answer: SecretString's bytes, or SecretBinary decoded.
pub(super) fn value_of(r: &Response) -> Option<Vec<u8>> {
    if r.status != 200 {
        return None;
    }
    let json: Value = serde_json::from_slice(&r.body).ok()?;
    match (json["SecretString"].as_str(), json["SecretBinary"].as_str()) {
        (Some(s), _) => Some(s.as_bytes().to_vec()),
        (None, Some(b)) => STANDARD.decode(b).ok(),
        (None, None) => None,
    }
}

pub(super) fn check_value(what: &str, r: &Response, want: &[u8], failures: &mut Vec<String>) {
    match value_of(r) {
        Some(got) => failures.extend(differs(what, &got, want)),
        None => failures.push(format!("{what}: status {}, want a value", r.status)),
    }
}

/// (secret id, extra query parameters, the value) of every canary the API serves.
fn http_cases(c: &[Canary]) -> Vec<(&'static str, String, Vec<u8>)> {
    let json_of = |key: &str, i: usize| json_with(key, text_of(c, i)).into_bytes();
    vec![
        ("canary/json", String::new(), json_of("password", JSON_KEY)),
        ("canary/plain", String::new(), c[PLAIN].bytes.clone()),
        ("canary/binary", String::new(), c[BINARY].bytes.clone()),
        ("canary/escaped", String::new(), json_of("token", ESCAPED)),
        (
            "canary/escaped-plain",
            String::new(),
            c[ESCAPED].bytes.clone(),
        ),
        (
            "canary/versions",
            String::new(),
            json_of("password", CURRENT),
        ),
        (
            "canary/versions",
            "versionStage=AWSPREVIOUS".to_owned(),
            json_of("password", PREVIOUS),
        ),
        (
            "canary/versions",
            format!("versionId={V_PREVIOUS}"),
            json_of("password", PREVIOUS),
        ),
        (
            "canary/json",
            "refreshNow=true".to_owned(),
            json_of("password", JSON_KEY),
        ),
        (
            "canary/binary",
            "refreshNow=1".to_owned(),
            c[BINARY].bytes.clone(),
        ),
    ]
}

pub(super) fn query_route(id: &str, params: &str) -> String {
    if params.is_empty() {
        format!("/secretsmanager/get?secretId={id}")
    } else {
        format!("/secretsmanager/get?secretId={id}&{params}")
    }
}

pub(super) fn path_route(id: &str, params: &str) -> String {
    if params.is_empty() {
        format!("/v1/{id}")
    } else {
        format!("/v1/{id}?{params}")
    }
}

/// Every canary through both routes.
pub(super) async fn http_canaries(
    front: &Front,
    token: &str,
    c: &[Canary],
    failures: &mut Vec<String>,
) {
    let headers: &[(&str, &str)] = match front {
        Front::Tcp(_) => &[(TOKEN_HEADER, token)],
        Front::Unix(_) => &[],
    };
    for (id, params, want) in http_cases(c) {
        for target in [query_route(id, &params), path_route(id, &params)] {
            let r = front.send("GET", &target, headers).await;
            check_value(&format!("GET {target}"), &r, &want, failures);
        }
    }
}

/// A label, a method, a target and headers.
type Request<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>);

/// Requests that must fail; their bodies are kept (as `(label, body)`), to be searched.
pub(super) async fn http_errors(
    front: &Front,
    token: &str,
    bodies: &mut Vec<(String, Vec<u8>)>,
    failures: &mut Vec<String>,
) {
    let with_token: Vec<(&str, &str)> = match front {
        Front::Tcp(_) => vec![(TOKEN_HEADER, token)],
        Front::Unix(_) => vec![],
    };
    let mut forwarded = with_token.clone();
    forwarded.push(("X-Forwarded-For", "203.0.113.9"));
    let json = query_route("canary/json", "");
    // A wrong token one character off the real one (a stale or mistyped token).
    let last = if token.ends_with('x') { "y" } else { "x" };
    let near_miss = format!("{}{last}", &token[..token.len() - 1]);
    let cases: Vec<Request> = vec![
        (
            "a bad token",
            "GET",
            json.clone(),
            vec![(TOKEN_HEADER, near_miss.as_str())],
        ),
        ("no token", "GET", json.clone(), vec![]),
        (
            "a missing secret",
            "GET",
            query_route("canary/missing", ""),
            with_token.clone(),
        ),
        (
            "a missing secret, path route",
            "GET",
            path_route("canary/missing", ""),
            with_token.clone(),
        ),
        (
            "an unknown parameter",
            "GET",
            query_route("canary/json", "bogus=1"),
            with_token.clone(),
        ),
        (
            "no secretId",
            "GET",
            "/secretsmanager/get".to_owned(),
            with_token.clone(),
        ),
        (
            "a bad refreshNow",
            "GET",
            query_route("canary/json", "refreshNow=maybe"),
            with_token.clone(),
        ),
        (
            "an unknown stage",
            "GET",
            query_route("canary/versions", "versionStage=AWSPENDING"),
            with_token.clone(),
        ),
        (
            "an unknown version id",
            "GET",
            query_route("canary/versions", &format!("versionId={V_UNKNOWN}")),
            with_token.clone(),
        ),
        ("X-Forwarded-For", "GET", json.clone(), forwarded),
        ("POST", "POST", json.clone(), with_token.clone()),
        (
            "an unknown route",
            "GET",
            "/nope".to_owned(),
            with_token.clone(),
        ),
    ];
    for (label, method, target, headers) in cases {
        // The Unix socket asks for no token (the policy decides: root is allowed), and its
        // callers are local by construction.
        if matches!(front, Front::Unix(_))
            && (label.contains("token") || label.contains("Forwarded"))
        {
            continue;
        }
        let r = front.send(method, &target, &headers).await;
        if r.status == 200 {
            failures.push(format!("{label} ({method} {target}): 200, want an error"));
        }
        bodies.push((
            format!("body of the {} answer to {label}", r.status),
            r.body,
        ));
    }
}
