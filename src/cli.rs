//! The command line: subcommands, the flags that are not settings, and exit codes. The
//! settings' flags are declared in src/settings/options.rs (docs/ARCHITECTURE.md#settings).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, ErrorKind, Result};
use crate::settings::{Given, GlobalOptions, HttpOptions, MountOptions};

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
    /// The settings the command line and the environment give.
    #[arg(skip)]
    pub given: Given,
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
    /// Run a command, and restart (or signal) it whenever a watched secret changes.
    Watch(WatchArgs),
    /// Run a command with secrets in its environment, read once, in place of this process.
    Exec(ExecArgs),
    /// Render a template file to stdout, from the same cache and source as `get` (no mount).
    Render(RenderArgs),
    /// Run as an AWS Lambda extension, a drop-in for the AWS Parameters and Secrets Lambda
    /// Extension: what Lambda runs as /opt/extensions/secretsfs (with no arguments, this
    /// command is implied when AWS_LAMBDA_RUNTIME_API is set).
    LambdaExtension(ServeArgs),
    /// Serve the Secrets Store CSI Driver as its provider `secretsfs` (a SecretProviderClass of
    /// the AWS provider, with `provider: secretsfs`), on a Unix socket, in the foreground.
    CsiProvider(CsiProviderArgs),
    /// For the mount unit's ExecStopPost=: unmount MOUNTPOINT unless systemd is restarting
    /// UNIT (whose next process takes the mount over from the file descriptor store).
    StopPost(StopPostArgs),
    /// Print the man page (roff) generated from this command line, for packaging.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub http: HttpOptions,
}

/// Serve the Secrets Store CSI Driver's provider API (docs/kubernetes-csi.md).
///
/// Each pod's objects are read with the pod's own identity (IRSA, or EKS Pod Identity with
/// `usePodIdentity`), from a cache per identity shared by the node's pods: a republish within
/// the TTL costs no call. The region of a class without one is --region (AWS_REGION), else the
/// pod's node's topology.kubernetes.io/region label.
#[derive(Debug, Clone, Args)]
pub struct CsiProviderArgs {
    /// The socket the driver asks (`<provider>.sock` in its provider directory).
    #[arg(long, value_name = "PATH", default_value = secretsfs_csi::server::DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// The Kubernetes API [default: the cluster's, with this pod's service account].
    #[arg(long, value_name = "URL")]
    pub kube_api: Option<String>,

    /// The EKS Pod Identity Agent [default: http://169.254.170.23/v1/credentials, or
    /// http://[fd00:ec2::23]/v1/credentials with preferredAddressType ipv6].
    #[arg(long, value_name = "URL")]
    pub pod_identity_endpoint: Option<String>,

    /// Serve a pod whose request carries no service account token with this provider's own
    /// credentials. Every such pod on the node then reads with the node's identity: a risk,
    /// off by default.
    #[arg(long)]
    pub allow_node_identity: bool,

    /// The most bytes one answer may hold (the driver's --max-call-recv-msg-size, 4 MiB by
    /// default): a larger one is refused with ResponseTooLarge.
    #[arg(long, value_name = "BYTES", default_value_t = secretsfs_csi::provider::DEFAULT_MAX_RESPONSE_BYTES,
        value_parser = crate::settings::options::in_range::<usize>(1024, 1 << 30))]
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Args)]
pub struct StopPostArgs {
    /// The unit whose stop this is (`%n` in the unit file).
    #[arg(long, default_value = "secretsfs.service")]
    pub unit: String,
    /// The unit's mountpoint.
    pub mountpoint: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CheckConfigArgs {
    /// The file to check [default: --config, else /etc/secretsfs/config.toml].
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// An existing, empty directory, not on a pseudo file system (/proc, /sys, /dev) nor
    /// inside a secretsfs mount. A dead mount left there by a killed daemon is detached first.
    pub mountpoint: PathBuf,

    /// Stay in the foreground and log to stderr (for systemd and containers).
    #[arg(short, long)]
    pub foreground: bool,

    /// Give the FUSE connection and the inode journal to systemd's file descriptor store
    /// (FileDescriptorStoreMax=): a restart, or a crash, takes the mount over without a reader
    /// seeing an error, and SIGTERM leaves the mount to the store. On by itself when systemd
    /// sets $FDSTORE. Without it, SIGUSR2 still hands the mount over by exec.
    #[arg(long)]
    pub fd_store: bool,

    #[command(flatten)]
    pub options: MountOptions,

    #[command(flatten)]
    pub http: HttpOptions,
}

/// Run COMMAND, and restart it (or signal it) whenever a watched secret changes.
///
/// Exact names must be readable before COMMAND starts. Values are refreshed ahead of their
/// TTL, so a rotation is seen within the TTL. Signals sent to watch (TERM, INT, HUP, QUIT,
/// USR1, USR2) go on to COMMAND, and watch exits with COMMAND's status.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example: secretsfs watch prod/db certs/example.com -- ./server --port 8080"
)]
pub struct WatchArgs {
    /// Selectors to watch; a name may be a glob (`certs/*`), and a JSON key watches that key
    /// alone.
    #[arg(value_name = "SELECTOR", required_unless_present_any = ["env", "env_file"])]
    pub selectors: Vec<String>,

    #[command(flatten)]
    pub env: EnvArgs,

    /// On a change, send COMMAND this signal (HUP, USR1, ...) instead of restarting it.
    #[arg(long, value_name = "SIGNAL")]
    pub signal: Option<String>,

    /// Changes within this many seconds of the first act once (0-3600).
    #[arg(long, value_name = "SECONDS", default_value_t = 1,
        value_parser = crate::settings::options::in_range::<u64>(0, 3600))]
    pub debounce: u64,

    /// On a restart, how long COMMAND has to exit after SIGTERM before SIGKILL (1-3600).
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
        value_parser = crate::settings::options::in_range::<u64>(1, 3600))]
    pub kill_timeout: u64,

    /// The command to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Secrets as COMMAND's environment variables (docs/environment.md).
#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// Set the variable NAME to the value SELECTOR names (exact bytes, no glob); watched:
    /// a change restarts COMMAND with the values read anew.
    #[arg(long = "env", value_name = "NAME=SELECTOR")]
    pub env: Vec<String>,

    /// Variables from a file: NAME=SELECTOR lines, or an ECS task definition's `secrets` list
    /// (JSON; a valueFrom is a Secrets Manager ARN with its :json-key:stage:version-id, or a
    /// Parameter Store ARN or name).
    #[arg(long, value_name = "PATH")]
    pub env_file: Vec<PathBuf>,
}

impl EnvArgs {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.env_file.is_empty()
    }
}

/// Run COMMAND with secrets in its environment, in place of this process.
///
/// Every value is read first (in batches where the source allows); if one cannot be, exit
/// with `get`'s code and COMMAND never runs. Then COMMAND replaces secretsfs (no process of
/// ours stays behind), with the resource limits the caller had.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example: secretsfs exec --env DB_PASSWORD=prod/db:password -- ./server",
    group = clap::ArgGroup::new("variables").args(["env", "env_file"]).multiple(true).required(true)
)]
pub struct ExecArgs {
    #[command(flatten)]
    pub env: EnvArgs,

    /// The command to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The template file (Jinja syntax; see docs/templates.md).
    pub template: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// What to read: NAME[:JSON_KEY[:VERSION_STAGE[:VERSION_ID]]] (a name or an ARN).
    pub selector: String,
}

/// Global flags: the config file, and the settings every command takes (declared in
/// src/settings/options.rs, each with a config key of its name and an environment variable;
/// the precedence is flag > environment > file > default).
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file (TOML) [default: /etc/secretsfs/config.toml when present].
    #[arg(long, global = true, value_name = "PATH", env = "SECRETSFS_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub options: GlobalOptions,
}

impl Cli {
    /// The settings this command line runs with, resolved from its flags, environment and
    /// config file (read again at each call: SIGHUP re-reads the file through it).
    pub fn settings(&self) -> crate::error::Result<crate::settings::Settings> {
        crate::settings::Settings::resolve(&self.given, self.global.config.as_deref())
    }

    /// The process's command line; on a usage error, clap's message and exit code 2.
    pub fn parse_args() -> Cli {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` and keeps which settings they (or the environment) give, for the
    /// resolution to put over the config file.
    pub fn try_parse_args_from<I, T>(args: I) -> std::result::Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.given = Given::from_matches(&matches);
        Ok(cli)
    }
}

/// The man page, generated from the command line definition so that it never drifts.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

/// Exit codes, from sysexits(3) where one fits; listed in docs/operations.md and in `--help`.
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

/// Warnings, except the SDK credential chain's (it warns about every provider it tries, and
/// the error that follows already says what failed, on one line) and fuser's (it warns about
/// each request of an operation it was not given, which programs send routinely).
pub const DEFAULT_LOG_FILTER: &str = "warn,aws_config=error,fuser=error";

/// The Lambda extension's: the default, and its own life's lines (registered, shut down), which
/// go to CloudWatch with the function's.
pub const LAMBDA_LOG_FILTER: &str = "warn,secretsfs::lambda=info,aws_config=error";

/// For a command that runs once (`get`): a failed fetch is its one-line error already, so the
/// cache's report of it (for daemons, whose readers cannot tell the operator) is left out.
pub const ONE_SHOT_LOG_FILTER: &str = "warn,aws_config=error,fuser=error,secretsfs::cache=error";

/// For `watch`: also what it does to the command (a restart is worth a line in a container's
/// log).
pub const WATCH_LOG_FILTER: &str = "warn,aws_config=error,fuser=error,secretsfs::watch=info";

/// The default filter of a command (see [`log_filter`]).
pub fn default_log_filter(command: &Command) -> &'static str {
    match command {
        Command::Get(_) | Command::Render(_) => ONE_SHOT_LOG_FILTER,
        Command::Watch(_) => WATCH_LOG_FILTER,
        Command::Exec(_) => ONE_SHOT_LOG_FILTER,
        Command::LambdaExtension(_) => LAMBDA_LOG_FILTER,
        _ => DEFAULT_LOG_FILTER,
    }
}

/// The tracing filter: `--log-level` over `rust_log` (the `RUST_LOG` environment variable)
/// over the command's default. A bad `RUST_LOG` is refused like a bad `--log-level`: ignored,
/// it would log at a level nobody asked for without a word.
pub fn log_filter(
    level: Option<&str>,
    rust_log: Option<&str>,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter> {
    let (text, from) = match (level, rust_log.filter(|v| !v.trim().is_empty())) {
        (Some(l), _) => (l, "--log-level, SECRETSFS_LOG_LEVEL or log_level"),
        (None, Some(env)) => (env, "RUST_LOG"),
        (None, None) => return Ok(tracing_subscriber::EnvFilter::new(default)),
    };
    parse_log_filter(text)
        .map_err(|why| Error::config(format!("invalid log level {text:?} ({from}): {why}")))
}

/// tracing's filter syntax, except that a directive without `=` must be a level: tracing takes
/// `bogus` (or `WARNING`) for "everything of the target named so", which silences every line
/// and is never what was meant.
fn parse_log_filter(text: &str) -> std::result::Result<tracing_subscriber::EnvFilter, String> {
    use tracing_subscriber::filter::LevelFilter;
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '[']) && directive.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "{directive:?} is neither a level (error, warn, info, debug, trace, off; the \
                 agent's DEBUG..ERROR and NONE) nor TARGET=LEVEL"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())
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
        let cli = Cli::try_parse_args_from([
            "secretsfs",
            "get",
            "x",
            "--ttl",
            "5",
            "--source",
            "file:/a",
        ])
        .unwrap();
        assert_eq!(cli.global.options.ttl, 5);
        assert_eq!(
            cli.global.options.source,
            crate::source::SourceSpec::File("/a".into())
        );
    }

    #[test]
    fn rust_log_is_checked_like_the_log_level_and_yields_to_it() {
        let err = log_filter(None, Some("bogus"), "warn").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.message().contains("(RUST_LOG)"), "{}", err.message());
        assert!(log_filter(None, Some("info,secretsfs=debug"), "warn").is_ok());
        assert!(log_filter(Some("info"), Some("bogus"), "warn").is_ok());
        assert!(log_filter(None, Some(" "), "warn").is_ok());
    }

    #[test]
    fn a_log_level_is_a_level_or_target_directives() {
        for good in [
            "debug",
            "OFF",
            "info,secretsfs=debug",
            "warn,aws_config=error,fuser=error",
            "secretsfs::cache=trace",
        ] {
            assert!(log_filter(Some(good), None, "warn").is_ok(), "{good}");
        }
        for (bad, why) in [
            ("bogus", "\"bogus\" is neither a level"),
            ("WARNING", "\"WARNING\" is neither a level"),
            ("info,secretsfs", "\"secretsfs\" is neither a level"),
            ("secretsfs=bogus", "error parsing level filter"),
            (" ", "it is empty"),
        ] {
            let err = log_filter(Some(bad), None, "warn").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            assert!(
                err.message().contains(why) && !err.message().contains('\n'),
                "{bad}: {}",
                err.message()
            );
        }
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
