//! Running the `secretsfs` binary as a user would, with none of the developer's AWS or
//! secretsfs settings leaking in.

use std::process::{Output, Stdio};
use std::time::Duration;

pub const SECRETSFS: &str = env!("CARGO_BIN_EXE_secretsfs");

/// The `--log-level` of the processes the tests start and read logs from.
pub const LOG_LEVEL: &str = "info,secretsfs=debug";

/// Long enough for the SDK's retries against a failing endpoint and a loaded machine, short
/// enough that a hang fails the test instead of the whole run.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Leaves none of the developer's AWS or secretsfs settings (nor RUST_LOG) in `cmd`'s
/// environment.
pub fn without_developer_settings(cmd: &mut tokio::process::Command) {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("AWS_")
            || key_text.starts_with("SECRETSFS_")
            || key_text == "RUST_LOG"
        {
            cmd.env_remove(&key);
        }
    }
}

/// A command line prefix that runs a program without CAP_IPC_LOCK (dropped from the bounding
/// set, so root loses it at exec) and with a small RLIMIT_MEMLOCK: `--mlock` then warns.
pub const WITHOUT_IPC_LOCK: [&str; 7] = [
    "setpriv",
    "--bounding-set",
    "-ipc_lock",
    "--inh-caps",
    "-ipc_lock",
    "prlimit",
    "--memlock=65536",
];

/// `secretsfs ARGS` with dummy credentials, no AWS profile, none of the developer's AWS or
/// secretsfs settings, and `env` on top; killed when dropped.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    wrapped_command(&[], args, env)
}

/// Like [`command`], run through `wrapper` (`setpriv ...`, `prlimit ...`, or nothing), which
/// must exec `secretsfs` in the end, so that the child's pid is secretsfs's.
pub fn wrapped_command(
    wrapper: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let mut cmd = match wrapper {
        [] => tokio::process::Command::new(SECRETSFS),
        [program, wrapper_args @ ..] => {
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(wrapper_args).arg(SECRETSFS);
            cmd
        }
    };
    without_developer_settings(&mut cmd);
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
        // An /etc/secretsfs/config.toml on the test machine must not steer the tests; a
        // test's own --config still wins over this.
        .env("SECRETSFS_CONFIG", "/dev/null")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `secretsfs ARGS` with dummy credentials and no AWS profile, and kills it if it has
/// not finished by the deadline.
pub async fn run(args: &[&str]) -> Output {
    run_with_env(args, &[]).await
}

/// Like [`run`], with `env` on top of the clean environment.
pub async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_wrapped(&[], args, env).await
}

/// Like [`run_with_env`], through `wrapper` (see [`wrapped_command`]).
pub async fn run_wrapped(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(DEADLINE, wrapped_command(wrapper, args, env).output())
        .await
        .unwrap_or_else(|_| panic!("secretsfs {args:?} did not finish within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {SECRETSFS}: {e}"))
}

/// `secretsfs --source aws --endpoint-url URL --region us-east-1 get SELECTOR`.
pub async fn get_from(endpoint_url: &str, selector: &str) -> Output {
    let mut args = aws_args(endpoint_url);
    args.extend(["get".to_owned(), selector.to_owned()]);
    run(&strs(&args)).await
}

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-secrets.json");

/// The `--source` of the demo secrets file (examples/demo-secrets.json).
pub fn demo_source() -> String {
    format!("file:{DEMO}")
}

/// Selectors of the demo secrets file and the exact bytes each one gives.
pub const DEMO_VALUES: [(&str, &[u8]); 6] = [
    ("prod/db:password", b"demo-Pa55:w/rd"),
    ("prod/db:port", b"5432"),
    ("prod/db:password:AWSPREVIOUS", b"old-demo-pass"),
    ("prod/db:password:blue", b"old-demo-pass"),
    ("api-key", b"demo-api-key-0123456789"),
    ("tls/client.key", b"\x00\x01\x02secretsfs-demo\xff\xfe"),
];

/// `--source aws --endpoint-url URL --region us-east-1`: the AWS source against a local
/// endpoint (the fake Secrets Manager or moto).
pub fn aws_args(endpoint_url: &str) -> Vec<String> {
    source_args("aws", endpoint_url)
}

/// `--source SOURCE --endpoint-url URL --region us-east-1`: an AWS source (`aws`, `ssm`)
/// against a local endpoint.
pub fn source_args(source: &str, endpoint_url: &str) -> Vec<String> {
    [
        "--source",
        source,
        "--endpoint-url",
        endpoint_url,
        "--region",
        "us-east-1",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Owned arguments as the `&str`s that [`run`] and the guards take.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}
