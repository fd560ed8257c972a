//! Real accounts' permissions: a role that may read named secrets (GetSecretValue on them)
//! but not list them reads nested names by path; a name newer than the listing reads at once.

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

#[tokio::test]
async fn a_nested_secret_newer_than_the_listing_reads_at_once() {
    let fake = fake_with_nested_secrets();
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    assert_eq!(names(&m.path("")), set(&["prod", "top"]), "listing cached");
    fake.put_string("fresh/new/one", "just made");
    let read = std::fs::read(m.path("fresh/new/one")).expect("asked for by name");
    assert!(read == b"just made");
    let gone = std::fs::read(m.path("fresh/none")).unwrap_err();
    assert_eq!(errno_of(&gone), super::libc_errno::ENOENT);
}
