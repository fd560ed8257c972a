//! Fault storms against a running daemon and the fake Secrets Manager's fault injection: a
//! throttling storm and its recovery, one slow secret among fast ones, connections reset and
//! answers cut short, and memory while 100,000 secrets churn through a cache of 1,000.
//!
//! Each test runs at two scales. In CI (the default) storms are short, TTLs and counts small,
//! so that the tier adds well under a minute. `SECRETSFS_STORMS=full` runs them at the sizes
//! the issue names (a 30 s storm, a 10 s slow secret); scripts/fault-storms.sh does that and
//! keeps the `storm figure:` lines every test prints. Both scales assert the same bounds,
//! derived from the settings of the run, never from a time measured.

mod churn;
mod resets;
mod slow;
mod throttling;

use std::net::SocketAddr;

use crate::support::fake_sm::{FakeSecretsManager, Op};
use crate::support::http::{Conn, Response, TOKEN, TOKEN_HEADER};

/// How big a storm is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    /// Short enough for every CI run.
    Ci,
    /// The sizes the issue names, for scripts/fault-storms.sh.
    Full,
}

fn scale() -> Scale {
    match std::env::var("SECRETSFS_STORMS").as_deref() {
        Ok("full") => Scale::Full,
        _ => Scale::Ci,
    }
}

/// One line for scripts/fault-storms.sh to keep (the test harness shows it with
/// `--nocapture`).
fn figure(text: impl std::fmt::Display) {
    println!("storm figure: {text}");
}

/// Calls of every operation the fake answered so far.
fn all_calls(fake: &FakeSecretsManager) -> usize {
    [
        Op::GetSecretValue,
        Op::BatchGetSecretValue,
        Op::DescribeSecret,
        Op::ListSecrets,
    ]
    .into_iter()
    .map(|op| fake.calls(op))
    .sum()
}

/// The agent's route for `id`.
fn get_target(id: &str) -> String {
    format!("/secretsmanager/get?secretId={id}")
}

/// GET of `id` on a keep-alive connection with the token.
async fn get_secret(conn: &mut Conn, id: &str) -> Response {
    conn.get(&get_target(id), &[(TOKEN_HEADER, TOKEN)]).await
}

/// The `VersionId` of a 200 GetSecretValue answer; `None` for any other answer.
fn version_of(r: &Response) -> Option<String> {
    if r.status != 200 {
        return None;
    }
    r.json()["VersionId"].as_str().map(str::to_owned)
}

/// A new keep-alive connection to the API.
async fn connect(addr: SocketAddr) -> Conn {
    Conn::tcp(addr).await
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
