//! Every scalar setting, declared once: its flag, environment variable, default, value parser
//! (type and range) and help text are the clap attributes of one field, and its config-file
//! key is the field's name. The file layer (src/settings/file/) feeds file values through the same
//! value parsers, so a range is written in one place and a file value is checked exactly as a
//! flag is. What clap cannot say (the agent's names, SIGHUP, the SDK's variables) is in the
//! small tables of [`super::keys`].
//!
//! Where a default depends on the machine (the running user, the port the agent uses), the
//! field is an `Option` and the help says what `None` means.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser};
use serde::Serialize;

use crate::cache;
use crate::fuse::namespace::Layout;
use crate::http;
use crate::policy::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, Mode};
use crate::source::SourceSpec;

/// Settings every command takes, before or after the subcommand.
#[derive(Debug, Clone, Args, Serialize)]
pub struct GlobalOptions {
    /// Where secrets come from: `aws` (Secrets Manager), `ssm` (Parameter Store) or
    /// `file:PATH` (a JSON file).
    #[arg(long, global = true, value_name = "aws|ssm|file:PATH", value_parser = parse_source,
          default_value = "aws", env = "SECRETSFS_SOURCE", help_heading = "Source")]
    #[serde(serialize_with = "shown")]
    pub source: SourceSpec,

    /// AWS region [default: the SDK's chain: the profile's, IMDS].
    #[arg(long, global = true, help_heading = "Source")]
    pub region: Option<String>,

    /// AWS profile [default: `default`].
    #[arg(long, global = true, help_heading = "Source")]
    pub profile: Option<String>,

    /// Secrets Manager endpoint [default: the region's].
    #[arg(long, global = true, value_name = "URL", help_heading = "Source")]
    pub endpoint_url: Option<String>,

    /// Deadline of one Secrets Manager call, retries included, 1-300 seconds.
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_TIMEOUT",
          default_value_t = 10, value_parser = in_range::<u64>(1, 300), help_heading = "Source")]
    pub timeout: u64,

    /// Deadline of one Parameter Store call, retries included, 1-300 seconds.
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_SSM_TIMEOUT",
          default_value_t = 10, value_parser = in_range::<u64>(1, 300), help_heading = "Source")]
    pub ssm_timeout: u64,

    /// An AWS shared credentials file to use instead of ~/.aws/credentials.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "SECRETSFS_CREDENTIALS_FILE_PATH",
        help_heading = "Source"
    )]
    pub credentials_file_path: Option<PathBuf>,

    /// Use the region's FIPS 140 endpoint [default: the SDK's chain: the profile's
    /// `use_fips_endpoint`, else no]. Not with `endpoint_url`.
    #[arg(long, global = true, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), help_heading = "Source")]
    pub use_fips_endpoint: Option<bool>,

    /// Use the region's dual-stack (IPv4 and IPv6) endpoint [default: the SDK's chain: the
    /// profile's `use_dualstack_endpoint`, else no].
    #[arg(long, global = true, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = BoolishValueParser::new(), help_heading = "Source")]
    pub use_dualstack_endpoint: Option<bool>,

    /// Read every secret as this IAM role, `arn:PARTITION:iam::ACCOUNT:role/NAME` (STS
    /// AssumeRole on the credentials above; how a host reads another account's secrets).
    #[arg(long, global = true, value_name = "ARN", env = "SECRETSFS_ROLE_ARN",
          value_parser = parse_role_arn, help_heading = "Source")]
    pub role_arn: Option<String>,

    /// Check the AWS credentials at start-up of `mount` and `serve`.
    #[arg(long, global = true, env = "SECRETSFS_VALIDATE_CREDENTIALS", value_name = "BOOL",
          action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "true",
          default_missing_value = "true", value_parser = BoolishValueParser::new(),
          help_heading = "Source")]
    pub validate_credentials: bool,

    /// How long a fetched value is served before it is fetched again, 0-86400 seconds (0 asks
    /// every time, coalesced).
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_TTL",
          default_value_t = cache::DEFAULT_TTL.as_secs(), value_parser = in_range::<u64>(0, 86400),
          help_heading = "Cache")]
    pub ttl: u64,

    /// How long a fetched Parameter Store value is served before it is fetched again (the
    /// HTTP API's parameters, and the mount with `--source ssm`), 0-86400 seconds.
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_SSM_TTL",
          default_value_t = cache::DEFAULT_TTL.as_secs(), value_parser = in_range::<u64>(0, 86400),
          help_heading = "Cache")]
    pub ssm_ttl: u64,

    /// Up to this percentage is taken off each value's TTL at random, so that a fleet of hosts
    /// does not refresh in lockstep, 0-50.
    #[arg(long, global = true, value_name = "PERCENT", env = "SECRETSFS_TTL_JITTER",
          default_value_t = cache::DEFAULT_TTL_JITTER_PERCENT, value_parser = in_range::<u8>(0, 50),
          help_heading = "Cache")]
    pub ttl_jitter: u8,

    /// Secret versions the cache holds before evicting the least recently used, 1-1000000.
    #[arg(long, global = true, value_name = "N", env = "SECRETSFS_CACHE_SIZE",
          default_value_t = cache::DEFAULT_MAX_ENTRIES, value_parser = in_range::<usize>(1, 1_000_000),
          help_heading = "Cache")]
    pub cache_size: usize,

    /// Bytes of values the cache holds before evicting the least recently used,
    /// 1024-1099511627776.
    #[arg(long, global = true, value_name = "BYTES", env = "SECRETSFS_CACHE_BYTES",
          default_value_t = cache::DEFAULT_MAX_BYTES, value_parser = in_range::<usize>(1024, 1 << 40),
          help_heading = "Cache")]
    pub cache_bytes: usize,

    /// How long past its TTL a value may be served while Secrets Manager fails transiently
    /// (throttling, 5xx, timeouts), 0-604800 seconds (0 disables).
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_MAX_STALE",
          default_value_t = cache::DEFAULT_MAX_STALE.as_secs(), value_parser = in_range::<u64>(0, 604800),
          help_heading = "Cache")]
    pub max_stale: u64,

    /// How long a "not found" is remembered, 0-3600 seconds (0 disables).
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_NEGATIVE_TTL",
          default_value_t = cache::DEFAULT_NEGATIVE_TTL.as_secs(), value_parser = in_range::<u64>(0, 3600),
          help_heading = "Cache")]
    pub negative_ttl: u64,

    /// How long a listing (ListSecrets, what `ls` shows) is served before it is asked again,
    /// 0-86400 seconds.
    #[arg(long, global = true, value_name = "SECONDS", env = "SECRETSFS_LIST_TTL",
          default_value_t = cache::DEFAULT_LIST_TTL.as_secs(), value_parser = in_range::<u64>(0, 86400),
          help_heading = "Cache")]
    pub list_ttl: u64,

    /// Owner of files and directories no policy rule covers [default: the running user].
    #[arg(
        long,
        global = true,
        value_name = "UID",
        env = "SECRETSFS_UID",
        help_heading = "Access"
    )]
    pub uid: Option<u32>,

    /// Group of files and directories no policy rule covers [default: the running group].
    #[arg(
        long,
        global = true,
        value_name = "GID",
        env = "SECRETSFS_GID",
        help_heading = "Access"
    )]
    pub gid: Option<u32>,

    /// Mode of files no policy rule covers (octal).
    #[arg(long, global = true, value_name = "OCTAL", env = "SECRETSFS_FILE_MODE",
          default_value_t = DEFAULT_FILE_MODE, help_heading = "Access")]
    #[serde(serialize_with = "shown")]
    pub file_mode: Mode,

    /// Mode of directories no policy rule covers (octal).
    #[arg(long, global = true, value_name = "OCTAL", env = "SECRETSFS_DIR_MODE",
          default_value_t = DEFAULT_DIR_MODE, help_heading = "Access")]
    #[serde(serialize_with = "shown")]
    pub dir_mode: Mode,

    /// Log level (error, warn, info, debug, trace, off; the agent's DEBUG..ERROR and NONE too)
    /// or a filter of levels and TARGET=LEVEL directives, like `info,secretsfs=debug`
    /// [default: RUST_LOG, else warn].
    #[arg(long, global = true, value_name = "LEVEL", env = "SECRETSFS_LOG_LEVEL",
          value_parser = parse_log_level, help_heading = "Logging")]
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
    #[arg(long, global = true, env = "SECRETSFS_MLOCK", value_name = "BOOL",
          action = ArgAction::Set, num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = BoolishValueParser::new(),
          help_heading = "Hardening")]
    pub mlock: bool,
}

/// `layout` as clap takes it: the mount's [`Layout`] knows no clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LayoutArg {
    /// Each secret is a file at its name; selectors are file names answered on lookup.
    Flat,
    /// Each secret is a directory of its stage labels: `NAME/AWSCURRENT`, `NAME/AWSPREVIOUS`.
    Stages,
}

impl From<LayoutArg> for Layout {
    fn from(arg: LayoutArg) -> Layout {
        match arg {
            LayoutArg::Flat => Layout::Flat,
            LayoutArg::Stages => Layout::Stages,
        }
    }
}

impl std::fmt::Display for LayoutArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Layout::from(*self).fmt(f)
    }
}

/// Settings of `mount` alone.
#[derive(Debug, Clone, Args, Serialize)]
pub struct MountOptions {
    /// `flat`: secrets are files at their names (`prod/db`), selectors are file names
    /// (`prod/db:password`). `stages`: each secret is a directory of its stage labels
    /// (`prod/db/AWSCURRENT`).
    #[arg(long, value_enum, env = "SECRETSFS_LAYOUT", default_value_t = LayoutArg::Flat)]
    #[serde(serialize_with = "shown")]
    pub layout: LayoutArg,

    /// Show only secrets whose names start with this prefix, named relative to it.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "SECRETSFS_PREFIX",
        default_value = ""
    )]
    #[serde(serialize_with = "quoted")]
    pub prefix: String,

    /// Serve every open and read from secretsfs (no plaintext in the page cache; each open
    /// handle reads one version to its close; the policy is checked and audited per open).
    #[arg(long, env = "SECRETSFS_NO_KERNEL_CACHE", value_name = "BOOL", action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub no_kernel_cache: bool,

    /// Report the mount ready (the command returns, systemd hears READY=1) only once the
    /// config file's `secrets` list has been fetched (failures are logged, not fatal).
    #[arg(long, env = "SECRETSFS_WAIT_FOR_SECRETS", value_name = "BOOL", action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub wait_for_secrets: bool,

    /// No HTTP API in this process.
    #[arg(long, env = "SECRETSFS_NO_HTTP", value_name = "BOOL", action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_value = "false",
          default_missing_value = "true", value_parser = BoolishValueParser::new(),
          conflicts_with_all = ["http_port", "http_socket"], help_heading = "HTTP API")]
    pub no_http: bool,
}

/// The HTTP API's settings, taken by `mount` and `serve`.
#[derive(Debug, Clone, Args, Serialize)]
pub struct HttpOptions {
    /// TCP port of the HTTP API [default: 2773], 0-65535 (0 picks a free port and logs it).
    /// Given at all, it insists on a TCP listener (and so on a token).
    #[arg(long, value_name = "PORT", env = "SECRETSFS_HTTP_PORT",
          value_parser = in_range::<u16>(0, 65535), help_heading = "HTTP API")]
    pub http_port: Option<u16>,

    /// Address of the TCP listener; not loopback: a warning.
    #[arg(long, value_name = "ADDR", env = "SECRETSFS_HTTP_LISTEN",
          default_value = "127.0.0.1", value_parser = parse_ip, help_heading = "HTTP API")]
    pub http_listen: IpAddr,

    /// Also serve the API on this Unix socket, where the caller's uid and the access policy
    /// decide (no token).
    #[arg(
        long,
        value_name = "PATH",
        env = "SECRETSFS_HTTP_SOCKET",
        help_heading = "HTTP API"
    )]
    pub http_socket: Option<PathBuf>,

    /// Mode of the Unix socket file (octal; the policy decides each request).
    #[arg(
        long,
        value_name = "OCTAL",
        env = "SECRETSFS_HTTP_SOCKET_MODE",
        default_value = "0666",
        help_heading = "HTTP API"
    )]
    #[serde(serialize_with = "shown")]
    pub http_socket_mode: Mode,

    /// Concurrent connections per listener, 1-1000; over it, 429.
    #[arg(long, value_name = "N", env = "SECRETSFS_MAX_CONN",
          default_value_t = http::DEFAULT_MAX_CONN, value_parser = in_range::<usize>(1, 1000),
          help_heading = "HTTP API")]
    pub max_conn: usize,

    /// Roles the API's `roleArn` may use at once, 1-20; a request for one more: 400.
    #[arg(long, value_name = "N", env = "SECRETSFS_MAX_ROLES",
          default_value_t = crate::engine::roles::DEFAULT_MAX_ROLES,
          value_parser = in_range::<usize>(1, crate::engine::roles::MAX_ROLES_LIMIT),
          help_heading = "HTTP API")]
    pub max_roles: usize,

    /// The prefix of the path route, GET PREFIX<secretId>; begins with /.
    #[arg(long, value_name = "PREFIX", env = "SECRETSFS_PATH_PREFIX",
          default_value = http::DEFAULT_PATH_PREFIX, value_parser = parse_path_prefix,
          help_heading = "HTTP API")]
    pub path_prefix: String,

    /// Headers that may carry the SSRF token, comma-separated; not empty.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', env = "SECRETSFS_SSRF_HEADERS",
          default_values_t = http::token::DEFAULT_HEADERS.map(String::from),
          value_parser = parse_list_item, help_heading = "HTTP API")]
    pub ssrf_headers: Vec<String>,

    /// Variables to take the token from, first set wins, comma-separated; not empty. A
    /// `file://PATH` value names a file.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', env = "SECRETSFS_SSRF_ENV_VARIABLES",
          default_values_t = http::token::DEFAULT_ENV_VARIABLES.map(String::from),
          value_parser = parse_list_item, help_heading = "HTTP API")]
    pub ssrf_env_variables: Vec<String>,

    /// Seconds a client has to send a request's headers, 1-300.
    #[arg(long, value_name = "SECONDS", env = "SECRETSFS_HTTP_HEADER_TIMEOUT",
          default_value_t = http::DEFAULT_HEADER_TIMEOUT.as_secs(),
          value_parser = in_range::<u64>(1, 300), help_heading = "HTTP API")]
    pub http_header_timeout: u64,

    /// Seconds one request may take before it is answered 504, 1-3600.
    #[arg(long, value_name = "SECONDS", env = "SECRETSFS_HTTP_REQUEST_TIMEOUT",
          default_value_t = http::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = in_range::<u64>(1, 3600), help_heading = "HTTP API")]
    pub http_request_timeout: u64,
}

/// Every setting in one command, whichever subcommand takes it: what the file layer, the
/// resolution, `check-config` and the table in docs/configuration.md work from.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "secretsfs", no_binary_name = true, disable_help_flag = true)]
pub struct Options {
    #[command(flatten)]
    #[serde(flatten)]
    pub global: GlobalOptions,
    #[command(flatten)]
    #[serde(flatten)]
    pub mount: MountOptions,
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpOptions,
}

/// A whole number from `min` to `max`, with one message for flags and file keys alike. The
/// message is also how the table in docs/configuration.md learns the range (see `keys::range_of`).
pub fn in_range<T>(
    min: T,
    max: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |s: &str| match s.strip_prefix('+').unwrap_or(s).parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

fn parse_source(s: &str) -> Result<SourceSpec, String> {
    s.parse().map_err(|e: crate::Error| e.message().to_owned())
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| "expected an IP address".to_owned())
}

fn parse_role_arn(s: &str) -> Result<String, String> {
    if crate::engine::roles::is_role_arn(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an IAM role ARN ({})",
            crate::engine::roles::ROLE_ARN_SHAPE
        ))
    }
}

fn parse_path_prefix(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} must begin with /"))
    }
}

fn parse_list_item(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("the list can't hold an empty name".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// The agent's log levels (DEBUG, INFO, WARN, ERROR, NONE, any case) as tracing filters; any
/// other text is a filter of its own, checked when logging starts.
fn parse_log_level(s: &str) -> Result<String, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "none" => "off".to_owned(),
        l @ ("debug" | "info" | "warn" | "error") => l.to_owned(),
        _ => s.to_owned(),
    })
}

fn shown<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// An empty prefix must still be visible in `check-config`.
fn quoted<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{value:?}"))
}
