//! Running the `secretsfs` binary as a user would, with none of the developer's AWS or
//! secretsfs settings leaking in.

use std::process::{Output, Stdio};
use std::time::Duration;

pub const SECRETSFS: &str = env!("CARGO_BIN_EXE_secretsfs");

/// Long enough for the SDK's retries against a failing endpoint, short enough that a hang
/// fails the test instead of the whole run.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `secretsfs ARGS` with dummy credentials and no AWS profile, and kills it if it has
/// not finished by the deadline.
pub async fn run(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(SECRETSFS);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("AWS_")
            || key_text.starts_with("SECRETSFS_")
            || key_text == "RUST_LOG"
        {
            cmd.env_remove(&key);
        }
    }
    // Empty rather than absent: the SDK warns on stderr about a configured file that does not
    // exist, and stderr is part of what is tested.
    let empty_file = concat!(env!("CARGO_TARGET_TMPDIR"), "/empty-aws-config");
    std::fs::write(empty_file, "").unwrap_or_else(|e| panic!("cannot write {empty_file}: {e}"));
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", empty_file)
        .env("AWS_SHARED_CREDENTIALS_FILE", empty_file)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("secretsfs {args:?} did not finish within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {SECRETSFS}: {e}"))
}

/// `secretsfs --source aws --endpoint-url URL --region us-east-1 get SELECTOR`.
pub async fn get_from(endpoint_url: &str, selector: &str) -> Output {
    run(&[
        "--source",
        "aws",
        "--endpoint-url",
        endpoint_url,
        "--region",
        "us-east-1",
        "get",
        selector,
    ])
    .await
}

pub fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}
