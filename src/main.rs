//! The `secretsfs` binary: harden the process, parse, resolve the settings, go into the
//! background where asked, set up logging (then log what hardening could not do), run.
//! Everything else is in the library.

use std::ffi::CStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use secretsfs::cli::{self, Cli, Command};
use secretsfs::daemon::{self, Readiness};
use secretsfs::source::SourceSpec;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where logs go.
enum LogTo {
    Stderr,
    File(PathBuf),
    Syslog,
}

fn main() -> ExitCode {
    // Parsing holds no secret; hardening comes next, before anything could, and what it could
    // not do waits for the log. A program run by `exec` or `watch` gets the caller's limits.
    // Lambda runs an extension with no arguments: then it is one.
    let mut cli = if std::env::args_os().len() == 1
        && std::env::var_os(secretsfs::lambda::RUNTIME_API_VARIABLE).is_some()
    {
        Cli::try_parse_args_from(["secretsfs", "lambda-extension"]).unwrap_or_else(|e| e.exit())
    } else {
        Cli::parse_args()
    };
    let runs_a_program = matches!(cli.command, Command::Exec(_) | Command::Watch(_));
    let hardening = secretsfs::hardening::harden(runs_a_program);
    let mut inherited = secretsfs::handover::Inherited::default();
    if let Command::Mount(_) = &cli.command {
        // Before any thread: it takes LISTEN_* out of the environment.
        inherited = secretsfs::handover::take_from_env();
        // SIGUSR2 asks for a hand-over (`service::mount` watches it); until the daemon watches
        // for it, its default action would end the process, mount in hand: ignored till then.
        // SAFETY: no thread exists yet, and SIG_IGN is no handler.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGUSR2,
                nix::sys::signal::SigHandler::SigIgn,
            )
        };
    }
    let mut readiness = Readiness::none();
    if let Command::StopPost(args) = &cli.command {
        // Needs no settings: a broken config file must not keep a stopping unit's mount.
        let _ = init_logging(Some("info"), "info", LogTo::Stderr, None);
        return match secretsfs::stop_post::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err, &mut readiness),
        };
    }
    if let Command::CheckConfig(args) = &cli.command
        && let Some(file) = &args.file
    {
        cli.global.config = Some(file.clone());
    }
    // Resolved before forking, so that a bad config is reported by the command itself.
    let mut settings = match cli.settings() {
        Ok(s) => s,
        Err(err) => return fail(&err, &mut readiness),
    };
    // check-config only reads: it must not create the log files it is checking the names of.
    let checking = matches!(cli.command, Command::CheckConfig(_));
    let mut log_to = match &settings.log_file {
        Some(file) if !checking => LogTo::File(absolute(file)),
        _ => LogTo::Stderr,
    };
    if checking {
        // Judged as the commands that write them would, without creating them.
        let logs = [
            ("--log-file", &settings.log_file),
            ("--audit-log", &settings.audit_log),
        ];
        for (what, path) in logs {
            if let Some(path) = path
                && let Err(why) = secretsfs::host_file::check_log(path)
            {
                let err = secretsfs::Error::config(format!("{what} {}: {why}", path.display()));
                return fail(&err, &mut readiness);
            }
        }
        settings.audit_log = None;
    }
    if let Command::Mount(args) = &mut cli.command
        && !args.foreground
    {
        // The daemon works from `/`: resolve relative paths while they still mean what the
        // user meant.
        args.mountpoint = absolute(&args.mountpoint);
        if let SourceSpec::File(path) = &mut settings.source {
            *path = absolute(path);
        }
        if let Some(path) = &mut cli.global.config {
            *path = absolute(path);
        }
        settings.audit_log = settings.audit_log.as_deref().map(absolute);
        if matches!(log_to, LogTo::Stderr) {
            log_to = LogTo::Syslog;
        }
        // Before any thread exists: the runtime and logging come after.
        readiness = match daemon::daemonize() {
            Ok(r) => r,
            Err(err) => return fail(&err, &mut readiness),
        };
    }
    let default_filter = cli::default_log_filter(&cli.command);
    let logs_leave_stderr = !matches!(log_to, LogTo::Stderr);
    if let Err(err) = init_logging(
        settings.log_level.as_deref(),
        default_filter,
        log_to,
        settings.audit_log.as_deref(),
    ) {
        return fail(&err, &mut readiness);
    }
    if logs_leave_stderr {
        secretsfs::panic_log::install();
    }
    for warning in &hardening {
        warning.log();
    }
    if settings.mlock
        && let Err(warning) = secretsfs::hardening::lock_memory()
    {
        warning.log();
    }
    // A runtime built by hand, not #[tokio::main]: the fork above must come first.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = secretsfs::Error::new(
                secretsfs::ErrorKind::Internal,
                format!("cannot start the async runtime: {e}"),
            );
            return fail(&err, &mut readiness);
        }
    };
    match runtime.block_on(secretsfs::run::run(
        cli,
        settings,
        &mut readiness,
        inherited,
    )) {
        Ok(code) => ExitCode::from(code),
        Err(err) => fail(&err, &mut readiness),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn open_append(path: &Path, what: &str) -> secretsfs::Result<std::fs::File> {
    secretsfs::host_file::open_log(path)
        .map_err(|e| secretsfs::Error::config(format!("{what} {}: {e}", path.display())))
}

fn init_logging(
    level: Option<&str>,
    default_filter: &str,
    to: LogTo,
    audit_log: Option<&Path>,
) -> secretsfs::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = cli::log_filter(level, rust_log.as_deref(), default_filter)?;
    let logs = match to {
        LogTo::Stderr => tracing_subscriber::fmt::layer()
            .fmt_fields(secretsfs::log_format::fields())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogTo::File(path) => {
            let file = open_append(&path, "--log-file")?;
            tracing_subscriber::fmt::layer()
                .fmt_fields(secretsfs::log_format::fields())
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .boxed()
        }
        LogTo::Syslog => {
            const IDENTITY: &CStr = c"secretsfs";
            let syslog = syslog_tracing::Syslog::new(
                IDENTITY,
                syslog_tracing::Options::LOG_PID,
                syslog_tracing::Facility::Daemon,
            )
            .ok_or_else(|| secretsfs::Error::config("syslog is already in use"))?;
            tracing_subscriber::fmt::layer()
                .fmt_fields(secretsfs::log_format::fields())
                .with_writer(syslog)
                .with_ansi(false)
                .without_time()
                .boxed()
        }
    };
    let audit = match audit_log {
        Some(path) => {
            let file = open_append(path, "--audit-log")?;
            let only_audit = tracing_subscriber::filter::Targets::new()
                .with_target(secretsfs::audit::TARGET, tracing::Level::INFO);
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(only_audit),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(audit)
        .init();
    Ok(())
}

/// One line on stderr (and in the daemon's log), the daemon's parent told, and the exit code.
fn fail(err: &secretsfs::Error, readiness: &mut Readiness) -> ExitCode {
    let code = cli::exit_code(err);
    if readiness.is_waited_for() {
        tracing::error!(error = %err, "exiting");
    }
    readiness.failed(code, err);
    eprintln!("secretsfs: {err}");
    ExitCode::from(code)
}
