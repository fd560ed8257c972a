//! Reading through the mount: files, selectors, binary values and exact sizes, the stages
//! layout and a prefix, and the AWS source's errors as errnos.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::cli::{DEMO_VALUES, aws_args, demo_source, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};
use crate::support::mount::Mounted;

use super::{errno_of, libc_errno, names, set};

const VID_OLD: &str = "a1b2c3d4-0000-4000-8000-000000000001";

#[tokio::test]
async fn files_selectors_binary_and_exact_sizes_from_the_demo_file() {
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    for (path, expected) in DEMO_VALUES {
        let bytes = std::fs::read(m.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(bytes == expected, "value of {path} differs");
        assert_eq!(
            std::fs::metadata(m.path(path)).unwrap().len(),
            expected.len() as u64,
            "{path}"
        );
    }
    let by_version = std::fs::read(m.path(&format!("prod/db:password::{VID_OLD}"))).unwrap();
    assert!(by_version == b"old-demo-pass");

    assert_eq!(names(&m.mnt), set(&["api-key", "prod", "tls"]));
    assert_eq!(
        names(&m.path("prod")),
        set(&["cache", "db"]),
        "selectors are never listed"
    );
    let found = Command::new("find").arg(&m.mnt).output().unwrap();
    let found = String::from_utf8(found.stdout).unwrap();
    assert_eq!(found.lines().count(), 8, "{found}");
    assert!(!found.contains(':'));

    let meta = std::fs::metadata(m.path("prod/db")).unwrap();
    let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_306_200);
    assert_eq!(
        meta.modified().unwrap(),
        created,
        "mtime is the version's CreatedDate"
    );
    assert_eq!(meta.mode() & 0o7777, 0o440);
    assert!(std::fs::metadata(m.path("prod")).unwrap().is_dir());

    for missing in [
        "nope",
        "prod/nope",
        "prod/db:nokey",
        "prod/db::AWSPENDING",
        "prod/db:a:b:c:d",
    ] {
        let err = std::fs::read(m.path(missing)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{missing}: {err}");
    }
}

#[tokio::test]
async fn the_stages_layout_and_a_prefix() {
    let m = Mounted::start(&["--source", &demo_source()], &["--layout", "stages"]).await;
    assert!(std::fs::metadata(m.path("prod/db")).unwrap().is_dir());
    assert_eq!(
        names(&m.path("prod/db")),
        set(&["AWSCURRENT", "AWSPREVIOUS", "blue"])
    );
    let previous = std::fs::read(m.path("prod/db/AWSPREVIOUS")).unwrap();
    assert!(previous.starts_with(br#"{"username":"app","password":"old-demo-pass""#));
    assert!(std::fs::read(m.path("api-key/AWSCURRENT")).unwrap() == b"demo-api-key-0123456789");
    assert_eq!(
        std::fs::read(m.path("api-key/AWSPENDING"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    drop(m);

    let m = Mounted::start(&["--source", &demo_source()], &["--prefix", "prod"]).await;
    assert_eq!(names(&m.mnt), set(&["cache", "db"]));
    assert!(std::fs::read(m.path("db:password")).unwrap() == b"demo-Pa55:w/rd");
    assert!(std::fs::read(m.path("cache/redis:token")).unwrap() == b"demo-redis-token");
    assert_eq!(
        std::fs::read(m.path("api-key")).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn the_aws_source_and_its_errors_as_errnos() {
    let fake = FakeSecretsManager::start();
    fake.put_string("prod/db", r#"{"user":"app","password":"pw"}"#);
    fake.put_version(
        "bin",
        "bbbbbbbb-1111-4111-8111-111111111111",
        &["AWSCURRENT"],
        SecretData::Binary(vec![0, 1, 255]),
    );
    for name in ["denied", "undecryptable"] {
        fake.put_string(name, "v");
    }
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    assert!(std::fs::read(m.path("prod/db:password")).unwrap() == b"pw");
    assert!(std::fs::read(m.path("bin")).unwrap() == [0, 1, 255]);
    assert_eq!(
        errno_of(&std::fs::read(m.path("missing")).unwrap_err()),
        libc_errno::ENOENT
    );
    fake.inject(Op::GetSecretValue, Fault::AccessDenied, 1);
    assert_eq!(
        errno_of(&std::fs::read(m.path("denied")).unwrap_err()),
        libc_errno::EACCES
    );
    fake.inject(Op::GetSecretValue, Fault::Decryption, 1);
    assert_eq!(
        errno_of(&std::fs::read(m.path("undecryptable")).unwrap_err()),
        libc_errno::EIO
    );
    // Listed last: a listing makes the next lookups there fetch the directory in batches.
    assert_eq!(
        names(&m.mnt),
        set(&["bin", "denied", "prod", "undecryptable"])
    );
}
