//! The command line: flags (design.md section 8), subcommands, and exit codes.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cache::{self, CacheConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{Defaults, Mode};
use crate::source::SourceSpec;
use crate::source::aws::AwsOptions;

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

#[derive(Debug, Parser)]
#[command(name = "secretsfs", version = VERSION, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the exact bytes of one secret value to stdout (no newline added).
    Get(GetArgs),
    /// Mount secrets as read-only files at MOUNTPOINT (in the background unless -f), with the
    /// agent-compatible HTTP API in the same process.
    Mount(MountArgs),
    /// Serve the agent-compatible HTTP API alone (no FUSE needed), in the foreground.
    Serve(ServeArgs),
    /// Print the man page (roff) generated from this command line, for packaging.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The HTTP API's flags, shared by `mount` and `serve`.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// TCP port of the HTTP API [default: 2773]; 0 picks a free port and logs it.
    #[arg(long, value_name = "PORT", help_heading = "HTTP API")]
    pub http_port: Option<u16>,

    /// Address of the TCP listener; anything but loopback logs a warning.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1",
        help_heading = "HTTP API"
    )]
    pub http_listen: std::net::IpAddr,

    /// Also serve the API on this Unix socket, where the caller's uid and the access policy
    /// decide (no token).
    #[arg(long, value_name = "PATH", help_heading = "HTTP API")]
    pub http_socket: Option<std::path::PathBuf>,

    /// Mode of the Unix socket file (the policy still decides each request).
    #[arg(
        long,
        value_name = "OCTAL",
        default_value = "0666",
        help_heading = "HTTP API"
    )]
    pub http_socket_mode: Mode,

    /// Concurrent connections per listener; over it, requests are answered 429.
    #[arg(long, value_name = "N", default_value_t = crate::http::DEFAULT_MAX_CONN,
          value_parser = parse_max_conn, help_heading = "HTTP API")]
    pub max_conn: usize,

    /// The prefix of the path route: GET PREFIX<secretId>.
    #[arg(long, value_name = "PREFIX", default_value = crate::http::DEFAULT_PATH_PREFIX,
          help_heading = "HTTP API")]
    pub path_prefix: String,

    /// Headers that may carry the SSRF token (comma-separated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',',
          default_values_t = crate::http::token::DEFAULT_HEADERS.map(String::from),
          help_heading = "HTTP API")]
    pub ssrf_headers: Vec<String>,

    /// Environment variables to take the token from, first set wins; a `file://PATH` value
    /// names a file holding it (comma-separated).
    #[arg(long, value_name = "NAMES", value_delimiter = ',',
          default_values_t = crate::http::token::DEFAULT_ENV_VARIABLES.map(String::from),
          help_heading = "HTTP API")]
    pub ssrf_env_variables: Vec<String>,

    /// Seconds a client has to send a request's headers.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::http::DEFAULT_HEADER_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=300), help_heading = "HTTP API")]
    pub http_header_timeout: u64,

    /// Seconds one request may take before it is answered 504.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::http::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = "HTTP API")]
    pub http_request_timeout: u64,
}

fn parse_max_conn(s: &str) -> std::result::Result<usize, String> {
    parse_in_range(s, 1, 1000)
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// An existing, empty directory. A dead mount left there by a killed daemon is detached.
    pub mountpoint: std::path::PathBuf,

    /// Stay in the foreground and log to stderr (for systemd and containers).
    #[arg(short, long)]
    pub foreground: bool,

    /// `flat`: secrets are files at their names (`prod/db`), selectors are file names
    /// (`prod/db:password`). `stages`: each secret is a directory of its stage labels
    /// (`prod/db/AWSCURRENT`).
    #[arg(long, value_enum, default_value = "flat")]
    pub layout: crate::fuse::namespace::Layout,

    /// Show only secrets whose names start with this prefix, named relative to it.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,

    /// Serve every open and read from secretsfs (no plaintext in the page cache; each open
    /// handle reads one version to its close; the policy is checked and audited per open).
    #[arg(long)]
    pub no_kernel_cache: bool,

    /// Write logs here instead of syslog (in the background) or stderr (in the foreground).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<std::path::PathBuf>,

    /// No HTTP API in this process.
    #[arg(long, conflicts_with_all = ["http_port", "http_socket"], help_heading = "HTTP API")]
    pub no_http: bool,

    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to read: NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]] (a name or an ARN).
    pub selector: String,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where secrets come from: `aws` (Secrets Manager) or `file:PATH` (a local JSON file).
    #[arg(long, global = true, value_name = "aws|file:PATH", default_value = "aws",
          value_parser = parse_source, help_heading = "Source")]
    pub source: SourceSpec,

    /// Configuration file (TOML); for now it holds the access policy's `[[policy]]` rules.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,

    /// AWS region (default: the SDK's chain: AWS_REGION, the profile, IMDS).
    #[arg(long, global = true, help_heading = "Source")]
    pub region: Option<String>,

    /// AWS profile from ~/.aws/config (default: AWS_PROFILE, else `default`).
    #[arg(long, global = true, help_heading = "Source")]
    pub profile: Option<String>,

    /// Secrets Manager endpoint (default: AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL,
    /// else the region's).
    #[arg(long, global = true, value_name = "URL", help_heading = "Source")]
    pub endpoint_url: Option<String>,

    /// Deadline of one Secrets Manager call, its retries included.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300), help_heading = "Source")]
    pub timeout: u64,

    /// How long a fetched value is served before it is fetched again.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = cache::DEFAULT_TTL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86400), help_heading = "Cache")]
    pub ttl: u64,

    /// How many secret versions the cache holds before evicting the least recently used.
    #[arg(long, global = true, value_name = "N", default_value_t = cache::DEFAULT_MAX_ENTRIES,
          value_parser = parse_cache_size, help_heading = "Cache")]
    pub cache_size: usize,

    /// How many bytes of values the cache holds before evicting the least recently used.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = cache::DEFAULT_MAX_BYTES,
          value_parser = parse_cache_bytes, help_heading = "Cache")]
    pub cache_bytes: usize,

    /// How long past its TTL a value may be served while Secrets Manager fails transiently
    /// (throttling, 5xx, timeouts); 0 disables.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = cache::DEFAULT_MAX_STALE.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=604800), help_heading = "Cache")]
    pub max_stale: u64,

    /// How long a "not found" is remembered; 0 disables.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = cache::DEFAULT_NEGATIVE_TTL.as_secs(),
          value_parser = clap::value_parser!(u64).range(0..=3600), help_heading = "Cache")]
    pub negative_ttl: u64,

    /// Owner of files and directories no policy rule covers (default: the running user).
    #[arg(long, global = true, help_heading = "Access")]
    pub uid: Option<u32>,

    /// Group of files and directories no policy rule covers (default: the running group).
    #[arg(long, global = true, help_heading = "Access")]
    pub gid: Option<u32>,

    /// Mode of files no policy rule covers.
    #[arg(
        long,
        global = true,
        value_name = "OCTAL",
        default_value = "0440",
        help_heading = "Access"
    )]
    pub file_mode: Mode,

    /// Mode of directories no policy rule covers.
    #[arg(
        long,
        global = true,
        value_name = "OCTAL",
        default_value = "0550",
        help_heading = "Access"
    )]
    pub dir_mode: Mode,

    /// Log level (error, warn, info, debug, trace) or a full filter; default: RUST_LOG, else warn.
    #[arg(long, global = true, value_name = "LEVEL", help_heading = "Logging")]
    pub log_level: Option<String>,
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

impl GlobalArgs {
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            ttl: Duration::from_secs(self.ttl),
            max_stale: Duration::from_secs(self.max_stale),
            negative_ttl: Duration::from_secs(self.negative_ttl),
            max_entries: self.cache_size,
            max_bytes: self.cache_bytes,
            ..CacheConfig::default()
        }
    }

    pub fn aws_options(&self) -> AwsOptions {
        AwsOptions {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
            timeout: Some(Duration::from_secs(self.timeout)),
            credentials: None,
        }
    }

    pub fn policy_defaults(&self) -> Defaults {
        Defaults {
            uid: self.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
            gid: self.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
            file_mode: self.file_mode,
            dir_mode: self.dir_mode,
        }
    }
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

/// The man page, generated from the command line definition so that it never drifts.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
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

impl HttpArgs {
    /// The listeners' settings; `tcp` says whether the TCP listener is on.
    pub fn settings(&self, tcp: bool) -> crate::http::HttpSettings {
        let port = self.http_port.unwrap_or(crate::http::DEFAULT_PORT);
        crate::http::HttpSettings {
            tcp: tcp.then(|| std::net::SocketAddr::new(self.http_listen, port)),
            socket: self
                .http_socket
                .clone()
                .map(|p| (p, self.http_socket_mode.0)),
            max_conn: self.max_conn,
            header_timeout: Duration::from_secs(self.http_header_timeout),
            request_timeout: Duration::from_secs(self.http_request_timeout),
            path_prefix: self.path_prefix.clone(),
            token_headers: self.ssrf_headers.clone(),
        }
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
        assert_eq!(cli.global.ttl, 5);
        assert_eq!(cli.global.source, SourceSpec::File("/a".into()));
    }

    #[test]
    fn out_of_range_values_are_usage_errors() {
        for args in [
            ["secretsfs", "--ttl", "0", "get", "x"],
            ["secretsfs", "--cache-size", "0", "get", "x"],
            ["secretsfs", "--file-mode", "999", "get", "x"],
            ["secretsfs", "--source", "s3", "get", "x"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
