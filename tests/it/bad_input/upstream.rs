//! Names, stage labels and values from upstream that the service itself would never send: a
//! name with a `:`, NUL or newline, a stage label with a control character, a value over
//! 64 KiB. The mount skips the entries (one log line each) and refuses the value (`EIO`, HTTP
//! 500, exit 71, its size logged, never its bytes); the rest goes on.

use std::collections::BTreeSet;

use super::assert_refused;
use crate::support::cli::{self, aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Op, SecretData};
use crate::support::http;
use crate::support::mount::Mounted;

fn listed(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn names_and_stage_labels_that_cannot_be_presented_are_skipped_and_logged() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", r#"{"password":"db-password"}"#);
    // Listed as a file, its path would read db's key `password`.
    fake.put_string("db:password", "another secret");
    fake.put_string("new\nline", "v");
    fake.put_string("nul\0name", "v");
    fake.put_string("ok/a", "a");
    let id = "aaaaaaaa-1111-4111-8111-111111111111";
    let stages = ["AWSCURRENT", "bad\nlabel", "blue:green"];
    fake.put_version("ok/st", id, &stages, SecretData::String("st".into()));
    let global = aws_args(&fake.endpoint_url());
    let m = Mounted::start(&strs(&global), &["--layout", "stages"]).await;

    let root = listed(&m.mnt);
    assert_eq!(root, BTreeSet::from(["db".into(), "ok".into()]));
    assert_eq!(
        listed(&m.path("ok")),
        BTreeSet::from(["a".into(), "st".into()]),
        "the rest of the listing shows"
    );
    assert_eq!(
        listed(&m.path("ok/st")),
        BTreeSet::from(["AWSCURRENT".into(), "blue:green".into()])
    );
    assert_eq!(std::fs::read(m.path("ok/st/blue:green")).unwrap(), b"st");
    assert_eq!(std::fs::read(m.path("ok/a/AWSCURRENT")).unwrap(), b"a");
    // Listed again: still one line per name, a minute at most.
    listed(&m.mnt);
    let log = m.log();
    let skipped = |needle: &str| {
        log.lines()
            .filter(|l| l.contains("from upstream cannot be presented; skipped"))
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(skipped(r#"entry="db:password""#), 1, "{log}");
    assert_eq!(skipped(r#"entry="new\nline""#), 1, "{log}");
    assert_eq!(skipped(r#"entry="nul\0name""#), 1, "{log}");
    assert_eq!(skipped(r#"stage "bad\nlabel""#), 1, "{log}");
    assert_eq!(skipped("blue:green"), 0, "a ':' is fine in a label");
}

#[tokio::test]
async fn a_value_over_64_kib_is_refused_naming_its_size_never_its_bytes() {
    let fake = FakeSecretsManager::start();
    let big = "BIG-VALUE-".repeat(10 << 10);
    fake.put_string("big", &big);
    fake.put_string("small", "fine");
    let url = fake.endpoint_url();
    let cause = "the value is 102400 bytes, over the limit of 65536";

    let out = cli::get_from(&url, "big").await;
    assert_refused(&out, 71, cause);
    assert_refused(&out, 71, "GetSecretValue big");

    let (m, addr) = Mounted::start_with_http_api(&strs(&aws_args(&url))).await;
    let calls = fake.calls(Op::GetSecretValue);
    for _ in 0..2 {
        let err = std::fs::read(m.path("big")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO), "{err}");
    }
    assert_eq!(
        fake.calls(Op::GetSecretValue) - calls,
        2,
        "never cached: each read asks again"
    );
    assert_eq!(std::fs::read(m.path("small")).unwrap(), b"fine");
    let headers = [(http::TOKEN_HEADER, http::TOKEN)];
    let mut conn = http::Conn::tcp(addr).await;
    let r = conn.get("/secretsmanager/get?secretId=big", &headers).await;
    assert_eq!(r.status, 500, "{}", r.describe());
    assert!(!r.text().contains("BIG-VALUE"));
    let r = conn
        .get("/secretsmanager/get?secretId=small", &headers)
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let log = m.log();
    assert!(
        log.lines()
            .any(|l| l.contains("fetch failed") && l.contains("big") && l.contains(cause)),
        "{log}"
    );
    assert!(!log.contains("BIG-VALUE"));
}

#[tokio::test]
async fn an_answer_over_16_mib_is_refused_unread_and_not_retried() {
    let fake = FakeSecretsManager::start();
    fake.put_string("huge", &"h".repeat(17 << 20));
    let out = cli::get_from(&fake.endpoint_url(), "huge").await;
    assert_refused(
        &out,
        71,
        "GetSecretValue huge (stage AWSCURRENT): the answer is over the limit of 16 MiB \
         for one answer (Content-Length",
    );
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        1,
        "a refusal is not retried"
    );
}
