//! Connections reset and answers cut short: each read is a clean error (EIO from the mount,
//! the documented status from the HTTP API), the log says why, the daemon lives on, and no
//! flight is left stuck: once the fault is cleared, the next read costs one new call and
//! succeeds.

use super::{Scale, connect, figure, get_secret, scale, version_of};
use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::mount::{Mounted, alive};

/// The SDK's standard retry mode: attempts per call.
const SDK_ATTEMPTS: usize = 3;
/// How many reads each case makes under its fault, through each front end: each waits out
/// the SDK's retries (about 1.5 s), so CI makes one.
fn reads() -> usize {
    match scale() {
        Scale::Ci => 1,
        Scale::Full => 5,
    }
}
const EIO: i32 = 5;

fn value(name: &str) -> String {
    format!("resets-value-of-{name}-with-some-length-0123456789")
}

#[tokio::test]
async fn resets_and_answers_cut_short_are_clean_errors_and_leave_no_stuck_flight() {
    // A fault, the secret it is tried on, and the HTTP status and error code of the answer
    // (docs/ARCHITECTURE.md#errors): a transport failure is 502 ConnectionError, an answer
    // that cannot be read 500 InternalFailure.
    let cases = [
        (Fault::DropConnection, "dropped", 502, "ConnectionError"),
        (
            Fault::ResetMidBody,
            "reset-mid-body",
            502,
            "ConnectionError",
        ),
        (Fault::TruncatedAnswer, "truncated", 500, "InternalFailure"),
    ];
    let fake = FakeSecretsManager::start();
    for (_, name, _, _) in cases {
        fake.put_string(name, &value(name));
    }
    let (m, addr) = Mounted::start_with_http_api(&strs(&aws_args(&fake.endpoint_url()))).await;

    for (fault, name, status, code) in cases {
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        let before = fake.calls(Op::GetSecretValue);
        for _ in 0..reads() {
            let err = std::fs::read(m.path(name)).expect_err("a read under the fault");
            assert_eq!(err.raw_os_error(), Some(EIO), "{fault:?}: {err}");
            let r = get_secret(&mut connect(addr).await, name).await;
            assert_eq!(r.status, status, "{fault:?}: {}", r.describe());
            assert_eq!(r.json()["__type"], code, "{fault:?}: {}", r.describe());
            assert!(
                !r.text().contains("resets-value"),
                "{fault:?}: a value in the answer"
            );
        }
        let faulted = fake.calls(Op::GetSecretValue) - before;
        figure(format_args!(
            "{fault:?}: {} failed reads (EIO, HTTP {status} {code}) cost {faulted} calls",
            2 * reads()
        ));
        // Every failed read made its own fetch (none joined a stuck one), each retried by the
        // SDK at most as often as it retries.
        assert!(
            (2 * reads()..=2 * reads() * SDK_ATTEMPTS).contains(&faulted),
            "{fault:?}: {faulted} calls for {} reads",
            2 * reads()
        );

        fake.clear_faults();
        let before = fake.calls(Op::GetSecretValue);
        let read = std::fs::read(m.path(name)).expect("the read after the fault is cleared");
        assert!(read == value(name).as_bytes(), "{fault:?}: other bytes");
        let r = get_secret(&mut connect(addr).await, name).await;
        assert!(version_of(&r).is_some(), "{fault:?}: {}", r.describe());
        assert_eq!(
            fake.calls(Op::GetSecretValue) - before,
            1,
            "{fault:?}: one new call once the fault is cleared, shared by both front ends"
        );
    }

    let log = m.log();
    for (fault, name, _, _) in cases {
        let lines = log
            .lines()
            .filter(|l| l.contains("fetch failed") && l.contains(&format!("\"{name}\"")))
            .count();
        assert_eq!(lines, 1, "{fault:?}: one log line saying why:\n{log}");
    }
    assert!(!log.contains("resets-value"), "a value reached the log");
    assert!(alive(m.pid()), "the daemon is gone");
}
