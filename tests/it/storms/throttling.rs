//! A throttling storm: every call throttled for a while, through a mount and its HTTP API on
//! one cache. Readers keep being served the cached values, stale, the whole time; the calls
//! the storm costs are bounded by the back-off, not by the reads; after it, every secret shows
//! the version it was rotated to meanwhile within a TTL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::{Scale, all_calls, connect, figure, get_secret, scale, version_of};
use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::mount::{Mounted, alive};

/// The SDK's standard retry mode: attempts per call, and the longest it sleeps between them
/// for a throttled call (1 s, then 2 s, jittered), which a call started just before the storm
/// ends may still be in.
const SDK_ATTEMPTS: usize = 3;
const SDK_LONGEST_SLEEP: Duration = Duration::from_secs(2);
/// Fetches ahead of readers back off on their own after failures (doubling); they add at most
/// this many fetches per secret to a storm of any length in these runs.
const AHEAD_FETCHES: usize = 2;

struct Storm {
    secrets: usize,
    ttl: Duration,
    length: Duration,
}

impl Storm {
    fn for_scale() -> Storm {
        match scale() {
            // The TTL is the back-off (at most 5 s, at most the TTL) and at least the SDK's
            // longest sleep, so that "fresh within a TTL" holds for a call under way.
            Scale::Ci => Storm {
                secrets: 4,
                ttl: Duration::from_secs(2),
                length: Duration::from_secs(6),
            },
            Scale::Full => Storm {
                secrets: 20,
                ttl: Duration::from_secs(10),
                length: Duration::from_secs(30),
            },
        }
    }

    /// After a failed refresh, how long the stale value is served before the next try.
    fn backoff(&self) -> Duration {
        self.ttl.min(Duration::from_secs(5))
    }

    /// The most calls the storm may cost: a fetch per secret per back-off (one flight at a
    /// time), plus the first and the fetches ahead, each retried by the SDK; batches
    /// (20 names a call) as many again per batch.
    fn call_bound(&self) -> usize {
        let rounds = self.length.as_millis().div_ceil(self.backoff().as_millis()) as usize;
        let fetches = rounds + 1 + AHEAD_FETCHES;
        SDK_ATTEMPTS * fetches * (self.secrets + self.secrets.div_ceil(20))
    }
}

/// What the readers saw in one phase.
#[derive(Default, Debug)]
struct Seen {
    reads: usize,
    /// Reads that failed (an HTTP status other than 200, an I/O error from the mount).
    failed: Vec<String>,
    /// Reads that returned a version other than the expected one.
    wrong_version: Vec<String>,
    slowest: Duration,
    /// Reads that took longer than [`WAITED`]: they waited on a call upstream.
    waited: usize,
}

/// Far longer than a read from the cache takes, far shorter than the SDK's retries.
const WAITED: Duration = Duration::from_millis(500);

impl Seen {
    fn add(&mut self, other: Seen) {
        self.reads += other.reads;
        self.failed.extend(other.failed);
        self.wrong_version.extend(other.wrong_version);
        self.slowest = self.slowest.max(other.slowest);
        self.waited += other.waited;
    }

    fn timed(&mut self, took: Duration) {
        self.reads += 1;
        self.slowest = self.slowest.max(took);
        if took > WAITED {
            self.waited += 1;
        }
    }
}

/// Reads every secret over HTTP, round after round, until `stop`; each must be `expected`.
async fn http_reader(
    addr: SocketAddr,
    names: Arc<Vec<String>>,
    expected: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut conn = connect(addr).await;
    let mut seen = Seen::default();
    while !stop.load(Relaxed) {
        for (name, want) in names.iter().zip(expected.iter()) {
            let started = Instant::now();
            let r = get_secret(&mut conn, name).await;
            seen.timed(started.elapsed());
            match version_of(&r) {
                None => seen
                    .failed
                    .push(format!("HTTP {name}: {} {}", r.status, r.describe())),
                Some(v) if &v != want => seen.wrong_version.push(format!("HTTP {name}: {v}")),
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// Reads every file through the mount, round after round, until `stop`; each must hold
/// `expected` (compared, never shown).
fn file_reader(
    paths: Vec<(String, PathBuf)>,
    expected: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Relaxed) {
        for ((name, path), want) in paths.iter().zip(&expected) {
            let started = Instant::now();
            let read = std::fs::read(path);
            seen.timed(started.elapsed());
            match read {
                Err(e) => seen.failed.push(format!("file {name}: {e}")),
                Ok(bytes) if &bytes != want => {
                    seen.wrong_version.push(format!("file {name}: other bytes"))
                }
                Ok(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

fn value(name: &str, generation: &str) -> String {
    format!("{generation}-value-of-{name}")
}

#[tokio::test]
async fn a_throttling_storm_serves_stale_values_with_bounded_calls_then_everything_is_fresh() {
    let storm = Storm::for_scale();
    let fake = FakeSecretsManager::start();
    let names: Vec<String> = (0..storm.secrets)
        .map(|i| format!("storm/s{i:02}"))
        .collect();
    let old: Vec<String> = names
        .iter()
        .map(|n| fake.put_string(n, &value(n, "old")))
        .collect();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".to_owned(), storm.ttl.as_secs().to_string()]);
    let global = strs(&global);
    let (m, addr) = Mounted::start_with_http_api(&global).await;

    // Warm: every secret cached, through both front ends.
    for (name, version) in names.iter().zip(&old) {
        let r = get_secret(&mut connect(addr).await, name).await;
        assert_eq!(
            version_of(&r).as_ref(),
            Some(version),
            "{name}: {}",
            r.describe()
        );
        assert!(std::fs::read(m.path(name)).unwrap() == value(name, "old").as_bytes());
    }

    // The storm: every operation throttled; the secrets rotate meanwhile, unseen.
    for op in [
        Op::GetSecretValue,
        Op::BatchGetSecretValue,
        Op::DescribeSecret,
        Op::ListSecrets,
    ] {
        fake.inject(op, Fault::Throttling, usize::MAX);
    }
    let calls_before = all_calls(&fake);
    let new: Vec<String> = names
        .iter()
        .map(|n| fake.put_string(n, &value(n, "new")))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let names = Arc::new(names);
    let http = tokio::spawn(http_reader(
        addr,
        names.clone(),
        Arc::new(old.clone()),
        stop.clone(),
    ));
    let files = {
        let paths: Vec<_> = names.iter().map(|n| (n.clone(), m.path(n))).collect();
        let expected = names.iter().map(|n| value(n, "old").into_bytes()).collect();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || file_reader(paths, expected, stop))
    };
    tokio::time::sleep(storm.length).await;
    stop.store(true, Relaxed);
    let mut during = http.await.unwrap();
    during.add(files.await.unwrap());
    let storm_calls = all_calls(&fake) - calls_before;
    let recovered_at = Instant::now();
    fake.clear_faults();

    figure(format_args!(
        "throttling storm of {:?}, {} secrets, TTL {:?}: {} reads served ({} failed, {} over {WAITED:?}, slowest {:?}), \
         {} upstream calls (bound {})",
        storm.length,
        storm.secrets,
        storm.ttl,
        during.reads,
        during.failed.len(),
        during.waited,
        during.slowest,
        storm_calls,
        storm.call_bound()
    ));
    assert!(
        during.failed.is_empty() && during.wrong_version.is_empty(),
        "during the storm every read must be served the cached value: {during:?}\nlog:\n{}",
        m.log()
    );
    assert!(
        during.reads >= 10 * storm.secrets,
        "too few reads to judge: {during:?}"
    );
    assert!(
        storm_calls <= storm.call_bound(),
        "the storm cost {storm_calls} calls for {} reads, over the bound of {} (a retry storm)",
        during.reads,
        storm.call_bound()
    );
    assert!(
        m.log().contains("ThrottlingException"),
        "the storm left no log line:\n{}",
        m.log()
    );

    // Recovery: poll until every secret shows its new version through both front ends.
    let mut stale_after = 0;
    let mut all_fresh_after = None;
    while recovered_at.elapsed() < storm.ttl + SDK_LONGEST_SLEEP + Duration::from_secs(5) {
        let mut fresh = 0;
        for (name, version) in names.iter().zip(&new) {
            let r = get_secret(&mut connect(addr).await, name).await;
            let file = std::fs::read(m.path(name)).unwrap();
            if version_of(&r).as_ref() == Some(version) && file == value(name, "new").as_bytes() {
                fresh += 1;
            } else {
                stale_after += 1;
            }
        }
        if fresh == names.len() {
            all_fresh_after = Some(recovered_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    figure(format_args!(
        "throttling storm recovery: every secret fresh {all_fresh_after:?} after the storm \
         ended ({stale_after} stale reads meanwhile)"
    ));
    // Fresh within a TTL: any read that starts a TTL (and a margin for the last throttled
    // answer to land) after the storm ended is the new version, whatever the polling saw.
    tokio::time::sleep((storm.ttl + Duration::from_secs(1)).saturating_sub(recovered_at.elapsed()))
        .await;
    for (name, version) in names.iter().zip(&new) {
        let r = get_secret(&mut connect(addr).await, name).await;
        assert_eq!(
            version_of(&r).as_ref(),
            Some(version),
            "{name} over HTTP a TTL after the storm: {}",
            r.describe()
        );
        assert!(
            std::fs::read(m.path(name)).unwrap() == value(name, "new").as_bytes(),
            "{name} through the mount a TTL after the storm: not the new version"
        );
    }
    assert!(alive(m.pid()), "the daemon is gone");
}
