//! The config file's `secrets` list: the mount presents exactly those names, without
//! ListSecrets for exact names, and fetches them at start.

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::mount::Mounted;

use super::{errno_of, libc_errno, names, set};

fn fake() -> FakeSecretsManager {
    let fake = FakeSecretsManager::start();
    for name in [
        "app/db",
        "app/api",
        "team/a",
        "team/b",
        "team/x/deep",
        "other",
    ] {
        fake.put_string(name, &format!("value of {name}"));
    }
    fake
}

fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn global(fake: &FakeSecretsManager, config: &tempfile::NamedTempFile) -> Vec<String> {
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--config".into(), config.path().to_str().unwrap().into()]);
    global
}

#[tokio::test]
async fn exact_names_are_presented_without_listing_and_fetched_before_ready() {
    let fake = fake();
    fake.inject(Op::ListSecrets, Fault::AccessDenied, usize::MAX);
    let config = config("secrets = [\"app/db\", \"team/a\"]\n");
    let m = Mounted::start(&strs(&global(&fake, &config)), &["--wait-for-secrets"]).await;
    // Fetched at start, in one batch, before the mount said it was ready.
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 1);
    assert_eq!(names(&m.path("")), set(&["app", "team"]));
    assert_eq!(names(&m.path("app")), set(&["db"]));
    assert!(std::fs::read(m.path("app/db")).unwrap() == b"value of app/db");
    assert!(std::fs::read(m.path("team/a")).unwrap() == b"value of team/a");
    let calls = fake.calls(Op::GetSecretValue) + fake.calls(Op::BatchGetSecretValue);
    assert_eq!(calls, 1, "the reads found the values cached");
    assert_eq!(
        fake.calls(Op::ListSecrets),
        0,
        "exact names need no listing"
    );
    let other = std::fs::read(m.path("other")).unwrap_err();
    assert_eq!(errno_of(&other), libc_errno::ENOENT, "not in the list");
    let unlisted = std::fs::read(m.path("app/api")).unwrap_err();
    assert_eq!(errno_of(&unlisted), libc_errno::ENOENT);
    assert!(m.log().contains("secrets list fetched"), "{}", m.log());
}

#[tokio::test]
async fn globs_pick_names_from_the_listing() {
    let fake = fake();
    let config = config("secrets = [\"team/*\", \"other\"]\n");
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    assert_eq!(names(&m.path("")), set(&["other", "team"]));
    assert_eq!(names(&m.path("team")), set(&["a", "b"]), "`*` stops at `/`");
    assert!(std::fs::read(m.path("team/b")).unwrap() == b"value of team/b");
}

#[tokio::test]
async fn a_bad_secrets_list_stops_the_mount_with_one_line() {
    let fake = fake();
    let config = config("secrets = [\"bad name!\"]\n");
    let mut args = global(&fake, &config);
    args.extend(["check-config".into()]);
    let out = crate::support::cli::run(&strs(&args)).await;
    let lines = crate::support::cli::stderr_lines(&out);
    assert_eq!(out.status.code(), Some(78), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("secrets: invalid name"), "{lines:?}");
}
