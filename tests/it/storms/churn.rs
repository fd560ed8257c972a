//! Memory under churn: many distinct secrets, each read once, through a cache of 1,000
//! entries. What the daemon keeps is bounded by the cache's budget, not by what went through
//! it: the cache evicts all but 1,000, and the daemon's resident memory stays within the byte
//! budget plus a fixed overhead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use super::{Scale, connect, figure, get_secret, scale, status_kib, version_of};
use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Op};
use crate::support::http::{Served, TOKEN};
use crate::support::mount::Mounted;

const SECRETS: usize = 100_000;
const CACHE_ENTRIES: usize = 1_000;
/// About what 1,000 values take, so that both bounds matter.
const CACHE_BYTES: usize = 1 << 20;
const VALUE_BYTES: usize = 1_000;
/// Readers at once (keep-alive connections, or threads reading files).
const READERS: usize = 8;
/// What the process holds besides the cache (runtime, SDK, connections, the allocator's
/// spare pages) over its resident memory at start: generous, since the test judges a leak
/// of what went through the cache (at full scale, 100 MB of values), not a few megabytes.
const OVERHEAD_KIB: u64 = 24 * 1024;
/// A cached value is charged its bytes; the process also keeps the answer rendered from it
/// and the slot around it.
const COPIES: u64 = 4;

/// The fake holds 100,000 secrets at both scales. CI reads 5,000 of them, five times the
/// cache: a read costs a few milliseconds of a debug build's CPU on a shared machine.
/// scripts/fault-storms.sh reads them all.
fn reads() -> usize {
    match scale() {
        Scale::Ci => 5_000,
        Scale::Full => SECRETS,
    }
}

fn name(i: usize) -> String {
    format!("churn/s{i:06}")
}

fn fake_with_every_secret() -> FakeSecretsManager {
    let fake = FakeSecretsManager::start();
    let filler = "x".repeat(VALUE_BYTES - 20);
    for i in 0..SECRETS {
        let name = name(i);
        fake.put_string(&name, &format!("{name}:{filler}"));
    }
    fake
}

/// The source, the cache's bounds and warn-level logging (a line per read at debug would
/// measure the log, not the cache), with the lines that say the daemon's pid and address.
fn global_args(fake: &FakeSecretsManager) -> Vec<String> {
    const LOG: &str = "warn,secretsfs::run=info,secretsfs::http::listen=info";
    let mut args = aws_args(&fake.endpoint_url());
    args.extend(
        [
            "--cache-size",
            &CACHE_ENTRIES.to_string(),
            "--cache-bytes",
            &CACHE_BYTES.to_string(),
            "--log-level",
            LOG,
        ]
        .map(str::to_owned),
    );
    args
}

/// A counter of the API's /metrics.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let r = crate::support::http::get(addr, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", r.text()))
}

/// Reads secrets 0..n over HTTP, once each, READERS at a time: what failed.
async fn read_over_http(addr: SocketAddr, n: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut conn = connect(addr).await;
                let mut failed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        return failed;
                    }
                    let r = get_secret(&mut conn, &name(i)).await;
                    if version_of(&r).is_none() {
                        failed.push(format!("{}: {} {}", name(i), r.status, r.describe()));
                    }
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for reader in readers {
        failed.extend(reader.await.unwrap());
    }
    failed
}

/// Reads secrets first..n as files under `mnt`, once each, READERS threads at a time: what
/// failed.
async fn read_files(mnt: PathBuf, first: usize, n: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(first));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (next, mnt) = (next.clone(), mnt.clone());
            tokio::task::spawn_blocking(move || {
                let mut failed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        return failed;
                    }
                    match std::fs::read(mnt.join(name(i))) {
                        Ok(bytes) if bytes.starts_with(format!("{}:", name(i)).as_bytes()) => {}
                        Ok(_) => failed.push(format!("{}: other bytes", name(i))),
                        Err(e) => failed.push(format!("{}: {e}", name(i))),
                    }
                }
            })
        })
        .collect();
    let mut failed = Vec::new();
    for reader in readers {
        failed.extend(reader.await.unwrap());
    }
    failed
}

/// What one churn did.
struct Churned<'a> {
    /// Through what: "the HTTP API", "the mount".
    front: &'a str,
    pid: i32,
    api: SocketAddr,
    n: usize,
    start_kib: u64,
    /// What the front end may hold beyond the cache's budget for these reads.
    beyond_budget_kib: u64,
    took: std::time::Duration,
    failed: Vec<String>,
}

/// The figures of a churn, and its bounds.
async fn judge(fake: &FakeSecretsManager, churned: Churned<'_>) {
    let Churned {
        front,
        pid,
        api,
        n,
        start_kib,
        beyond_budget_kib,
        took,
        failed,
    } = churned;
    let rss_kib = status_kib(pid, "VmRSS");
    let hwm_kib = status_kib(pid, "VmHWM");
    let evictions = metric(api, "secretsfs_cache_evictions_total").await;
    figure(format_args!(
        "churn through {front}: {n} secrets of {VALUE_BYTES} bytes read once each in {took:?}, \
         cache of {CACHE_ENTRIES} entries and {CACHE_BYTES} bytes: {evictions} evictions; \
         daemon RSS {start_kib} KiB at start, {rss_kib} KiB after, VmHWM {hwm_kib} KiB"
    ));
    assert!(
        failed.is_empty(),
        "{} reads failed, among them: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(fake.calls(Op::GetSecretValue), n, "one call per secret");
    assert!(
        evictions >= (n - CACHE_ENTRIES) as u64,
        "{evictions} evictions after {n} secrets through a cache of {CACHE_ENTRIES}"
    );
    let bound = start_kib + COPIES * CACHE_BYTES as u64 / 1024 + OVERHEAD_KIB + beyond_budget_kib;
    assert!(
        hwm_kib <= bound,
        "the daemon's peak RSS, {hwm_kib} KiB, passed {bound} KiB (at start {start_kib} KiB, \
         budget {CACHE_BYTES} bytes, {beyond_budget_kib} KiB allowed beyond it)"
    );
}

#[tokio::test]
async fn secrets_churning_through_the_api_keep_memory_within_the_cache_budget() {
    let n = reads();
    let fake = fake_with_every_secret();
    let mut args = global_args(&fake);
    args.extend(["serve", "--http-port", "0"].map(str::to_owned));
    let served = Served::start(&strs(&args)).await;
    let pid = served.pid().expect("serve runs") as i32;
    let start_kib = status_kib(pid, "VmRSS");
    let started = Instant::now();
    let failed = read_over_http(served.addr, n).await;
    let churned = Churned {
        front: "the HTTP API",
        pid,
        api: served.addr,
        n,
        start_kib,
        beyond_budget_kib: 0,
        took: started.elapsed(),
        failed,
    };
    judge(&fake, churned).await;
    let stderr = served.stop().await;
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Bytes of the daemon's memory per inode the kernel holds: the mount answers for every file
/// the kernel keeps (until it forgets it, under memory pressure), beyond the cache's budget.
/// About 0.6 KiB was measured with 100,000 (scripts/fault-storms.sh); this allows twice that.
const PER_INODE_BYTES: u64 = 1_280;

/// Through the mount, the cache's bound holds for values, but the mount also keeps the tree of
/// the account's listing (for `ls`, per secret in the account) and an inode for every file the
/// kernel holds: the bound allows for those, and the figures show them. The listing TTL is
/// long, so that the listing is fetched once: with 100,000 secrets, each listing is 1,000
/// ListSecrets pages that lookups wait on, which would make this a test of listing. Slow;
/// scripts/fault-storms.sh runs it.
#[tokio::test]
#[ignore = "minutes long: scripts/fault-storms.sh runs it"]
async fn secrets_churning_through_the_mount_keep_memory_within_the_cache_budget_and_its_inodes() {
    let n = reads();
    let fake = fake_with_every_secret();
    let mut global = global_args(&fake);
    global.extend(["--list-ttl", "86400"].map(str::to_owned));
    let m = Mounted::start_with_env(
        &strs(&global),
        &["--http-port", "0"],
        &[("AWS_TOKEN", TOKEN)],
    )
    .await;
    let addr = m.http_addr().expect("the HTTP API's address in the log");
    let mounted_kib = status_kib(m.pid(), "VmRSS");
    let started = Instant::now();
    // The first read lists the account.
    let mut failed = read_files(m.mnt.clone(), 0, 1).await;
    let listed_kib = status_kib(m.pid(), "VmRSS");
    failed.extend(read_files(m.mnt.clone(), 1, n).await);
    figure(format_args!(
        "churn through the mount: RSS {mounted_kib} KiB mounted, {listed_kib} KiB once the \
         listing of {SECRETS} secrets is held ({} ListSecrets pages)",
        fake.calls(Op::ListSecrets)
    ));
    let churned = Churned {
        front: "the mount",
        pid: m.pid(),
        api: addr,
        n,
        start_kib: listed_kib,
        beyond_budget_kib: n as u64 * PER_INODE_BYTES / 1024,
        took: started.elapsed(),
        failed,
    };
    judge(&fake, churned).await;
}
