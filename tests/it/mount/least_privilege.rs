//! Real accounts' permissions: a role that may read named secrets (GetSecretValue on them)
//! but not list them reads nested names by path; a name newer than the listing reads at once;
//! names that do not exist cost one call each, within a budget per uid.

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::mount::Mounted;

use super::{errno_of, names, set};

const DB: &str = r#"{"user":"app","password":"pw-db"}"#;

fn fake_with_nested_secrets() -> FakeSecretsManager {
    let fake = FakeSecretsManager::start();
    fake.put_string("top", "top value");
    fake.put_string("prod/db", DB);
    fake.put_string("prod/tls/key.pem", "pem bytes");
    fake
}

#[tokio::test]
async fn nested_names_read_by_path_with_only_get_secret_value_allowed() {
    let fake = fake_with_nested_secrets();
    for op in [Op::ListSecrets, Op::BatchGetSecretValue] {
        fake.inject(op, Fault::AccessDenied, usize::MAX);
    }
    fake.allow_reading_only(&["top", "prod/db", "prod/tls/key.pem"]);
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    for (path, expected) in [
        ("top", "top value"),
        ("prod/db", DB),
        ("prod/db:password", "pw-db"),
        ("prod/tls/key.pem", "pem bytes"),
    ] {
        let read = std::fs::read(m.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(read == expected.as_bytes(), "{path}: other bytes");
    }
    // Where listing is denied, directories list nothing, and a name that is no secret the role
    // may read is such a directory too: reading it as a file is EISDIR.
    assert_eq!(names(&m.path("prod")), set(&[]));
    let missing = std::fs::read(m.path("prod/missing")).unwrap_err();
    assert_eq!(errno_of(&missing), nix::errno::Errno::EISDIR as i32);
    assert!(m.log().contains("ListSecrets is denied"), "{}", m.log());
}

/// A secret newer than the listing reads at once (asked for by name); a directory newer than
/// it shows at the next listing, and a miss costs one call.
#[tokio::test]
async fn a_secret_newer_than_the_listing_reads_at_once_and_a_new_directory_at_the_next_listing() {
    let fake = fake_with_nested_secrets();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--list-ttl".into(), "2".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    assert_eq!(names(&m.path("")), set(&["prod", "top"]), "listing cached");
    fake.put_string("fresh-top", "just made");
    fake.put_string("fresh/new/one", "nested");
    fake.reset_calls();
    let read = std::fs::read(m.path("fresh-top")).expect("asked for by name");
    assert!(read == b"just made");
    let gone = std::fs::read(m.path("none")).unwrap_err();
    assert_eq!(errno_of(&gone), super::libc_errno::ENOENT);
    assert_eq!(
        (fake.calls(Op::GetSecretValue), fake.calls(Op::ListSecrets)),
        (2, 0),
        "one call for the new secret, one for the miss"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::read(m.path("fresh/new/one")) {
            Ok(read) => {
                assert!(read == b"nested");
                break;
            }
            Err(e) => {
                assert_eq!(errno_of(&e), super::libc_errno::ENOENT);
                assert!(std::time::Instant::now() < deadline, "never listed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// A user stating made-up names cannot make secretsfs call Secrets Manager without bound:
/// past a budget of misses per uid the answer is ENOENT with no call, one log line; other
/// users and names that exist are not held back.
#[tokio::test]
async fn made_up_names_cost_at_most_a_budget_of_calls_per_uid() {
    let fake = fake_with_nested_secrets();
    fake.put_string("open/a", "a");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "dir_mode = \"0555\"\n\n[[policy]]\npath = \"open/*\"\nmode = \"0444\"\n",
    )
    .unwrap();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--config".into(), config.to_str().unwrap().to_owned()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    assert_eq!(names(&m.path("open")), set(&["a"]), "listing cached");
    fake.reset_calls();
    let script = format!(
        "for i in $(seq 1 400); do [ -e {}/missing-$i ] && exit 1; done; cat {}/a",
        m.path("open").display(),
        m.path("open").display()
    );
    let probe = crate::support::nobody::as_nobody(&[], "sh", &["-c".as_ref(), script.as_ref()]);
    assert!(probe.status.success() && probe.stdout == b"a", "{probe:?}");
    let (gets, lists) = (fake.calls(Op::GetSecretValue), fake.calls(Op::ListSecrets));
    // The burst (100), one a second back, and open/a itself.
    assert!(
        (100..=130).contains(&gets) && lists == 0,
        "{gets} GetSecretValue and {lists} ListSecrets for 400 made-up names"
    );
    let log = m.log();
    assert_eq!(
        log.matches("too many lookups of names that do not exist")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("uid=65534"), "{log}");
    // Root is another uid: its lookups still go upstream.
    assert!(std::fs::metadata(m.path("open/made-up-by-root")).is_err());
    assert_eq!(fake.calls(Op::GetSecretValue), gets + 1);
}
