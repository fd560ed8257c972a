//! Canaries: high-entropy values seeded into a secrets file and into the fake Secrets Manager,
//! read through `get`, the mount and the HTTP API, error paths included, at the most verbose
//! log level (`--log-level trace`, `RUST_LOG=trace`); then every log those processes wrote
//! (stderr, `--log-file`, `--audit-log`, and the `/metrics` and error bodies over HTTP) is
//! searched for each canary raw, in base64 (standard and URL-safe, padded or not, and as it
//! sits inside the base64 of a longer payload), JSON-escaped, as Rust `Debug` of the bytes and
//! of the string, in hex and a few more forms. None may appear.
//!
//! Stdout of `get` and 200 bodies over HTTP carry values on purpose: they are checked for the
//! right bytes, never searched. A failure names the log, the canary by index and kind, and the
//! encoding; never the canary itself.
//!
//! Also: a secrets file broken in the ways people break them, with canaries where values go,
//! must not have them quoted by the parse errors `get` prints and the file source logs; and a
//! self-check that the search finds a canary written into a scratch log in every encoding.

mod get;
mod http;
mod malformed;
mod mount;
mod search;
mod seed;
mod serve;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Shared by the runs.

/// The TTL every suite runs with, and a wait that outlasts it.
const TTL: &str = "1";
const PAST_TTL: Duration = Duration::from_millis(1300);

/// Retries `check` every 200 ms until it holds or `limit` has passed.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn differs(what: &str, got: &[u8], want: &[u8]) -> Option<String> {
    (got != want).then(|| {
        format!(
            "{what}: {} bytes that differ from the expected {}",
            got.len(),
            want.len()
        )
    })
}

/// The audit log holds records, each a JSON line at the audit target. Returns the records
/// counted by `front/decision/served`.
fn audit_sanity(
    audit: &Path,
    failures: &mut Vec<String>,
) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    if text.lines().count() == 0 {
        failures.push("the audit log is empty".to_owned());
    }
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for (n, line) in text.lines().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(record) if record["target"] == "secretsfs::audit" => {
                let fields = &record["fields"];
                let key = format!(
                    "{}/{}/{}",
                    fields["front"].as_str().unwrap_or("?"),
                    fields["decision"].as_str().unwrap_or("?"),
                    fields["served"].as_str().unwrap_or("?")
                );
                *tally.entry(key).or_default() += 1;
            }
            _ => failures.push(format!("audit line {n} is not a JSON audit record")),
        }
    }
    println!("audit records by front/decision/served: {tally:?}");
    tally
}
