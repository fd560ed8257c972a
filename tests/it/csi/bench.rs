//! The upstream calls of one node's provider for an hour, beside what the AWS provider's code
//! makes for the same (`scripts/csi-bench.sh` runs it and prints the table; ignored in the
//! test command). 50 pods of 5 service accounts (5 roles) mount the same 10 secrets, with
//! rotation enabled: every pod republishes every 2 minutes, as driver v1.6.0 does at its
//! default --rotation-poll-interval, at the default TTL of 5 minutes; one secret is rotated
//! half-way. Time runs SCALE times faster (100 by default: TTL 3 s, a republish every 1.2 s,
//! 36 s in all), which keeps the ratio of TTL to republish interval, hence the counts.

use std::time::{Duration, Instant};

use super::*;
use crate::support::moto::{create_string, put_string};

const PODS: usize = 50;
const ACCOUNTS: usize = 5;
const OBJECTS: usize = 10;
const HOUR: Duration = Duration::from_secs(3600);
const TTL: Duration = Duration::from_secs(300);
const REPUBLISH: Duration = Duration::from_secs(120);

struct Run {
    get_secret_value: usize,
    batch: usize,
    describe: usize,
    sts: usize,
    mounts: usize,
    /// Answers after rotation + TTL that still held the old value.
    late: usize,
    refusals: usize,
}

async fn run(batch_allowed: bool, scale: u32) -> Run {
    let world = World::new();
    let sm = world.sm(REGION).await;
    let mut objects = String::new();
    for i in 0..OBJECTS {
        create_string(&sm, &format!("app/s{i}"), &format!("value-{i}")).await;
        objects.push_str(&format!(
            "- objectName: app/s{i}\n  objectType: secretsmanager\n"
        ));
    }
    for a in 0..ACCOUNTS {
        let role = format!("arn:aws:iam::123456789012:role/bench-{a}");
        world
            .kube
            .add_service_account("bench", &format!("sa-{a}"), Some(&role));
    }
    if !batch_allowed {
        world.proxy.refuse_batch();
    }
    let ttl = (TTL / scale).as_secs().max(1).to_string();
    let provider = world.provider(&["--ttl", &ttl]).await;
    let client = provider.client().await;
    let pods: Vec<Pod> = (0..PODS)
        .map(|p| {
            Pod::new(
                "bench",
                &format!("pod-{p}"),
                &format!("sa-{}", p % ACCOUNTS),
            )
        })
        .collect();
    let parameters = [("objects", objects.as_str()), ("region", REGION)];
    let (hour, every) = (HOUR / scale, REPUBLISH / scale);
    let start = Instant::now();
    let mut rotated_at: Option<(Instant, String)> = None;
    let (mut mounts, mut late, mut refusals) = (0, 0, 0);
    let mut tick = tokio::time::interval(every);
    while start.elapsed() <= hour {
        tick.tick().await;
        if rotated_at.is_none() && start.elapsed() >= hour / 2 {
            let version = put_string(&sm, "app/s0", "value-0-rotated").await;
            rotated_at = Some((Instant::now(), version));
        }
        let round: Vec<_> = pods
            .iter()
            .map(|pod| {
                let mut client = client.clone();
                let request = pod.request(&parameters);
                tokio::spawn(async move { client.mount(request).await.unwrap().into_inner() })
            })
            .collect();
        let asked = Instant::now();
        for answer in round {
            let answer = answer.await.unwrap();
            mounts += 1;
            if !code(&answer).is_empty() {
                refusals += 1;
                continue;
            }
            if let Some((at, version)) = &rotated_at
                && asked >= *at + TTL / scale
                && (files(&answer)["app_s0"].1 != b"value-0-rotated"
                    || &versions(&answer)["app_s0"] != version)
            {
                late += 1;
            }
        }
    }
    Run {
        get_secret_value: world.proxy.calls("GetSecretValue"),
        batch: world.proxy.calls("BatchGetSecretValue"),
        describe: world.proxy.calls("DescribeSecret"),
        sts: world.proxy.calls("AssumeRoleWithWebIdentity"),
        mounts,
        late,
        refusals,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/csi-bench.sh runs it"]
async fn upstream_calls_of_one_node_for_an_hour() {
    let scale: u32 = std::env::var("SECRETSFS_CSI_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let denied = run(false, scale).await;
    let allowed = run(true, scale).await;
    // The AWS provider (v3.1.1), from its code: every mount and republish calls
    // GetSecretValue once per object (driver v1.6.0 sends no current versions, so there is
    // no DescribeSecret shortcut) and assumes the role once (its credentials live for that
    // mount only); failoverRegion doubles the Secrets Manager calls.
    let aws_mounts = denied.mounts;
    let aws_get = aws_mounts * OBJECTS;
    let aws_sts = aws_mounts;
    println!(
        "csi-bench: {PODS} pods, {ACCOUNTS} service accounts (roles), {OBJECTS} secrets, a republish every {}s, TTL {}s, one hour at 1/{scale} time",
        REPUBLISH.as_secs(),
        TTL.as_secs()
    );
    println!(
        "csi-bench: {:<44} {:>8} {:>8} {:>9} {:>5} {:>8}",
        "", "Get", "Batch", "Describe", "STS", "SM total"
    );
    println!(
        "csi-bench: {:<44} {:>8} {:>8} {:>9} {:>5} {:>8}",
        "AWS provider (from its code)", aws_get, 0, 0, aws_sts, aws_get
    );
    println!(
        "csi-bench: {:<44} {:>8} {:>8} {:>9} {:>5} {:>8}",
        "AWS provider with failoverRegion",
        aws_get * 2,
        0,
        0,
        aws_sts,
        aws_get * 2
    );
    for (name, run) in [
        ("secretsfs, BatchGetSecretValue denied", &denied),
        ("secretsfs, BatchGetSecretValue allowed", &allowed),
    ] {
        let total = run.get_secret_value + run.batch + run.describe;
        println!(
            "csi-bench: {:<44} {:>8} {:>8} {:>9} {:>5} {:>8}   {:.0}x fewer Secrets Manager calls; {} mounts, {} refused, {} answers with the old value after rotation + TTL",
            name,
            run.get_secret_value,
            run.batch,
            run.describe,
            run.sts,
            total,
            aws_get as f64 / total as f64,
            run.mounts,
            run.refusals,
            run.late
        );
    }
    for run in [&denied, &allowed] {
        assert_eq!(run.refusals, 0);
        assert_eq!(
            run.late, 0,
            "every pod's files are right within the TTL of a rotation"
        );
    }
    let sm = |r: &Run| r.get_secret_value + r.batch + r.describe;
    assert!(
        aws_get >= 20 * sm(&denied),
        "the goal: 20x fewer calls under the AWS policy"
    );
    assert!(
        aws_get >= 100 * sm(&allowed),
        "the goal: 100x fewer with the batch call"
    );
}
