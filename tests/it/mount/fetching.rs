//! Fetching and listing: a slow secret does not hold up cached ones, cold reads share one
//! call, a listing fetches in batches or is denied, and the inode table shrinks when the kernel
//! forgets.

use std::time::Duration;

use crate::support::cli::{aws_args, demo_source, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::mount::Mounted;

use super::names;

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
    assert_eq!(super::files_shown_by_ls("-l", &m.path("many")), 45);
    assert!(
        fake.calls(Op::BatchGetSecretValue) <= 3,
        "{}",
        fake.calls(Op::BatchGetSecretValue)
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 0);
    assert_eq!(std::fs::metadata(m.path("many/s44")).unwrap().len(), 44);
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

/// A directory larger than the cache: `ls -l` costs about one BatchGetSecretValue per 20
/// secrets, whatever the cache's size, and none of GetSecretValue.
#[tokio::test]
async fn ls_l_of_a_directory_larger_than_the_cache_costs_one_batch_per_20_secrets() {
    let fake = FakeSecretsManager::start();
    for i in 0..1200 {
        fake.put_string(&format!("big/s{i:04}"), "v");
    }
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--cache-size".into(), "1000".into()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    assert_eq!(super::files_shown_by_ls("-l", &m.path("big")), 1200);
    let batches = fake.calls(Op::BatchGetSecretValue);
    assert!((60..=66).contains(&batches), "{batches} batch calls");
    assert_eq!(fake.calls(Op::GetSecretValue), 0);
}

/// `ls -lR` of every secret, then reading each: the values `ls` fetched are still cached.
#[tokio::test]
async fn reading_every_secret_after_ls_lr_costs_no_more_calls() {
    let fake = FakeSecretsManager::start();
    for i in 0..2000 {
        fake.put_string(&format!("tree/d{}/s{i:04}", i % 4), "v");
    }
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    assert_eq!(super::files_shown_by_ls("-lR", &m.path("tree")), 2000);
    let after_ls = fake.calls(Op::BatchGetSecretValue) + fake.calls(Op::GetSecretValue);
    assert!(after_ls <= 110, "{after_ls} calls for ls -lR");
    for i in 0..2000 {
        let path = m.path(&format!("tree/d{}/s{i:04}", i % 4));
        assert!(std::fs::read(&path).unwrap() == b"v");
    }
    let total = fake.calls(Op::BatchGetSecretValue) + fake.calls(Op::GetSecretValue);
    assert_eq!(total, after_ls, "reading after ls -lR made calls");
}

/// A throttled upstream: every read is EIO, and the log says why and what kind of error
/// readers get (docs/ARCHITECTURE.md#errors maps it), once, not once per read.
#[tokio::test]
async fn a_throttled_secret_is_eio_with_one_log_line_saying_why() {
    let fake = FakeSecretsManager::start();
    fake.put_string("busy", "value");
    fake.inject(Op::GetSecretValue, Fault::Throttling, usize::MAX);
    let m = Mounted::start(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    for _ in 0..5 {
        let err = std::fs::read(m.path("busy")).unwrap_err();
        assert_eq!(super::errno_of(&err), super::libc_errno::EIO);
    }
    let log = m.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("fetch failed")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    for needle in ["\"busy\"", "ThrottlingException", "an error (Unavailable)"] {
        assert!(lines[0].contains(needle), "{needle} not in {}", lines[0]);
    }
    assert!(!log.contains("value\n") && !log.contains("\"value\""));
}
