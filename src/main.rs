//! The `secretsfs` binary: parse, go into the background where asked, set up logging, run.
//! Everything else is in the library.

use std::ffi::CStr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use secretsfs::cli::{self, Cli, Command};
use secretsfs::daemon::{self, Readiness};
use secretsfs::source::SourceSpec;

/// Where logs go.
enum LogTo {
    Stderr,
    File(PathBuf),
    Syslog,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let mut readiness = Readiness::none();
    let mut log_to = LogTo::Stderr;
    if let Command::Mount(args) = &mut cli.command {
        if let Some(file) = &args.log_file {
            log_to = LogTo::File(absolute(file));
        }
        if !args.foreground {
            // The daemon works from `/`: resolve relative paths while they still mean what
            // the user meant.
            args.mountpoint = absolute(&args.mountpoint);
            if let SourceSpec::File(path) = &mut cli.global.source {
                *path = absolute(path);
            }
            if let Some(path) = &mut cli.global.config {
                *path = absolute(path);
            }
            if matches!(log_to, LogTo::Stderr) {
                log_to = LogTo::Syslog;
            }
            // Before any thread exists: the runtime and logging come after.
            readiness = match daemon::daemonize() {
                Ok(r) => r,
                Err(err) => return fail(&err, &mut readiness),
            };
        }
    }
    if let Err(err) = init_logging(cli.global.log_level.as_deref(), log_to) {
        return fail(&err, &mut readiness);
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
    match runtime.block_on(secretsfs::run::run(cli, &mut readiness)) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(err) => fail(&err, &mut readiness),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn init_logging(level: Option<&str>, to: LogTo) -> secretsfs::Result<()> {
    let filter = cli::log_filter(level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match to {
        LogTo::Stderr => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogTo::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| {
                    secretsfs::Error::config(format!("--log-file {}: {e}", path.display()))
                })?;
            builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .init()
        }
        LogTo::Syslog => {
            const IDENTITY: &CStr = c"secretsfs";
            let syslog = syslog_tracing::Syslog::new(
                IDENTITY,
                syslog_tracing::Options::LOG_PID,
                syslog_tracing::Facility::Daemon,
            )
            .ok_or_else(|| secretsfs::Error::config("syslog is already in use"))?;
            builder
                .with_writer(syslog)
                .with_ansi(false)
                .without_time()
                .init()
        }
    }
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
