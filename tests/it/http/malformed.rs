//! Answers from upstream that cannot be read: a 200 with a body cut short, noise, or a
//! SecretBinary that is not base64, and an error page (no JSON, so no error code) whatever its
//! status. None says what Secrets Manager meant: HTTP answers 500 InternalFailure as the agent
//! does, `get` exits 69 for a 5xx page (the service unavailable) and 71 otherwise (internal),
//! the mount answers EIO, and the log says why without quoting the answer.

use super::serve;
use crate::support::cli::{aws_args, get_from, stderr_lines, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::http;
use crate::support::mount::Mounted;

/// Long enough that half the JSON of its answer ends inside it: a truncated answer carries a
/// piece of it, which must reach no log.
fn value() -> String {
    format!("canary-{}", "q7Zk".repeat(60))
}

/// Whether `text` holds any 16 characters of the value (of its first 100, which a truncated
/// answer holds).
fn leaks(text: &str) -> bool {
    let value = value();
    (0..100).any(|i| text.contains(&value[i..i + 16]))
}

/// Each fault, and the words the log and `get` must give as its cause.
const CASES: [(Fault, &str); 5] = [
    (Fault::TruncatedAnswer, "not JSON"),
    (Fault::GarbageAnswer, "not JSON"),
    (Fault::NotBase64, "base64"),
    (Fault::ErrorPage(503), "HTTP 503"),
    (Fault::ErrorPage(418), "HTTP 418"),
];

const INTERNAL_FAILURE: &str = r#"{"__type":"InternalFailure"}"#;

/// The fake with one secret per case: a failure is logged once a minute per secret and kind.
fn fake() -> FakeSecretsManager {
    let fake = FakeSecretsManager::start();
    for i in 0..CASES.len() {
        fake.put_string(&format!("spoilt-{i}"), &value());
    }
    fake
}

#[tokio::test]
async fn unreadable_answers_are_500_internal_failure_and_logged_with_their_cause() {
    let fake = fake();
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let mut failures = Vec::new();
    for (i, (fault, cause)) in CASES.into_iter().enumerate() {
        let name = format!("spoilt-{i}");
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        let r = http::get(served.addr, &format!("/secretsmanager/get?secretId={name}")).await;
        fake.clear_faults();
        let json = r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        if (r.status, r.text().as_str(), json) != (500, INTERNAL_FAILURE, true) {
            failures.push(format!(
                "{fault:?}: {} {} ({:?})",
                r.status,
                r.describe(),
                r.header("content-type")
            ));
        }
        let log = served.stderr();
        // Checked first: the message below shows the log.
        assert!(
            !leaks(&log),
            "{fault:?}: the log holds a piece of the value"
        );
        let logged = log
            .lines()
            .any(|l| l.contains("fetch failed") && l.contains(&name) && l.contains(cause));
        if !logged {
            failures.push(format!(
                "{fault:?}: no 'fetch failed' line naming {cause:?} in:\n{log}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing of it was cached: once upstream answers well, the secret reads.
    let r = http::get(served.addr, "/v1/spoilt-0").await;
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[tokio::test]
async fn get_exits_69_for_a_5xx_page_and_71_for_the_others_with_the_cause() {
    let fake = fake();
    let mut failures = Vec::new();
    for (fault, cause) in CASES {
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        let out = get_from(&fake.endpoint_url(), "spoilt-0").await;
        fake.clear_faults();
        let lines = stderr_lines(&out);
        // Checked first: the message below shows stderr.
        assert!(
            !leaks(&lines.join("\n")) && out.stdout.is_empty(),
            "{fault:?}: a piece of the value was printed"
        );
        let want = if fault == Fault::ErrorPage(503) {
            69
        } else {
            71
        };
        // The log's warning comes first; the error is the last line.
        let said = lines
            .iter()
            .filter(|l| l.starts_with("secretsfs: "))
            .count()
            == 1
            && lines
                .last()
                .is_some_and(|l| l.starts_with("secretsfs: ") && l.contains(cause));
        if out.status.code() != Some(want) || !said {
            failures.push(format!(
                "{fault:?}: exit {:?} (want {want}), stderr {lines:?} (want a last line \
                 'secretsfs: ...' naming {cause:?})",
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_mount_answers_eio() {
    let fake = fake();
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let mut failures = Vec::new();
    for (fault, _) in CASES {
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        let read = std::fs::read(m.path("spoilt-0"));
        fake.clear_faults();
        match read {
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EIO as i32) => {}
            Err(e) => failures.push(format!("{fault:?}: {e}")),
            Ok(_) => failures.push(format!("{fault:?}: the read succeeded")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(!leaks(&m.log()), "the log holds a piece of the value");
    assert!(
        std::fs::read(m.path("spoilt-0")).is_ok_and(|v| v == value().as_bytes()),
        "the secret reads once upstream answers well"
    );
}
