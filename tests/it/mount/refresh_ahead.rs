//! Refresh ahead through the mount: a file in steady use never makes a reader wait on the
//! network after its first read, and a rotation shows in files, stage files and the HTTP API
//! from the same moment.

use std::time::{Duration, Instant};

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::http;
use crate::support::mount::Mounted;

const TTL_SECONDS: u64 = 3;

fn global(fake: &FakeSecretsManager) -> Vec<String> {
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), TTL_SECONDS.to_string()]);
    global
}

#[tokio::test]
async fn a_file_read_steadily_waits_on_the_network_once_and_shows_a_rotation_within_the_ttl() {
    let fake = FakeSecretsManager::start();
    fake.put_string("steady", "version one");
    let mut m = Mounted::start(&strs(&global(&fake)), &[]).await;
    let path = m.path("steady");
    let started = Instant::now();
    let (mut rotated_at, mut seen_after, mut bad_reads, mut reads) = (None, None, 0, 0);
    while started.elapsed() < Duration::from_secs(5 * TTL_SECONDS) {
        let value = std::fs::read(&path).unwrap();
        reads += 1;
        match (value.as_slice(), rotated_at) {
            (b"version one", _) => {}
            (b"version two", Some(at)) => {
                seen_after.get_or_insert_with(|| Instant::now().duration_since(at));
            }
            _ => bad_reads += 1,
        }
        if rotated_at.is_none() && started.elapsed() > Duration::from_secs(2 * TTL_SECONDS) {
            fake.put_string("steady", "version two");
            rotated_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bad_reads, 0, "of {reads} reads");
    let seen_after = seen_after.expect("the rotation was seen");
    assert!(
        seen_after <= Duration::from_secs(TTL_SECONDS + 2),
        "seen {seen_after:?} after the rotation"
    );
    assert!(m.stop());
    let stats = m.final_stats();
    // The first lookup waited on the listing and the value; nothing waited after.
    assert_eq!(stats["misses"], 2, "{stats}");
    assert_eq!(stats["coalesced_waits"], 0, "{stats}");
    let refreshes = stats["refreshes_ahead"].as_u64().unwrap();
    assert!(
        refreshes >= 3,
        "{refreshes} refreshes ahead in 5 TTLs: {stats}"
    );
    assert_eq!(
        stats["upstream_calls"]["get_secret_value"]
            .as_u64()
            .unwrap(),
        1 + refreshes,
        "every call after the first was a refresh ahead: {stats}"
    );
}

#[tokio::test]
async fn the_stages_layout_and_the_http_api_show_a_rotation_with_the_files() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "one");
    fake.put_string("db", "two");
    let (m, addr) = Mounted::start_with_http_api(&strs(&global(&fake))).await;
    let current = m.path("db");
    let http_current = "/secretsmanager/get?secretId=db";
    let http_previous = "/secretsmanager/get?secretId=db&versionStage=AWSPREVIOUS";
    let value_of = |r: http::Response| r.json()["SecretString"].as_str().unwrap().to_owned();
    assert_eq!(std::fs::read(&current).unwrap(), b"two");
    assert_eq!(value_of(http::get(addr, http_current).await), "two");
    assert_eq!(value_of(http::get(addr, http_previous).await), "one");
    fake.put_string("db", "three");
    let deadline = Instant::now() + Duration::from_secs(TTL_SECONDS + 2);
    loop {
        // Keeps both in use, so that both are refreshed ahead.
        let file = std::fs::read(&current).unwrap();
        let api = value_of(http::get(addr, http_current).await);
        if file == b"three" || api == "three" {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The refresh that found it made the kernel drop the old entry before anyone was told;
    // a reader may be a few milliseconds behind the cache, never a TTL.
    let caught_up = Instant::now() + Duration::from_millis(500);
    while std::fs::read(&current).unwrap() != b"three" {
        assert!(Instant::now() < caught_up, "the file lags the API");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(value_of(http::get(addr, http_current).await), "three");
    assert_eq!(
        value_of(http::get(addr, http_previous).await),
        "two",
        "AWSPREVIOUS moved with the rotation"
    );
}

#[tokio::test]
async fn in_the_stages_layout_a_rotation_moves_both_stage_files_at_once() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "one");
    fake.put_string("db", "two");
    let m = Mounted::start(&strs(&global(&fake)), &["--layout", "stages"]).await;
    let (current, previous) = (m.path("db/AWSCURRENT"), m.path("db/AWSPREVIOUS"));
    assert_eq!(std::fs::read(&current).unwrap(), b"two");
    assert_eq!(std::fs::read(&previous).unwrap(), b"one");
    fake.put_string("db", "three");
    let deadline = Instant::now() + Duration::from_secs(TTL_SECONDS + 2);
    while std::fs::read(&current).unwrap() != b"three" {
        assert!(Instant::now() < deadline, "the rotation never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read(&previous).unwrap(),
        b"two",
        "AWSPREVIOUS shows the rotation with AWSCURRENT"
    );
}
