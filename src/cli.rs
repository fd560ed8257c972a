//! The command line: flags (design.md section 8), subcommands, and exit codes.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, ErrorKind, Result};
use crate::policy::Mode;
use crate::source::SourceSpec;

const ABOUT: &str = "AWS Secrets Manager secrets as read-only files, and over an HTTP API \
compatible with the AWS Secrets Manager Agent, from one shared cache.";

const AFTER_HELP: &str = "\
Selectors: NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]]
  prod/db                      the AWSCURRENT value
  prod/db:password             one top-level JSON key of it
  prod/db::AWSPREVIOUS         another stage (or a custom label)
  prod/db:::VERSION_ID         one version
  In keys and stages, write %3A for ':', %2F for '/', %25 for '%'. ARNs work in place of names.

Exit codes: 0 ok, 2 usage, 65 invalid selector, 66 not found, 69 upstream unavailable,
77 access denied, 78 bad configuration, 70 other upstream failure, 71 internal error, 74 output error.

Try it without AWS: secretsfs --source file:examples/demo-secrets.json get prod/db:password";

/// The version and the git revision the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SECRETSFS_GIT_REVISION"),
    ")"
);

#[derive(Debug, Clone, Parser)]
#[command(name = "secretsfs", version = VERSION, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the exact bytes of one secret value to stdout (no newline added).
    Get(GetArgs),
    /// Mount secrets as read-only files at MOUNTPOINT (in the background unless -f), with the
    /// agent-compatible HTTP API in the same process.
    Mount(MountArgs),
    /// Serve the agent-compatible HTTP API alone (no FUSE needed), in the foreground.
    Serve(ServeArgs),
    /// Check a configuration file and print the effective settings (never a secret value).
    CheckConfig(CheckConfigArgs),
    /// Print the man page (roff) generated from this command line, for packaging.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The file to check [default: --config, else /etc/secretsfs/config.toml].
    pub file: Option<PathBuf>,
}

/// The HTTP API's flags, shared by `mount` and `serve`. Every one has a config key of the
/// same name (`_` for `-`) and a SECRETSFS_ environment variable; see the README's table.
#[derive(Debug, Args, Clone, Default)]
pub struct HttpArgs {
    /// TCP port of the HTTP API [default: 2773]; 0 picks a free port and logs it.
    #[arg(
        long,
        value_name = "PORT",
        env = "SECRETSFS_HTTP_PORT",
        help_heading = "HTTP API"
    )]
    pub http_port: Option<u16>,

    /// Address of the TCP listener [default: 127.0.0.1]; not loopback: a warning.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SECRETSFS_HTTP_LISTEN",
        help_heading = "HTTP API"
    )]
    pub http_listen: Option<IpAddr>,

    /// Also serve the API on this Unix socket, where the caller's uid and the access policy
    /// decide (no token).
    #[arg(
        long,
        value_name = "PATH",
        env = "SECRETSFS_HTTP_SOCKET",
        help_heading = "HTTP API"
    )]
    pub http_socket: Option<PathBuf>,

    /// Mode of the Unix socket file [default: 0666] (the policy decides each request).
    #[arg(
        long,
        value_name = "OCTAL",
        env = "SECRETSFS_HTTP_SOCKET_MODE",
        help_heading = "HTTP API"
    )]
    pub http_socket_mode: Option<Mode>,

    /// Concurrent connections per listener [default: 800, 1-1000]; over it, 429.
    #[arg(long, value_name = "N", env = "SECRETSFS_MAX_CONN", value_parser = parse_max_conn,
          help_heading = "HTTP API")]
    pub max_conn: Option<usize>,

    /// The prefix of the path route, GET PREFIX<secretId> [default: /v1/].
    #[arg(
        long,
        value_name = "PREFIX",
        env = "SECRETSFS_PATH_PREFIX",
        help_heading = "HTTP API"
    )]
    pub path_prefix: Option<String>,

    /// Headers that may carry the SSRF token, comma-separated
    /// [default: X-Aws-Parameters-Secrets-Token,X-Vault-Token].
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        env = "SECRETSFS_SSRF_HEADERS",
        help_heading = "HTTP API"
    )]
    pub ssrf_headers: Option<Vec<String>>,

    /// Variables to take the token from, first set wins; a `file://PATH` value names a file
    /// [default: AWS_TOKEN,AWS_SESSION_TOKEN,AWS_CONTAINER_AUTHORIZATION_TOKEN].
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        env = "SECRETSFS_SSRF_ENV_VARIABLES",
        help_heading = "HTTP API"
    )]
    pub ssrf_env_variables: Option<Vec<String>>,

    /// Seconds a client has to send a request's headers [default: 5, 1-300].
    #[arg(long, value_name = "SECONDS", env = "SECRETSFS_HTTP_HEADER_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..=300), help_heading = "HTTP API")]
    pub http_header_timeout: Option<u64>,

    /// Seconds one request may take before it is answered 504 [default: 61, 1-3600].
    #[arg(long, value_name = "SECONDS", env = "SECRETSFS_HTTP_REQUEST_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = "HTTP API")]
    pub http_request_timeout: Option<u64>,
}

fn parse_max_conn(s: &str) -> std::result::Result<usize, String> {
    parse_in_range(s, 1, 1000)
}

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// An existing, empty directory. A dead mount left there by a killed daemon is detached.
    pub mountpoint: PathBuf,

    /// Stay in the foreground and log to stderr (for systemd and containers).
    #[arg(short, long)]
    pub foreground: bool,

    /// `flat` [default]: secrets are files at their names (`prod/db`), selectors are file
    /// names (`prod/db:password`). `stages`: each secret is a directory of its stage labels
    /// (`prod/db/AWSCURRENT`).
    #[arg(long, value_enum, env = "SECRETSFS_LAYOUT")]
    pub layout: Option<crate::fuse::namespace::Layout>,

    /// Show only secrets whose names start with this prefix, named relative to it.
    #[arg(long, value_name = "PREFIX", env = "SECRETSFS_PREFIX")]
    pub prefix: Option<String>,

    /// Serve every open and read from secretsfs (no plaintext in the page cache; each open
    /// handle reads one version to its close; the policy is checked and audited per open).
    #[arg(long, env = "SECRETSFS_NO_KERNEL_CACHE", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_kernel_cache: Option<bool>,

    /// No HTTP API in this process.
    #[arg(long, env = "SECRETSFS_NO_HTTP", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(),
          conflicts_with_all = ["http_port", "http_socket"], help_heading = "HTTP API")]
    pub no_http: Option<bool>,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// What to read: NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]] (a name or an ARN).
    pub selector: String,
}

/// Global flags. Every one has a config key of the same name (`_` for `-`) and an
/// environment variable; the precedence is flag > environment > file > default.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML) [default: /etc/secretsfs/config.toml when present].
    #[arg(long, global = true, value_name = "PATH", env = "SECRETSFS_CONFIG")]
    pub config: Option<PathBuf>,

    /// Where secrets come from: `aws` [default] (Secrets Manager) or `file:PATH` (a JSON file).
    #[arg(long, global = true, value_name = "aws|file:PATH", value_parser = parse_source,
          env = "SECRETSFS_SOURCE", help_heading = "Source")]
    pub source: Option<SourceSpec>,

    /// AWS region [default: AWS_REGION, the profile's, IMDS].
    #[arg(long, global = true, help_heading = "Source")]
    pub region: Option<String>,

    /// AWS profile [default: AWS_PROFILE, else `default`].
    #[arg(long, global = true, help_heading = "Source")]
    pub profile: Option<String>,

    /// Secrets Manager endpoint [default: AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL,
    /// else the region's].
    #[arg(long, global = true, value_name = "URL", help_heading = "Source")]
    pub endpoint_url: Option<String>,

    /// Deadline of one Secrets Manager call, retries included [default: 10, 1-300].
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_TIMEOUT",
          value_parser = clap::value_parser!(u64).range(1..=300), help_heading = "Source")]
    pub timeout: Option<u64>,

    /// How long a fetched value is served before it is fetched again [default: 300, 0-86400;
    /// 0 asks every time, coalesced].
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_TTL",
          value_parser = clap::value_parser!(u64).range(0..=86400), help_heading = "Cache")]
    pub ttl: Option<u64>,

    /// Up to this percentage is taken off each value's TTL at random, so that a fleet of hosts
    /// does not refresh in lockstep [default: 10, 0-50].
    #[arg(long, global = true, value_name = "PERCENT", env = "SECRETSFS_TTL_JITTER",
          value_parser = clap::value_parser!(u8).range(0..=50), help_heading = "Cache")]
    pub ttl_jitter: Option<u8>,

    /// Secret versions the cache holds before evicting the least recently used
    /// [default: 1000, 1-1000000].
    #[arg(long, global = true, value_name = "N", env = "SECRETSFS_CACHE_SIZE",
          value_parser = parse_cache_size, help_heading = "Cache")]
    pub cache_size: Option<usize>,

    /// Bytes of values the cache holds before evicting the least recently used
    /// [default: 67108864, 1024-2^40].
    #[arg(long, global = true, value_name = "BYTES", env = "SECRETSFS_CACHE_BYTES",
          value_parser = parse_cache_bytes, help_heading = "Cache")]
    pub cache_bytes: Option<usize>,

    /// How long past its TTL a value may be served while Secrets Manager fails transiently
    /// (throttling, 5xx, timeouts) [default: 3600, 0-604800; 0 disables].
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_MAX_STALE",
          value_parser = clap::value_parser!(u64).range(0..=604800), help_heading = "Cache")]
    pub max_stale: Option<u64>,

    /// How long a "not found" is remembered [default: 10, 0-3600; 0 disables].
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_NEGATIVE_TTL",
          value_parser = clap::value_parser!(u64).range(0..=3600), help_heading = "Cache")]
    pub negative_ttl: Option<u64>,

    /// Owner of files and directories no policy rule covers [default: the running user].
    #[arg(long, global = true, env = "SECRETSFS_UID", help_heading = "Access")]
    pub uid: Option<u32>,

    /// Group of files and directories no policy rule covers [default: the running group].
    #[arg(long, global = true, env = "SECRETSFS_GID", help_heading = "Access")]
    pub gid: Option<u32>,

    /// Mode of files no policy rule covers [default: 0440].
    #[arg(
        long,
        global = true,
        value_name = "OCTAL",
        env = "SECRETSFS_FILE_MODE",
        help_heading = "Access"
    )]
    pub file_mode: Option<Mode>,

    /// Mode of directories no policy rule covers [default: 0550].
    #[arg(
        long,
        global = true,
        value_name = "OCTAL",
        env = "SECRETSFS_DIR_MODE",
        help_heading = "Access"
    )]
    pub dir_mode: Option<Mode>,

    /// Log level (error, warn, info, debug, trace, off) or a full filter [default: RUST_LOG,
    /// else warn].
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        env = "SECRETSFS_LOG_LEVEL",
        help_heading = "Logging"
    )]
    pub log_level: Option<String>,

    /// Write logs to this file instead of syslog (background) or stderr (foreground).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SECRETSFS_LOG_FILE",
        help_heading = "Logging"
    )]
    pub log_file: Option<PathBuf>,

    /// Also write the audit records (one per access decision) to this file as JSON lines.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SECRETSFS_AUDIT_LOG",
        help_heading = "Logging"
    )]
    pub audit_log: Option<PathBuf>,

    /// Lock the process's memory so that secrets never reach swap (needs CAP_IPC_LOCK and a
    /// high enough RLIMIT_MEMLOCK; without them, one warning and no lock).
    #[arg(long, global = true, env = "SECRETSFS_MLOCK", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), help_heading = "Hardening")]
    pub mlock: Option<bool>,

    /// Check the AWS credentials at start-up of `mount` and `serve` [default: true].
    #[arg(long, global = true, env = "SECRETSFS_VALIDATE_CREDENTIALS", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new(),
          help_heading = "Source")]
    pub validate_credentials: Option<bool>,

    /// An AWS shared credentials file to use instead of ~/.aws/credentials.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SECRETSFS_CREDENTIALS_FILE_PATH",
        help_heading = "Source"
    )]
    pub credentials_file_path: Option<PathBuf>,
}

fn parse_source(s: &str) -> std::result::Result<SourceSpec, String> {
    s.parse().map_err(|e: Error| e.message().to_owned())
}

fn parse_cache_size(s: &str) -> std::result::Result<usize, String> {
    parse_in_range(s, 1, 1_000_000)
}

fn parse_cache_bytes(s: &str) -> std::result::Result<usize, String> {
    parse_in_range(s, 1024, 1 << 40)
}

fn parse_in_range(s: &str, min: usize, max: usize) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// The man page, generated from the command line definition so that it never drifts.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

/// Exit codes, from sysexits(3) where one fits; listed in the README and in `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const INVALID_SELECTOR: u8 = 65; // EX_DATAERR
    pub const NOT_FOUND: u8 = 66; // EX_NOINPUT
    pub const UNAVAILABLE: u8 = 69; // EX_UNAVAILABLE
    pub const UPSTREAM_FAILURE: u8 = 70; // EX_SOFTWARE
    pub const INTERNAL: u8 = 71; // EX_OSERR
    pub const OUTPUT: u8 = 74; // EX_IOERR
    pub const ACCESS_DENIED: u8 = 77; // EX_NOPERM
    pub const CONFIG: u8 = 78; // EX_CONFIG
}

pub fn exit_code(err: &Error) -> u8 {
    match err.kind() {
        ErrorKind::InvalidSelector => exit::INVALID_SELECTOR,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::AccessDenied => exit::ACCESS_DENIED,
        ErrorKind::Unavailable => exit::UNAVAILABLE,
        ErrorKind::Config => exit::CONFIG,
        ErrorKind::Decryption | ErrorKind::InvalidRequest => exit::UPSTREAM_FAILURE,
        ErrorKind::Io => exit::OUTPUT,
        ErrorKind::Internal => exit::INTERNAL,
    }
}

/// Warnings, except the SDK credential chain's: it warns about every provider it tries, and
/// the error that follows already says what failed, on one line.
pub const DEFAULT_LOG_FILTER: &str = "warn,aws_config=error";

/// The tracing filter: `--log-level` over `RUST_LOG` over [`DEFAULT_LOG_FILTER`].
pub fn log_filter(level: Option<&str>) -> Result<tracing_subscriber::EnvFilter> {
    use tracing_subscriber::EnvFilter;
    match level {
        Some(l) => EnvFilter::try_new(l)
            .map_err(|e| Error::config(format!("invalid --log-level {l:?}: {e}"))),
        None => Ok(EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["secretsfs", "get", "x", "--ttl", "5", "--source", "file:/a"])
                .unwrap();
        assert_eq!(cli.global.ttl, Some(5));
        assert_eq!(cli.global.source, Some(SourceSpec::File("/a".into())));
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        for args in [
            ["secretsfs", "--ttl", "99999999", "get", "x"],
            ["secretsfs", "--cache-size", "0", "get", "x"],
            ["secretsfs", "--file-mode", "999", "get", "x"],
            ["secretsfs", "--source", "s3", "get", "x"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
