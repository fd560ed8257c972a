//! One slow secret, many readers: more concurrent reads of slow secrets than the mount has
//! FUSE worker threads, while reads of other secrets, cached and not, go on through the mount
//! and its HTTP API. A worker hands a fetch to the runtime and is free again, so none of the
//! other reads waits on the slow ones.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Scale, connect, figure, get_secret, scale, version_of};
use crate::support::cli::{DEADLINE, aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Latch, Op};
use crate::support::http::TOKEN;
use crate::support::mount::{Mounted, alive};

/// The most FUSE worker threads a mount starts (src/service/mount.rs, `connect`: the CPUs, clamped to 2-8; there is
/// no setting for it). One more slow read than that at once would block every worker if any
/// worker waited on the network.
const MAX_FUSE_THREADS: usize = 8;
const SLOW_READS: usize = MAX_FUSE_THREADS + 4;
const CACHED: usize = 10;
const COLD: usize = 5;
/// The slow secret: 10 s a call. The SDK's attempt timeout (a third of `--timeout`)
/// must exceed it, or the call would time out and be retried instead.
const SLOW_CALL: Duration = Duration::from_secs(10);

fn value(name: &str) -> String {
    format!("value-of-{name}")
}

/// Reads `name` through the mount, off the test's runtime.
fn read_file(m: &Mounted, name: &str) -> JoinHandle<(String, std::io::Result<Vec<u8>>)> {
    let (name, path): (String, PathBuf) = (name.to_owned(), m.path(name));
    std::thread::spawn(move || {
        let read = std::fs::read(&path);
        (name, read)
    })
}

/// What a reader thread returns, failing the test (which then unmounts, ending the read)
/// if it takes longer than the tests' deadline: a read stuck behind the slow ones.
async fn finish<T>(reader: JoinHandle<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "a read did not complete");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    reader.join().unwrap()
}

fn assert_value(name: &str, read: &std::io::Result<Vec<u8>>) {
    match read {
        Ok(bytes) => assert!(bytes == value(name).as_bytes(), "{name}: other bytes"),
        Err(e) => panic!("{name}: {e}"),
    }
}

#[tokio::test]
async fn slow_secrets_beyond_the_fuse_threads_do_not_hold_up_reads_of_others() {
    let full = scale() == Scale::Full;
    let fake = FakeSecretsManager::start();
    let name = |kind: &str, i: usize| format!("{kind}{i:02}");
    let slow: Vec<String> = (0..SLOW_READS).map(|i| name("slow", i)).collect();
    let cached: Vec<String> = (0..CACHED).map(|i| name("cached", i)).collect();
    let cold: Vec<String> = (0..COLD).map(|i| name("cold", i)).collect();
    for n in slow.iter().chain(&cached).chain(&cold) {
        fake.put_string(n, &value(n));
    }
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--timeout".to_owned(), "45".to_owned()]);
    // Without the kernel cache every open and read reaches the daemon's workers.
    let m = Mounted::start_with_env(
        &strs(&global),
        &["--no-kernel-cache", "--http-port", "0"],
        &[("AWS_TOKEN", TOKEN)],
    )
    .await;
    let addr = m.http_addr().expect("the HTTP API's address in the log");
    for n in &cached {
        let (_, read) = finish(read_file(&m, n)).await;
        assert_value(n, &read);
    }
    let calls_warm = fake.calls(Op::GetSecretValue);

    // CI holds the slow answers until released; the full run delays each by SLOW_CALL.
    let latches: Vec<Latch> = if full {
        for n in &slow {
            fake.set_secret_latency(n, SLOW_CALL);
        }
        Vec::new()
    } else {
        slow.iter().map(|n| fake.hold(n)).collect()
    };
    let started = Instant::now();
    let slow_reads: Vec<_> = slow.iter().map(|n| read_file(&m, n)).collect();
    let deadline = Instant::now() + DEADLINE;
    while fake.calls(Op::GetSecretValue) < calls_warm + SLOW_READS {
        assert!(
            Instant::now() < deadline,
            "only {} of the {SLOW_READS} slow reads reached the fake",
            fake.calls(Op::GetSecretValue) - calls_warm
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Every slow read is upstream now. Others go on: cold ones fetched, cached ones from the
    // cache, through the mount and over HTTP (rounds until the slow reads end in the full run).
    let mut others = 0;
    let mut slowest = Duration::ZERO;
    let mut conn = connect(addr).await;
    loop {
        for n in &cold {
            let t = Instant::now();
            let (_, read) = finish(read_file(&m, n)).await;
            slowest = slowest.max(t.elapsed());
            assert_value(n, &read);
            others += 1;
        }
        for _ in 0..10 {
            for n in &cached {
                let t = Instant::now();
                let (_, read) = finish(read_file(&m, n)).await;
                let r = get_secret(&mut conn, n).await;
                slowest = slowest.max(t.elapsed());
                assert_value(n, &read);
                assert!(version_of(&r).is_some(), "{n} over HTTP: {}", r.describe());
                others += 2;
            }
        }
        if !full || slow_reads.iter().all(JoinHandle::is_finished) {
            break;
        }
    }
    let slow_done_meanwhile = slow_reads.iter().filter(|r| r.is_finished()).count();
    if !full {
        assert_eq!(
            slow_done_meanwhile, 0,
            "a held read finished before its answer was released"
        );
        assert!(latches.iter().all(|l| l.waiting() == 1));
    }
    drop(latches);
    for reader in slow_reads {
        let (n, read) = finish(reader).await;
        assert_value(&n, &read);
    }
    let slow_took = started.elapsed();
    figure(format_args!(
        "{SLOW_READS} concurrent reads of slow secrets ({}), mount with at most \
         {MAX_FUSE_THREADS} FUSE threads: {others} reads of other secrets completed meanwhile \
         (slowest {slowest:?}); the slow reads took {slow_took:?}",
        if full { "10 s a call" } else { "held" },
    ));
    // One call per slow secret and per cold one: nothing was retried or asked twice.
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        calls_warm + SLOW_READS + COLD,
        "log:\n{}",
        m.log()
    );
    assert!(alive(m.pid()));
}
