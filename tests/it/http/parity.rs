//! The agent parity table: every rule of notes/agent-http.md sections 0-3 and 7, one request
//! at a time against the demo file, plus keep-alive across answers of every kind.

use std::net::SocketAddr;

use super::{API_KEY_BODY, serve_demo};
use crate::support::http::{self, Conn, Response, TOKEN, TOKEN_HEADER};

const DB_CURRENT_VALUE: &str =
    r#"{"username":"app","password":"demo-Pa55:w/rd","host":"db.internal","port":5432}"#;
const DB_PREVIOUS_VALUE: &str =
    r#"{"username":"app","password":"old-demo-pass","host":"db.internal","port":5432}"#;
const DB_PREVIOUS_ID: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const NOT_FOUND_BODY: &str = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;

/// A success body of the file source, in the agent's field order.
fn demo_body(
    name: &str,
    version_id: &str,
    string: Option<&str>,
    binary: Option<&str>,
    stages: &[&str],
    created: &str,
) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = format!(
        r#"{{"ARN":{},"Name":{},"VersionId":{}"#,
        q(&format!(
            "arn:aws:secretsmanager:local:000000000000:secret:{name}"
        )),
        q(name),
        q(version_id)
    );
    if let Some(s) = string {
        out.push_str(&format!(r#","SecretString":{}"#, q(s)));
    }
    if let Some(b) = binary {
        out.push_str(&format!(r#","SecretBinary":{}"#, q(b)));
    }
    out.push_str(&format!(
        r#","VersionStages":{},"CreatedDate":{}}}"#,
        serde_json::to_string(stages).unwrap(),
        q(created)
    ));
    out
}

/// What a case expects besides its status.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// This exact body.
    Body(&'a str),
    /// A JSON error body with this `__type`.
    Type(&'static str),
    /// A JSON error body with any `__type`.
    AnyType,
    /// Nothing about the body (HEAD has none).
    StatusOnly,
}

/// The headers of a case.
#[derive(Clone, Copy)]
enum H<'a> {
    /// The token, in the agent's first header.
    Token,
    /// No header at all.
    Bare,
    /// Only this header.
    Only(&'a str, &'a str),
    /// The token and this header.
    Plus(&'a str, &'a str),
}

const T: H<'static> = H::Token;
const N: H<'static> = H::Bare;

impl<'a> H<'a> {
    fn headers(self) -> Vec<(&'a str, &'a str)> {
        match self {
            H::Token => vec![(TOKEN_HEADER, TOKEN)],
            H::Bare => vec![],
            H::Only(name, value) => vec![(name, value)],
            H::Plus(name, value) => vec![(TOKEN_HEADER, TOKEN), (name, value)],
        }
    }
}

/// method, target, headers, status, body; a target starting with `?` is a query of
/// `/secretsmanager/get`.
type Case<'a> = (&'static str, &'a str, H<'a>, u16, Want<'a>);

fn target_of(target: &str) -> String {
    match target.strip_prefix('?') {
        Some(query) => format!("/secretsmanager/get?{query}"),
        None => target.to_owned(),
    }
}

/// What is wrong with `response` for a case, if anything.
fn check(status: u16, want: Want<'_>, response: &Response) -> Option<String> {
    let mut wrong = Vec::new();
    if response.status != status {
        wrong.push(format!("status {} (want {status})", response.status));
    }
    let json_type = || -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
        Some(json.get("__type")?.as_str()?.to_owned())
    };
    let body_ok = match want {
        Want::Body(body) => response.body == body.as_bytes(),
        Want::Type(t) => json_type().as_deref() == Some(t),
        Want::AnyType => json_type().is_some(),
        Want::StatusOnly => true,
    };
    if !body_ok {
        wrong.push(format!("body {}", response.describe()));
    } else if let Want::Body(body) = want
        && body.starts_with('{')
        && !response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    {
        wrong.push(format!(
            "content-type {:?} for a JSON body",
            response.header("content-type")
        ));
    }
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// Runs every case on a connection of its own; returns what failed.
async fn run_table(addr: SocketAddr, cases: &[Case<'_>]) -> Vec<String> {
    let mut failures = Vec::new();
    for &(method, target, headers, status, want) in cases {
        let target = target_of(target);
        let headers = headers.headers();
        let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
        let what = format!("{method} {target} {names:?}");
        match Conn::tcp(addr).await.send(method, &target, &headers).await {
            Ok(response) => {
                if let Some(wrong) = check(status, want, &response) {
                    failures.push(format!("{what}: {wrong}"));
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
    }
    failures
}

/// Every rule of notes/agent-http.md sections 0-3 and 7, request by request, against the
/// demo file.
#[tokio::test]
async fn parity_with_the_agent_request_by_request() {
    use Want::{AnyType, Body, StatusOnly, Type};
    let served = serve_demo().await;
    let current = demo_body(
        "prod/db",
        "a1b2c3d4-0000-4000-8000-000000000002",
        Some(DB_CURRENT_VALUE),
        None,
        &["AWSCURRENT"],
        "1780306200",
    );
    let previous = demo_body(
        "prod/db",
        DB_PREVIOUS_ID,
        Some(DB_PREVIOUS_VALUE),
        None,
        &["AWSPREVIOUS", "blue"],
        "1772357400",
    );
    let binary = demo_body(
        "tls/client.key",
        "c1b2c3d4-0000-4000-8000-000000000001",
        None,
        Some("AAECc2VjcmV0c2ZzLWRlbW///g=="),
        &["AWSCURRENT"],
        "1776240000",
    );
    let (current, previous, binary) = (current.as_str(), previous.as_str(), binary.as_str());
    let by_id = format!("?secretId=prod/db&versionId={DB_PREVIOUS_ID}");
    let by_id_path = format!("/v1/prod/db?versionId={DB_PREVIOUS_ID}");
    let by_id_and_stage = format!("{by_id}&versionStage=AWSPREVIOUS");
    let upper_token = TOKEN.to_uppercase();
    let longer_token = format!("{TOKEN}x");
    let key = Body(API_KEY_BODY);
    let bad_token = Body("Bad Token");
    let not_allowed = Body("Not allowed");
    let not_found = Body("Not found");
    let forwarded = Body("Forwarded");
    let bad_refresh = Body("invalid refreshNow value");
    let no_id = Body("missing parameter secretId");
    let xff = "X-Forwarded-For";

    #[rustfmt::skip]
    let mut cases: Vec<Case<'_>> = vec![
        // Section 7: /ping needs no token, ignores its query, and is GET only.
        ("GET", "/ping", N, 200, Body("healthy")),
        ("GET", "/ping", H::Only(TOKEN_HEADER, "wrong"), 200, Body("healthy")),
        ("GET", "/ping", T, 200, Body("healthy")),
        ("GET", "/ping?x=1", N, 200, Body("healthy")),
        ("GET", "/ping", H::Only(xff, "10.0.0.1"), 200, Body("healthy")),
        ("POST", "/ping", N, 405, not_allowed),
        ("POST", "/ping", T, 405, not_allowed),
        ("HEAD", "/ping", N, 405, StatusOnly),
        // Section 3: the token, in either header, exactly.
        ("GET", "?secretId=api-key", N, 403, bad_token),
        ("GET", "?secretId=api-key", H::Only(TOKEN_HEADER, "wrong"), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only(TOKEN_HEADER, &longer_token), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only(TOKEN_HEADER, &TOKEN[1..]), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only(TOKEN_HEADER, &upper_token), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only(TOKEN_HEADER, ""), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only("X-Vault-Token", "wrong"), 403, bad_token),
        ("GET", "?secretId=api-key", H::Only("X-Vault-Token", TOKEN), 200, key),
        ("GET", "/v1/api-key", H::Only("X-Vault-Token", TOKEN), 200, key),
        ("GET", "?secretId=api-key", H::Only("x-aws-parameters-secrets-token", TOKEN), 200, key),
        ("GET", "?secretId=api-key", H::Only("Authorization", TOKEN), 403, bad_token),
        // X-Forwarded-For, any value, before the token.
        ("GET", "?secretId=api-key", H::Plus(xff, "54.239.28.85"), 400, forwarded),
        ("GET", "?secretId=api-key", H::Only(xff, "54.239.28.85"), 400, forwarded),
        ("GET", "?secretId=api-key", H::Plus(xff, ""), 400, forwarded),
        ("GET", "/pong", H::Plus("x-forwarded-for", "1.2.3.4"), 400, forwarded),
        // Section 0: routes, and the order of the checks.
        ("GET", "/pong", T, 404, not_found),
        ("GET", "/pong", N, 403, bad_token),
        ("GET", "/secretsmanager/get/", T, 404, not_found),
        ("GET", "/v1", T, 404, not_found),
        ("GET", "/Ping", T, 404, not_found),
        ("GET", "/V1/api-key", T, 404, not_found),
        ("POST", "?secretId=api-key", N, 403, bad_token),
        ("POST", "/v1/api-key", N, 403, bad_token),
        ("HEAD", "?secretId=api-key", T, 405, StatusOnly),
        ("HEAD", "/v1/api-key", T, 405, StatusOnly),
    ];
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        cases.push((method, "?secretId=api-key", T, 405, not_allowed));
        cases.push((method, "/v1/api-key", T, 405, not_allowed));
        cases.push((method, "/pong", T, 405, not_allowed));
    }
    #[rustfmt::skip]
    let more: Vec<Case<'_>> = vec![
        // Sections 1 and 4: bodies, the same from both routes; slashes kept in the path.
        ("GET", "?secretId=api-key", T, 200, key),
        ("GET", "/v1/api-key", T, 200, key),
        ("GET", "/v1/prod/db", T, 200, Body(current)),
        ("GET", "?secretId=prod/db", T, 200, Body(current)),
        ("GET", "?secretId=prod%2Fdb", T, 200, Body(current)),
        ("GET", "?secretId=prod/db&versionStage=AWSCURRENT", T, 200, Body(current)),
        ("GET", "?secretId=prod/db&versionStage=AWSPREVIOUS", T, 200, Body(previous)),
        ("GET", "/v1/prod/db?versionStage=AWSPREVIOUS", T, 200, Body(previous)),
        ("GET", "?secretId=prod/db&versionStage=blue", T, 200, Body(previous)),
        ("GET", &by_id, T, 200, Body(previous)),
        ("GET", &by_id_path, T, 200, Body(previous)),
        ("GET", &by_id_and_stage, T, 200, Body(previous)),
        ("GET", "?secretId=tls/client.key", T, 200, Body(binary)),
        ("GET", "/v1/tls/client.key", T, 200, Body(binary)),
        // Section 2: parameters.
        ("GET", "?secretId=api-key&refreshNow=TRUE", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=true", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=1", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=false", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=False", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=0", T, 200, key),
        ("GET", "/v1/api-key?refreshNow=true", T, 200, key),
        ("GET", "?secretId=api-key&refreshNow=yes", T, 400, bad_refresh),
        ("GET", "?secretId=api-key&refreshNow=", T, 400, bad_refresh),
        ("GET", "?secretId=api-key&refreshNow", T, 400, bad_refresh),
        ("GET", "?refreshNow=yes&secretId=api-key&refreshNow=1", T, 400, bad_refresh),
        ("GET", "/v1/api-key?refreshNow=2", T, 400, bad_refresh),
        ("GET", "?secretId=api-key&abc=1", T, 400, Body("unknown parameter: abc")),
        ("GET", "?secretId=api-key&versionStage=AWSPENDING&abc=XXXXXXXXXXXX", T, 400,
            Body("unknown parameter: abc")),
        ("GET", "?foo=1", T, 400, Body("unknown parameter: foo")),
        ("GET", "?foo=1&secretId=api-key", T, 400, Body("unknown parameter: foo")),
        ("GET", "?SecretId=api-key", T, 400, Body("unknown parameter: SecretId")),
        ("GET", "?a%62c=1&secretId=api-key", T, 400, Body("unknown parameter: abc")),
        ("GET", "/secretsmanager/get", T, 400, no_id),
        ("GET", "?versionStage=x", T, 400, no_id),
        ("GET", "?secretId=", T, 400, no_id),
        ("GET", "?secretId=nope&secretId=api-key", T, 200, key),
        ("GET", "?&&secretId=api-key&&", T, 200, key),
        ("GET", "/v1/", T, 400, Body("missing secret ID")),
        ("GET", "/v1/?versionStage=AWSCURRENT", T, 400, Body("missing secret ID")),
        ("GET", "/v1/x?secretId=y", T, 400, Body("unknown parameter: secretId")),
        ("GET", "/v1/api-key?abc=1", T, 400, Body("unknown parameter: abc")),
        // Errors, as AWS sends them.
        ("GET", "?secretId=nope", T, 400, Body(NOT_FOUND_BODY)),
        ("GET", "/v1/nope", T, 400, Body(NOT_FOUND_BODY)),
        ("GET", "/v1/prod", T, 400, Body(NOT_FOUND_BODY)),
        ("GET", "?secretId=api-key&versionStage=NOPE", T, 400, Type("ResourceNotFoundException")),
        ("GET", "?secretId=a%20b", T, 400, Type("InvalidParameterException")),
        ("GET", "?secretId=a+b", T, 400, Type("InvalidParameterException")),
        // The path is not percent-decoded: this is not prod/db.
        ("GET", "/v1/prod%2Fdb", T, 400, AnyType),
    ];
    cases.extend(more);

    let failures = run_table(served.addr, &cases).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The binary secret has no SecretString key at all.
    let r = http::get(served.addr, "/v1/tls/client.key").await;
    assert_eq!(r.status, 200);
    let json = r.json();
    assert!(
        json.get("SecretString").is_none(),
        "a binary secret has no SecretString"
    );
    assert!(json["SecretBinary"].is_string());

    // Keep-alive: answers of every kind, one after the other on one connection.
    let mut conn = Conn::tcp(served.addr).await;
    let token = [(TOKEN_HEADER, TOKEN)];
    for _ in 0..3 {
        let r = conn
            .get("/secretsmanager/get?secretId=api-key", &token)
            .await;
        assert!(
            r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
            "keep-alive: {}",
            r.describe()
        );
        let r = conn.get("/pong", &token).await;
        assert_eq!((r.status, r.text()), (404, "Not found".to_owned()));
        let r = conn.get("/v1/api-key", &[]).await;
        assert_eq!((r.status, r.text()), (403, "Bad Token".to_owned()));
        let r = conn.get("/v1/nope", &token).await;
        assert_eq!((r.status, r.text()), (400, NOT_FOUND_BODY.to_owned()));
        let r = conn.send("HEAD", "/v1/api-key", &token).await.unwrap();
        assert_eq!(r.status, 405);
    }
    served.stop().await;
}
