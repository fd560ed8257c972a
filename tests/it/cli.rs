//! `secretsfs get` as a user runs it: exact bytes on stdout, and for every kind of bad input
//! a one-line error on stderr with its documented exit code, never a panic.

use std::process::Output;

use crate::support::cli::{self, DEMO_VALUES, demo_source, stderr_lines};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};

const INVALID_SELECTOR: i32 = 65;
const NOT_FOUND: i32 = 66;
const UNAVAILABLE: i32 = 69;
const ACCESS_DENIED: i32 = 77;
const CONFIG: i32 = 78;

/// The error contract: nothing on stdout, exactly one line on stderr, no panic, the code.
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let lines = stderr_lines(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {lines:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    assert_eq!(lines.len(), 1, "one line on stderr: {lines:?}");
    assert!(lines[0].starts_with("secretsfs: "), "{lines:?}");
    assert!(lines[0].contains(needle), "{needle:?} not in {lines:?}");
    assert!(!lines[0].contains("panicked"), "{lines:?}");
}

async fn demo(selector: &str) -> Output {
    cli::run(&["--source", &demo_source(), "get", selector]).await
}

#[tokio::test]
async fn get_prints_the_exact_bytes_of_the_demo_values() {
    for (selector, expected) in DEMO_VALUES {
        let out = demo(selector).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{selector}: {:?}",
            stderr_lines(&out)
        );
        assert!(out.stdout == expected, "value of {selector} differs");
        assert!(
            out.stderr.is_empty(),
            "{selector}: {:?}",
            stderr_lines(&out)
        );
    }
}

#[tokio::test]
async fn demo_errors_have_their_exit_codes() {
    assert_fails(&demo("nope").await, NOT_FOUND, "not found");
    assert_fails(&demo("prod/db:nokey").await, NOT_FOUND, "no JSON key");
    assert_fails(&demo("prod/db::AWSPENDING").await, NOT_FOUND, "AWSPENDING");
    assert_fails(&demo("bad name").await, INVALID_SELECTOR, "not allowed");
    assert_fails(&demo("prod/db:a:b:c:d").await, INVALID_SELECTOR, "too many");
    let missing = cli::run(&["--source", "file:/nonexistent/secrets.json", "get", "x"]).await;
    assert_fails(&missing, CONFIG, "/nonexistent/secrets.json");
    let bad_level = cli::run(&[
        "--source",
        &demo_source(),
        "--log-level",
        "lo[ud",
        "get",
        "api-key",
    ])
    .await;
    assert_fails(&bad_level, CONFIG, "--log-level");
}

#[tokio::test]
async fn get_through_the_aws_source_prints_exact_bytes() {
    let fake = FakeSecretsManager::start();
    fake.put_string("prod/db", r#"{"user":"app","password":"p:w/d"}"#);
    fake.put_version(
        "bin",
        "bbbbbbbb-1111-4111-8111-111111111111",
        &["AWSCURRENT"],
        SecretData::Binary(vec![0, 10, 255]),
    );
    let out = cli::get_from(&fake.endpoint_url(), "prod/db:password").await;
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    assert!(out.stdout == b"p:w/d");
    let out = cli::get_from(&fake.endpoint_url(), "bin").await;
    assert!(out.stdout == [0, 10, 255]);
}

#[tokio::test]
async fn invalid_selectors_never_reach_the_network() {
    let fake = FakeSecretsManager::start();
    for selector in ["", "a b", "db:%zz", "db:::short", "arn:aws:s3:::bucket"] {
        assert_fails(
            &cli::get_from(&fake.endpoint_url(), selector).await,
            INVALID_SELECTOR,
            "invalid selector",
        );
    }
    for op in [
        Op::GetSecretValue,
        Op::DescribeSecret,
        Op::ListSecrets,
        Op::BatchGetSecretValue,
    ] {
        assert_eq!(fake.calls(op), 0);
    }
}

#[tokio::test]
async fn upstream_failures_have_their_exit_codes() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "v");
    let url = fake.endpoint_url();
    assert_fails(
        &cli::get_from(&url, "missing").await,
        NOT_FOUND,
        "ResourceNotFoundException",
    );
    let cases = [
        (Fault::AccessDenied, ACCESS_DENIED, "AccessDeniedException"),
        (Fault::Throttling, UNAVAILABLE, "ThrottlingException"),
        (Fault::Internal, UNAVAILABLE, "InternalServiceError"),
        (Fault::DropConnection, UNAVAILABLE, "ConnectionError"),
    ];
    for (fault, code, needle) in cases {
        fake.clear_faults();
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        assert_fails(&cli::get_from(&url, "db").await, code, needle);
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = cli::get_from(&format!("http://127.0.0.1:{port}"), "db").await;
    assert_fails(&out, UNAVAILABLE, "ConnectionError");
}

#[tokio::test]
async fn a_missing_region_is_a_configuration_error() {
    let out = cli::run(&[
        "--source",
        "aws",
        "--endpoint-url",
        "http://127.0.0.1:9",
        "get",
        "db",
    ])
    .await;
    assert_fails(&out, CONFIG, "region");
}

#[tokio::test]
async fn help_lists_the_selector_grammar_and_exit_codes() {
    let out = cli::run(&["--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "get",
        "--source",
        "--ttl",
        "NAME[:JSON_KEY",
        "Exit codes",
        "66 not found",
    ] {
        assert!(help.contains(needle), "{needle}");
    }
    let version = cli::run(&["--version"]).await;
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("secretsfs ")
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out_after_the_timeout() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "v");
    fake.set_latency(Op::GetSecretValue, std::time::Duration::from_secs(30));
    let started = std::time::Instant::now();
    let out = cli::run(&[
        "--source",
        "aws",
        "--endpoint-url",
        &fake.endpoint_url(),
        "--region",
        "us-east-1",
        "--timeout",
        "2",
        "get",
        "db",
    ])
    .await;
    assert_fails(&out, UNAVAILABLE, "TimeoutError");
    // Behaviour, not speed: the call gave up long before the server would have answered.
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
}
