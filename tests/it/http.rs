//! The HTTP API, end to end: `secretsfs serve` (and `mount`) as a child process, spoken to
//! over raw HTTP/1.1, against the AWS Secrets Manager Agent's behaviour
//! (notes/agent-http.md), the fake Secrets Manager and moto.
//!
//! Failure messages name requests, never secret values: a body that carries a secret is
//! described by its size.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use futures::future::join_all;

use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::http::{
    self, Conn, HttpMount, Response, Served, TOKEN, TOKEN_HEADER, public_tempdir, run_with_env,
};
use crate::support::moto::Moto;
use crate::support::mount::is_mounted;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-secrets.json");

const API_KEY_BODY: &str = r#"{"ARN":"arn:aws:secretsmanager:local:000000000000:secret:api-key","Name":"api-key","VersionId":"b1b2c3d4-0000-4000-8000-000000000001","SecretString":"demo-api-key-0123456789","VersionStages":["AWSCURRENT"],"CreatedDate":"1779278400"}"#;
const DB_CURRENT_VALUE: &str =
    r#"{"username":"app","password":"demo-Pa55:w/rd","host":"db.internal","port":5432}"#;
const DB_PREVIOUS_VALUE: &str =
    r#"{"username":"app","password":"old-demo-pass","host":"db.internal","port":5432}"#;
const DB_PREVIOUS_ID: &str = "a1b2c3d4-0000-4000-8000-000000000001";
const NOT_FOUND_BODY: &str = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;

fn demo_source() -> String {
    format!("file:{DEMO}")
}

fn aws_args(endpoint_url: &str) -> Vec<String> {
    [
        "--source",
        "aws",
        "--endpoint-url",
        endpoint_url,
        "--region",
        "us-east-1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `secretsfs GLOBAL serve --http-port 0 SERVE_ARGS` with the default token.
async fn serve(global: &[&str], serve_args: &[&str]) -> Served {
    let mut args = global.to_vec();
    args.extend(["serve", "--http-port", "0"]);
    args.extend(serve_args);
    Served::start(&args).await
}

async fn serve_demo() -> Served {
    serve(&["--source", &demo_source()], &[]).await
}

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

fn error_body(code: &str, message: &str) -> String {
    format!(
        r#"{{"__type":{},"message":{}}}"#,
        serde_json::to_string(code).unwrap(),
        serde_json::to_string(message).unwrap()
    )
}

/// Upstream failures reach the client as the agent passes them on: AWS's status and code,
/// or the agent's own codes for connection failures and timeouts.
#[tokio::test]
async fn upstream_errors_pass_through_as_the_agent_maps_them() {
    let fake = FakeSecretsManager::start();
    for name in ["denied", "throttled", "failing", "dropped"] {
        fake.put_string(name, &format!("value of {name}"));
    }
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let cases = [
        (
            "denied",
            Fault::AccessDenied,
            1,
            400,
            error_body(
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/test is not authorized to perform: \
                 secretsmanager:GetSecretValue",
            ),
        ),
        (
            "throttled",
            Fault::Throttling,
            usize::MAX,
            400,
            error_body("ThrottlingException", "Rate exceeded"),
        ),
        (
            "failing",
            Fault::Internal,
            usize::MAX,
            500,
            error_body(
                "InternalServiceError",
                "An error occurred on the server side.",
            ),
        ),
        (
            "dropped",
            Fault::DropConnection,
            usize::MAX,
            502,
            r#"{"__type":"ConnectionError","message":"Read Error"}"#.to_owned(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, fault, times, status, body) in cases {
        fake.inject(Op::GetSecretValue, fault, times);
        let r = http::get(served.addr, &format!("/secretsmanager/get?secretId={name}")).await;
        fake.clear_faults();
        if r.status != status || r.body != body.as_bytes() {
            failures.push(format!(
                "{name} ({fault:?}): status {} body {} (want {status} {body})",
                r.status,
                r.describe()
            ));
        } else if !r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            failures.push(format!(
                "{name}: content-type {:?}",
                r.header("content-type")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Once the faults are gone the same secrets read (no failure was cached).
    let r = http::get(served.addr, "/v1/failing").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.json()["SecretString"] == "value of failing");
}

#[tokio::test]
async fn a_slow_upstream_is_answered_504_within_the_timeout() {
    let fake = FakeSecretsManager::start();
    fake.put_string("slow", "s");
    fake.set_latency(Op::GetSecretValue, Duration::from_secs(30));
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--timeout".into(), "1".into()]);
    let served = serve(&strs(&global), &[]).await;
    let started = Instant::now();
    let r = http::get(served.addr, "/secretsmanager/get?secretId=slow").await;
    let took = started.elapsed();
    fake.set_latency(Op::GetSecretValue, Duration::ZERO);
    assert_eq!(
        (r.status, r.text()),
        (
            504,
            r#"{"__type":"TimeoutError","message":"Timeout"}"#.to_owned()
        )
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
}

#[tokio::test]
async fn a_hundred_concurrent_cold_requests_cost_one_call() {
    let fake = FakeSecretsManager::start();
    fake.put_string("hot", "the hot value");
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(300));
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let addr = served.addr;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move { http::get(addr, "/secretsmanager/get?secretId=hot").await })
        })
        .collect();
    let responses: Vec<Response> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("request task"))
        .collect();
    let first = &responses[0];
    assert_eq!(first.status, 200, "{}", first.describe());
    assert!(
        first.json()["SecretString"] == "the hot value",
        "the value differs"
    );
    for (i, r) in responses.iter().enumerate() {
        assert!(
            r.status == 200 && r.body == first.body,
            "response {i}: status {}, body differs from the first",
            r.status
        );
    }
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
}

#[tokio::test]
async fn refresh_now_fetches_at_once_and_concurrent_refreshes_coalesce() {
    let fake = FakeSecretsManager::start();
    fake.put_string("rotating", "one");
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let addr = served.addr;
    let plain = "/secretsmanager/get?secretId=rotating";
    let refresh = "/secretsmanager/get?secretId=rotating&refreshNow=true";
    let value = |r: &Response| {
        assert_eq!(r.status, 200, "{}", r.describe());
        r.json()["SecretString"].as_str().unwrap().to_owned()
    };

    assert!(value(&http::get(addr, plain).await) == "one");
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    let two = fake.put_string("rotating", "two");
    assert!(
        value(&http::get(addr, plain).await) == "one",
        "cached before refreshNow"
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    let r = http::get(addr, refresh).await;
    assert!(value(&r) == "two", "refreshNow returns the new value");
    assert_eq!(r.json()["VersionId"], two.as_str());
    assert_eq!(fake.calls(Op::GetSecretValue), 2);
    assert!(
        value(&http::get(addr, plain).await) == "two",
        "the refresh updated the cache"
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 2);

    fake.set_latency(Op::GetSecretValue, Duration::from_millis(300));
    fake.put_string("rotating", "three");
    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { http::get(addr, refresh).await }))
        .collect();
    for (i, r) in join_all(tasks).await.into_iter().enumerate() {
        let r = r.expect("request task");
        assert!(value(&r) == "three", "refresh {i}: value differs");
    }
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        3,
        "20 concurrent refreshes share one call"
    );
}

#[tokio::test]
async fn refresh_now_reports_a_failure_while_plain_reads_serve_stale() {
    let fake = FakeSecretsManager::start();
    fake.put_string("flaky", "good value");
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let served = serve(&strs(&global), &[]).await;
    let plain = "/secretsmanager/get?secretId=flaky";
    let good = http::get(served.addr, plain).await;
    assert_eq!(good.status, 200, "{}", good.describe());

    fake.inject(Op::GetSecretValue, Fault::Internal, usize::MAX);
    let calls = fake.calls(Op::GetSecretValue);
    let r = http::get(served.addr, &format!("{plain}&refreshNow=true")).await;
    assert_eq!(
        (r.status, r.describe()),
        (
            500,
            format!(
                "{:?}",
                error_body(
                    "InternalServiceError",
                    "An error occurred on the server side."
                )
            )
        ),
        "refreshNow answers the failure, not the cached value"
    );
    assert!(
        fake.calls(Op::GetSecretValue) > calls,
        "refreshNow called upstream"
    );

    // Past the TTL, a plain read serves the last good value while upstream fails.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = http::get(served.addr, plain).await;
    assert_eq!(stale.status, 200, "{}", stale.describe());
    assert!(
        stale.body == good.body,
        "the stale body differs from the good one"
    );
    fake.clear_faults();
}

#[tokio::test]
async fn the_connection_limit_answers_429_except_to_ping() {
    let served = serve(&["--source", &demo_source()], &["--max-conn", "2"]).await;
    let addr = served.addr;
    let get = "/secretsmanager/get?secretId=api-key";
    let token = [(TOKEN_HEADER, TOKEN)];
    let mut first = Conn::tcp(addr).await;
    let mut second = Conn::tcp(addr).await;
    for conn in [&mut first, &mut second] {
        let r = conn.get(get, &token).await;
        assert!(
            r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
            "{}",
            r.describe()
        );
    }

    let r = Conn::tcp(addr).await.get(get, &token).await;
    assert_eq!(
        (r.status, r.text()),
        (429, "Connection limit exceeded".to_owned())
    );
    let r = Conn::tcp(addr).await.get(get, &[]).await;
    assert_eq!(
        (r.status, r.text()),
        (429, "Connection limit exceeded".to_owned()),
        "the limit comes before the token"
    );
    let r = Conn::tcp(addr).await.get("/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));

    // The two connections still work (keep-alive).
    for conn in [&mut first, &mut second] {
        let r = conn.get(get, &token).await;
        assert!(
            r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
            "{}",
            r.describe()
        );
    }

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = Conn::tcp(addr).await.get(get, &token).await;
        if r.status != 429 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "after a connection closed: {} {}",
        r.status,
        r.describe()
    );
    drop(second);
}

#[tokio::test]
async fn an_idle_client_is_cut_off_and_its_slot_released() {
    let served = serve(
        &["--source", &demo_source()],
        &["--max-conn", "1", "--http-header-timeout", "1"],
    )
    .await;
    let addr = served.addr;
    let get = "/secretsmanager/get?secretId=api-key";
    let mut idle = Conn::tcp(addr).await;
    let cut_off_by = Instant::now() + Duration::from_secs(4);
    // The silent client holds the only slot, unless it has been cut off already.
    let probe = Conn::tcp(addr)
        .await
        .get(get, &[(TOKEN_HEADER, TOKEN)])
        .await;
    if probe.status != 429 {
        assert!(
            idle.closed_within(Duration::ZERO).await.is_ok(),
            "a second connection was served ({}) while the first held the only slot",
            probe.status
        );
    }
    let closed = idle
        .closed_within(cut_off_by.saturating_duration_since(Instant::now()))
        .await;
    assert!(
        closed.is_ok(),
        "the server kept a silent connection open for 4 s (header timeout 1 s)"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = Conn::tcp(addr)
            .await
            .get(get, &[(TOKEN_HEADER, TOKEN)])
            .await;
        if r.status != 429 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "after the idle client was cut off: {} {}",
        r.status,
        r.describe()
    );
}

#[tokio::test]
async fn a_token_file_is_re_read_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  tok1\n").unwrap();
    let value = format!("file://{}", file.display());
    let served = Served::start_with_env(
        &["--source", &demo_source(), "serve", "--http-port", "0"],
        &[("AWS_TOKEN", &value)],
    )
    .await;
    let get = "/secretsmanager/get?secretId=api-key";
    let addr = served.addr;
    let with_token =
        |t: &'static str| async move { Conn::tcp(addr).await.get(get, &[(TOKEN_HEADER, t)]).await };
    let r = with_token("tok1").await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "tok1: {}",
        r.describe()
    );
    let r = with_token("  tok1\n".trim_end()).await;
    assert_eq!(
        r.status, 200,
        "hyper strips the header's whitespace; the file is trimmed"
    );
    assert_eq!(with_token("tok2").await.status, 403);

    std::fs::write(&file, "tok2\n").unwrap();
    let r = with_token("tok2").await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "tok2: {}",
        r.describe()
    );
    let r = with_token("tok1").await;
    assert_eq!((r.status, r.text()), (403, "Bad Token".to_owned()));
    served.stop().await;
}

#[tokio::test]
async fn serve_without_a_token_exits_78_with_one_line() {
    let out = run_with_env(
        &["--source", &demo_source(), "serve", "--http-port", "0"],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1 && stderr.contains("AWS_TOKEN"),
        "stderr is not one line naming AWS_TOKEN: {stderr:?}"
    );
}

#[tokio::test]
async fn a_token_variable_named_by_ssrf_env_variables() {
    let served = Served::start_with_env(
        &[
            "--source",
            &demo_source(),
            "serve",
            "--http-port",
            "0",
            "--ssrf-env-variables",
            "MY_TOKEN",
        ],
        &[("MY_TOKEN", "my-own-token"), ("AWS_TOKEN", TOKEN)],
    )
    .await;
    let get = "/secretsmanager/get?secretId=api-key";
    let r = Conn::tcp(served.addr)
        .await
        .get(get, &[(TOKEN_HEADER, "my-own-token")])
        .await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "{}",
        r.describe()
    );
    let r = Conn::tcp(served.addr)
        .await
        .get(get, &[(TOKEN_HEADER, TOKEN)])
        .await;
    assert_eq!(
        (r.status, r.text()),
        (403, "Bad Token".to_owned()),
        "AWS_TOKEN is not in the list"
    );
    served.stop().await;
}

/// `GET TARGET` over the Unix socket as uid 65534 (in `groups`, or none), through python3:
/// returns the status and the body.
fn get_as_nobody(socket: &Path, target: &str, groups: &[u32]) -> (u16, Vec<u8>) {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.buffer.write(head.split(b" ")[1] + b"\n" + body)
"#;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.args(["--groups", &list.join(",")]);
    }
    let out = cmd
        .args([python, "-c", CLIENT])
        .arg(socket)
        .arg(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the client as uid 65534 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let newline = out.stdout.iter().position(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&out.stdout[..newline])
        .unwrap()
        .parse()
        .unwrap();
    (status, out.stdout[newline + 1..].to_vec())
}

fn get_secret_value_requests_for(fake: &FakeSecretsManager, name: &str) -> usize {
    fake.requests()
        .into_iter()
        .filter(|(op, body)| *op == Op::GetSecretValue && body["SecretId"] == name)
        .count()
}

#[tokio::test]
async fn the_unix_socket_is_decided_by_the_callers_uid_and_the_policy() {
    let fake = FakeSecretsManager::start();
    for name in ["private", "public", "team/app"] {
        fake.put_string(name, &format!("value of {name}"));
    }
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[[policy]]\npath = \"team/**\"\ngroup = 4242\nmode = \"0440\"\n\n\
         [[policy]]\npath = \"public\"\nmode = \"0444\"\n",
    )
    .unwrap();
    let dir = public_tempdir();
    let socket = dir.path().join("api.sock");
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--config".into(), config.path().to_str().unwrap().into()]);
    let served = serve(&strs(&global), &["--http-socket", socket.to_str().unwrap()]).await;

    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o666,
        "the socket's default mode"
    );

    let denied = error_body(
        "AccessDeniedException",
        "access denied by the secretsfs policy",
    );
    let (status, body) = get_as_nobody(&socket, "/secretsmanager/get?secretId=private", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "private as uid 65534: {status}"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/private", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "/v1/private as uid 65534: {status}"
    );
    assert_eq!(
        get_secret_value_requests_for(&fake, "private"),
        0,
        "a denied caller causes no upstream call"
    );

    let value_of = |status: u16, body: &[u8]| -> String {
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        json["SecretString"].as_str().unwrap().to_owned()
    };
    let (status, body) = get_as_nobody(&socket, "/secretsmanager/get?secretId=public", &[]);
    assert!(
        value_of(status, &body) == "value of public",
        "public as uid 65534"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/team/app", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "team/app outside the group: {status}"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/team/app", &[4242]);
    assert!(
        value_of(status, &body) == "value of team/app",
        "team/app in group 4242"
    );

    // Root, without any token header: allowed.
    let r = Conn::unix(&socket)
        .await
        .get("/secretsmanager/get?secretId=private", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.json()["SecretString"] == "value of private",
        "private as root"
    );
    assert_eq!(get_secret_value_requests_for(&fake, "private"), 1);

    let log = served.stop().await;
    assert!(
        log.lines().any(|l| l.contains("access denied")
            && l.contains("uid=65534")
            && l.contains("private")),
        "the denial is logged"
    );
    assert!(!log.contains("value of"), "no value in the log");
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[tokio::test]
async fn metrics_count_requests_without_naming_secrets() {
    let served = serve_demo().await;
    for target in [
        "/secretsmanager/get?secretId=api-key",
        "/secretsmanager/get?secretId=api-key",
        "/v1/prod/db",
        "/secretsmanager/get?secretId=nope-missing",
    ] {
        http::get(served.addr, target).await;
    }
    let r = Conn::tcp(served.addr).await.get("/metrics", &[]).await;
    assert_eq!(r.status, 200, "/metrics needs no token");
    let text = r.text();
    // Checked first: the message below shows the text.
    for secret in [
        "api-key",
        "prod/db",
        "nope-missing",
        "demo-api-key-0123456789",
        "demo-Pa55",
    ] {
        assert!(
            !text.contains(secret),
            "/metrics mentions a secret's name or value"
        );
    }
    let has_line = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
    let mut missing = Vec::new();
    for prefix in [
        "secretsfs_http_requests_total{status=\"200\"} 3",
        "secretsfs_http_requests_total{status=\"400\"} 1",
        "secretsfs_cache_hits_total ",
        "secretsfs_upstream_calls_total{operation=\"GetSecretValue\"} ",
        "secretsfs_upstream_call_duration_seconds_bucket",
    ] {
        if !has_line(prefix) {
            missing.push(prefix);
        }
    }
    assert!(
        missing.is_empty(),
        "no line starting with {missing:?} in:\n{text}"
    );
}

#[tokio::test]
async fn a_mount_and_its_http_api_share_one_cache() {
    let fake = FakeSecretsManager::start();
    fake.put_string("shared/db", "shared value: 0123");
    let m = HttpMount::start(
        &strs(&aws_args(&fake.endpoint_url())),
        &["--http-port", "0"],
        &[("AWS_TOKEN", TOKEN)],
    )
    .await;
    let addr = m
        .http_addr()
        .unwrap_or_else(|| panic!("no 'HTTP API listening' line in the log:\n{}", m.log()));
    let file = std::fs::read(m.path("shared/db")).unwrap();
    let r = http::get(addr, "/secretsmanager/get?secretId=shared/db").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let json = r.json();
    let over_http = json["SecretString"].as_str().unwrap();
    assert!(
        over_http.as_bytes() == file,
        "the file and the HTTP SecretString differ"
    );
    assert!(
        file == b"shared value: 0123",
        "the file differs from the fake's value"
    );
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        1,
        "one fetch for both front ends"
    );
    let r = Conn::tcp(addr).await.get("/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));
}

#[tokio::test]
async fn a_mount_without_a_token_mounts_without_tcp_and_says_so_once() {
    let fake = FakeSecretsManager::start();
    fake.put_string("plain", "p");
    // No token in the environment, and no --http-* flag (the default port is left alone).
    let m = HttpMount::start(&strs(&aws_args(&fake.endpoint_url())), &[], &[]).await;
    assert!(std::fs::read(m.path("plain")).unwrap() == b"p");
    let log = m.log();
    assert_eq!(
        log.lines().filter(|l| l.contains("no SSRF token")).count(),
        1,
        "the warning, once:\n{log}"
    );
    assert!(
        !log.contains("HTTP API listening"),
        "no listener without a token:\n{log}"
    );
}

#[tokio::test]
async fn a_mount_with_an_explicit_port_and_no_token_fails_78() {
    let dir = public_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("secretsfs.log");
    let out = run_with_env(
        &[
            "--source",
            &demo_source(),
            "mount",
            mnt.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
            "--http-port",
            "0",
        ],
        &[],
    )
    .await;
    let mounted_after = is_mounted(&mnt);
    if mounted_after {
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1 && stderr.contains("AWS_TOKEN"),
        "stderr is not one line naming AWS_TOKEN: {stderr:?}"
    );
    assert!(!mounted_after, "the mount was left behind");
}

/// The moto tier through HTTP: stages, a custom label and version ids as moto holds them.
#[tokio::test]
async fn http_serves_exactly_what_moto_holds() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let name = "http/moto/db";
    let label = "CUSTOMLABEL";
    let created = sm
        .create_secret()
        .name(name)
        .secret_string(r#"{"v":1}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", DisplayErrorContext(&e)));
    let v1 = created.version_id().unwrap().to_owned();
    for value in [r#"{"v":2}"#, r#"{"v":3}"#] {
        sm.put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("putting into {name}: {}", DisplayErrorContext(&e)));
    }
    sm.update_secret_version_stage()
        .secret_id(name)
        .version_stage(label)
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("labelling {name}: {}", DisplayErrorContext(&e)));

    let served = serve(&strs(&aws_args(&moto.endpoint_url())), &[]).await;
    let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
        (format!("/secretsmanager/get?secretId={name}"), None, None),
        (format!("/v1/{name}"), None, None),
        (
            format!("/v1/{name}?versionStage=AWSCURRENT"),
            Some("AWSCURRENT"),
            None,
        ),
        (
            format!("/v1/{name}?versionStage=AWSPREVIOUS"),
            Some("AWSPREVIOUS"),
            None,
        ),
        (
            format!("/secretsmanager/get?secretId={name}&versionStage={label}"),
            Some(label),
            None,
        ),
        (
            format!("/v1/{name}?versionId={v1}"),
            None,
            Some(v1.as_str()),
        ),
    ];
    let mut failures = Vec::new();
    let mut seen_values = std::collections::BTreeSet::new();
    for (target, stage, version_id) in &cases {
        let held = sm
            .get_secret_value()
            .secret_id(name)
            .set_version_stage(stage.map(str::to_owned))
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading {target} from moto: {}", DisplayErrorContext(&e)));
        let r = http::get(served.addr, target).await;
        if r.status != 200 {
            failures.push(format!("{target}: status {} {}", r.status, r.describe()));
            continue;
        }
        let json = r.json();
        let stages: Vec<&str> = json["VersionStages"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let created = held
            .created_date()
            .map(|d| SystemTime::try_from(*d).unwrap())
            .map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
                    .to_string()
            });
        let mut wrong = Vec::new();
        if json["SecretString"].as_str() != held.secret_string() {
            wrong.push("SecretString");
        }
        if json["VersionId"].as_str() != held.version_id() {
            wrong.push("VersionId");
        }
        if stages != held.version_stages() {
            wrong.push("VersionStages");
        }
        if json["Name"].as_str() != held.name() || json["ARN"].as_str() != held.arn() {
            wrong.push("Name or ARN");
        }
        if json["CreatedDate"].as_str() != created.as_deref() {
            wrong.push("CreatedDate");
        }
        if !wrong.is_empty() {
            failures.push(format!("{target}: {wrong:?} differ from moto's"));
        }
        seen_values.insert(held.secret_string().unwrap_or_default().to_owned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        seen_values.len(),
        3,
        "the stages select three different versions"
    );
}
