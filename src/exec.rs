//! `secretsfs exec --env NAME=SELECTOR ... -- COMMAND`: every value read once, then COMMAND
//! exec'd in place of this process, for entrypoints and scripts (chamber exec, aws-vault
//! exec). Nothing of ours is left running, and COMMAND gets the caller's resource limits, not
//! secretsfs's hardening.

use std::os::unix::process::CommandExt;

use crate::cli::ExecArgs;
use crate::environment::{self, read::Engines};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;

/// The exit code of a COMMAND that cannot be run, as shells and `env` have them.
const NOT_FOUND: u8 = 127;
const NOT_EXECUTABLE: u8 = 126;

/// Reads the values and becomes COMMAND; returns only when it could not.
pub async fn run(settings: &Settings, args: &ExecArgs) -> Result<u8> {
    // Checked before the sources are built: a bad entry costs nothing upstream.
    let entries = environment::entries(&args.env.env, &args.env.env_file)?;
    let engines = Engines::build(settings, &entries, false).await?;
    let values = environment::read::read_all(&engines, &entries).await?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("exec: no COMMAND after --"))?;
    let mut command = std::process::Command::new(program);
    command
        .args(rest)
        .envs(environment::read::as_environment(&values));
    crate::hardening::restore_callers_limits()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("exec: resource limits: {e}")))?;
    let err = command.exec();
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => NOT_FOUND,
        _ => NOT_EXECUTABLE,
    };
    eprintln!(
        "secretsfs: exec: cannot run {}: {err}",
        program.to_string_lossy()
    );
    Ok(code)
}
