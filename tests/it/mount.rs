//! The mount, for real: every test mounts under a guard that unmounts even when it fails.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};
use crate::support::mount::Mounted;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-secrets.json");
const VID_OLD: &str = "a1b2c3d4-0000-4000-8000-000000000001";

fn demo_source() -> String {
    format!("file:{DEMO}")
}

fn aws_args(fake_url: &str) -> Vec<String> {
    [
        "--source",
        "aws",
        "--endpoint-url",
        fake_url,
        "--region",
        "us-east-1",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn errno_of(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(-1)
}

#[tokio::test]
async fn files_selectors_binary_and_exact_sizes_from_the_demo_file() {
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let cases: [(&str, &[u8]); 6] = [
        ("prod/db:password", b"demo-Pa55:w/rd"),
        ("prod/db:port", b"5432"),
        ("prod/db:password:AWSPREVIOUS", b"old-demo-pass"),
        ("prod/db:password:blue", b"old-demo-pass"),
        ("api-key", b"demo-api-key-0123456789"),
        ("tls/client.key", b"\x00\x01\x02secretsfs-demo\xff\xfe"),
    ];
    for (path, expected) in cases {
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

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EACCES: i32 = 13;
    pub const EROFS: i32 = 30;
}

#[tokio::test]
async fn a_rotation_shows_after_the_ttl_with_new_size_and_mtime() {
    let fake = FakeSecretsManager::start();
    fake.put_string("rot", "short");
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let path = m.path("rot");
    assert!(std::fs::read(&path).unwrap() == b"short");
    let mtime_before = std::fs::metadata(&path).unwrap().modified().unwrap();
    for value in ["a much longer value than before", "tiny"] {
        std::thread::sleep(Duration::from_millis(20));
        fake.put_string("rot", value);
        std::thread::sleep(Duration::from_millis(1500));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), value.len() as u64);
        assert!(
            meta.modified().unwrap() > mtime_before,
            "mtime moves with the version"
        );
        assert!(
            std::fs::read(&path).unwrap() == value.as_bytes(),
            "new value visible"
        );
    }
}

#[tokio::test]
async fn without_kernel_cache_an_open_handle_keeps_its_version() {
    let fake = FakeSecretsManager::start();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let m = Mounted::start(&strs(&global), &["--no-kernel-cache"]).await;
    for (old, new) in [
        ("the old value, longer", "new"),
        ("old", "the new value, longer"),
    ] {
        fake.put_string("rot", old);
        std::thread::sleep(Duration::from_millis(1200));
        let mut handle = std::fs::File::open(m.path("rot")).unwrap();
        let mut head = [0u8; 2];
        handle.read_exact(&mut head).unwrap();
        fake.put_string("rot", new);
        std::thread::sleep(Duration::from_millis(1200));
        assert!(
            std::fs::read(m.path("rot")).unwrap() == new.as_bytes(),
            "a new open sees the rotation"
        );
        let mut rest = Vec::new();
        handle.read_to_end(&mut rest).unwrap();
        assert!(
            head.iter().chain(&rest).copied().collect::<Vec<_>>() == old.as_bytes(),
            "the old handle reads the old bytes to the end"
        );
    }
}

#[tokio::test]
async fn every_mutation_is_erofs() {
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let file = m.path("prod/db");
    let results: Vec<(&str, std::io::Result<()>)> = vec![
        (
            "write",
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .map(drop),
        ),
        ("create", std::fs::File::create(m.path("new")).map(drop)),
        ("mkdir", std::fs::create_dir(m.path("newdir"))),
        ("unlink", std::fs::remove_file(&file)),
        ("rmdir", std::fs::remove_dir(m.path("tls"))),
        ("rename", std::fs::rename(&file, m.path("prod/db2"))),
        (
            "chmod",
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o777)),
        ),
        (
            "truncate",
            nix::unistd::truncate(&file, 0).map_err(std::io::Error::from),
        ),
        ("setxattr", setxattr(&file)),
    ];
    for (op, result) in results {
        let err = result.expect_err(op);
        assert_eq!(errno_of(&err), libc_errno::EROFS, "{op}: {err}");
    }
}

fn setxattr(path: &Path) -> std::io::Result<()> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys; os.setxattr(sys.argv[1], 'user.x', b'1')",
        ])
        .arg(path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else if stderr.contains("Read-only file system") {
        Err(std::io::Error::from_raw_os_error(libc_errno::EROFS))
    } else {
        Err(std::io::Error::other(stderr.into_owned()))
    }
}

/// Runs `cat PATH` as uid 65534 with the given supplementary groups.
fn cat_as_nobody(path: &Path, groups: &[u32]) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.args(["--groups", &list.join(",")]);
    }
    cmd.arg("cat").arg(path).output().unwrap()
}

fn ls_as_nobody(path: &Path) -> BTreeSet<String> {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "ls",
            "-1",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn other_users_are_decided_by_mode_and_policy_before_any_call() {
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
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--config".into(), config.path().to_str().unwrap().into()]);
    global.extend(["--dir-mode".into(), "0555".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;

    let denied_by_mode = cat_as_nobody(&m.path("private"), &[]);
    assert!(!denied_by_mode.status.success());
    assert!(String::from_utf8_lossy(&denied_by_mode.stderr).contains("Permission denied"));
    let denied_by_policy = cat_as_nobody(&m.path("team/app"), &[]);
    assert!(!denied_by_policy.status.success());
    let fetched: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|(op, _)| *op != Op::ListSecrets)
        .map(|(_, body)| body.to_string())
        .collect();
    assert!(
        fetched.is_empty(),
        "no upstream call for a denied reader: {fetched:?}"
    );

    assert_eq!(
        ls_as_nobody(&m.mnt),
        set(&["public", "team"]),
        "private is hidden"
    );
    let in_group = cat_as_nobody(&m.path("team/app"), &[4242]);
    assert!(
        in_group.status.success(),
        "{}",
        String::from_utf8_lossy(&in_group.stderr)
    );
    assert!(in_group.stdout == b"value of team/app");
    let public = cat_as_nobody(&m.path("public"), &[]);
    assert!(public.stdout == b"value of public");

    let log = m.log();
    assert!(
        log.lines().any(|l| l.contains("decision=\"denied\"")
            && l.contains("uid=65534")
            && l.contains("private")),
        "the denial is logged"
    );
    assert!(!log.contains("value of"), "no value in the log");
}

#[tokio::test]
async fn a_slow_secret_does_not_hold_up_reads_of_cached_ones() {
    let fake = FakeSecretsManager::start();
    fake.put_string("slow", "s");
    fake.put_string("fast", "f");
    let m = Mounted::start(
        &strs(&aws_args(&fake.endpoint_url())),
        &["--no-kernel-cache"],
    )
    .await;
    assert!(std::fs::read(m.path("fast")).unwrap() == b"f");
    let latch = fake.hold("slow");
    let slow_path = m.path("slow");
    let slow = std::thread::spawn(move || std::fs::read(slow_path));
    latch.until_waiting(1).await;
    let fast_path = m.path("fast");
    let fast = std::thread::spawn(move || {
        (0..100).all(|_| std::fs::read(&fast_path).is_ok_and(|v| v == b"f"))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fast.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let finished_while_held = fast.is_finished();
    latch.release();
    assert!(
        finished_while_held,
        "100 cached reads completed while another secret's fetch hung"
    );
    assert!(fast.join().unwrap());
    assert!(slow.join().unwrap().unwrap() == b"s");
}

#[tokio::test]
async fn concurrent_cold_reads_of_one_secret_share_one_call() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", r#"{"user":"app"}"#);
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(500));
    let mut m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let readers: Vec<_> = ["db", "db:user", "db::AWSCURRENT", "db:user:AWSCURRENT"]
        .map(|p| {
            let path = m.path(p);
            std::thread::spawn(move || std::fs::read(path).unwrap())
        })
        .into_iter()
        .collect();
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    m.stop();
    let stats = m.final_stats();
    assert!(stats["coalesced_waits"].as_u64().unwrap() > 0, "{stats}");
}

#[tokio::test]
async fn ls_l_of_45_uncached_secrets_fetches_in_batches() {
    let fake = FakeSecretsManager::start();
    for i in 0..45 {
        fake.put_string(&format!("many/s{i:02}"), &"x".repeat(i));
    }
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let out = Command::new("ls")
        .arg("-l")
        .arg(m.path("many"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing.lines().filter(|l| l.starts_with('-')).count(), 45);
    assert!(
        fake.calls(Op::BatchGetSecretValue) <= 3,
        "{}",
        fake.calls(Op::BatchGetSecretValue)
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 0);
    assert_eq!(std::fs::metadata(m.path("many/s44")).unwrap().len(), 44);
}

#[tokio::test]
async fn sigterm_unmounts_and_a_dead_mount_is_recovered() {
    let global = ["--source".to_owned(), demo_source()];
    let mut m = Mounted::start(&strs(&global), &[]).await;
    m.stop();
    assert!(!m.is_mounted(), "SIGTERM unmounts");
    assert!(m.log().contains("unmounted"));

    m.mount(&strs(&global), &[]).await;
    assert!(std::fs::read(m.path("api-key")).is_ok());
    m.kill_hard();
    assert!(m.is_mounted(), "a killed daemon leaves its mount behind");
    m.mount(&strs(&global), &[]).await;
    assert!(m.log().contains("detaching a dead mount"));
    assert!(std::fs::read(m.path("api-key")).unwrap() == b"demo-api-key-0123456789");
}

#[tokio::test]
async fn with_listing_denied_names_still_read_and_the_denial_is_logged_once() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "v");
    fake.inject(Op::ListSecrets, Fault::AccessDenied, usize::MAX);
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    assert!(names(&m.mnt).is_empty());
    assert!(names(&m.mnt).is_empty());
    assert!(std::fs::read(m.path("db")).unwrap() == b"v");
    assert_eq!(
        fake.calls(Op::ListSecrets),
        1,
        "a refusal is remembered for the listing TTL"
    );
    assert_eq!(m.log().matches("ListSecrets is denied").count(), 1);
}

#[tokio::test]
async fn the_inode_table_shrinks_when_the_kernel_forgets() {
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    // 256 spellings of one selector (each letter of the key plain or percent-encoded): 256
    // distinct file names, each an inode while the kernel holds its dentry.
    for mask in 0..256u32 {
        let key: String = "password"
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if mask & (1 << i) != 0 {
                    format!("%{:02X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect();
        std::fs::metadata(m.path(&format!("prod/db:{key}"))).unwrap();
    }
    let held = |m: &Mounted| nix::sys::statvfs::statvfs(&m.mnt).unwrap().files();
    let before = held(&m);
    assert!(before >= 256, "{before}");
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while held(&m) >= 256 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        held(&m) < 256,
        "FORGET shrank the table ({before} before, {} after)",
        held(&m)
    );
}

#[tokio::test]
async fn foreground_mode_serves_until_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut child = tokio::process::Command::new(crate::support::cli::SECRETSFS)
        .args(["--source", &demo_source(), "mount", "-f"])
        .arg(&mnt)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _unmount_on_failure = DetachOnDrop(mnt.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !crate::support::mount::is_mounted(&mnt) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::fs::read(mnt.join("api-key")).unwrap() == b"demo-api-key-0123456789");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!crate::support::mount::is_mounted(&mnt));
}

struct DetachOnDrop(std::path::PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if crate::support::mount::is_mounted(&self.0) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test]
async fn bad_mountpoints_fail_with_one_line_and_exit_78() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let file_path = file.path().to_str().unwrap().to_owned();
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let mounted = m.mnt.to_str().unwrap().to_owned();
    for (mountpoint, needle) in [
        ("/nonexistent/secretsfs-mnt", "No such file"),
        (file_path.as_str(), "not a directory"),
        (mounted.as_str(), "already a secretsfs mount"),
    ] {
        let out =
            crate::support::cli::run(&["--source", &demo_source(), "mount", mountpoint]).await;
        let lines = crate::support::cli::stderr_lines(&out);
        assert_eq!(out.status.code(), Some(78), "{mountpoint}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(needle), "{lines:?}");
    }
}

/// Unmounts a test's own bind mount even when the test fails.
struct BindGuard(std::path::PathBuf);

impl Drop for BindGuard {
    fn drop(&mut self) {
        while crate::support::mount::is_mounted(&self.0) {
            if nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

#[tokio::test]
async fn an_unmount_from_outside_leaves_what_lies_beneath() {
    let dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("log");
    // The mountpoint is itself a mount, as a container's hostPath or a bind mount would be.
    nix::mount::mount(
        Some(&mnt),
        &mnt,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _bind = BindGuard(mnt.clone());
    let mnt_s = mnt.to_str().unwrap();
    let log_s = log.to_str().unwrap();
    let out = crate::support::cli::run(&[
        "--source",
        &demo_source(),
        "--log-level",
        "info",
        "--log-file",
        log_s,
        "mount",
        "--no-http",
        mnt_s,
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}",
        crate::support::cli::stderr_lines(&out)
    );
    let _detach = DetachOnDrop(mnt.clone());
    assert!(std::fs::read(mnt.join("api-key")).is_ok());
    nix::mount::umount(&mnt).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("unmounted from outside")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not notice the unmount"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        crate::support::mount::is_mounted(&mnt),
        "the bind mount beneath is still there"
    );
    assert!(
        std::fs::read(mnt.join("api-key")).is_err(),
        "secretsfs is gone"
    );
}
