//! The `secretsfs` binary: parse, set up logging, run. Everything else is in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use secretsfs::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = init_logging(cli.global.log_level.as_deref()) {
        return fail(&err);
    }
    // A runtime built by hand, not #[tokio::main]: `mount` must be able to fork into the
    // background before any thread exists.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&secretsfs::Error::new(
                secretsfs::ErrorKind::Internal,
                format!("cannot start the async runtime: {e}"),
            ));
        }
    };
    match runtime.block_on(secretsfs::run::run(cli)) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(err) => fail(&err),
    }
}

fn init_logging(level: Option<&str>) -> secretsfs::Result<()> {
    let filter = cli::log_filter(level)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// One line on stderr, and the exit code of its kind.
fn fail(err: &secretsfs::Error) -> ExitCode {
    eprintln!("secretsfs: {err}");
    ExitCode::from(cli::exit_code(err))
}
