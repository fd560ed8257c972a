//! `secretsfs stop-post`, the mount unit's `ExecStopPost=` (docs/ARCHITECTURE.md#restarts).
//!
//! With `--fd-store`, SIGTERM leaves the mount to systemd's file descriptor store, because a
//! restart must not unmount. Only systemd knows whether a start follows the stop, so this asks
//! it: a restart job, or a failure that `Restart=on-failure` answers, keeps the mount for the
//! next process to take over; anything else (`systemctl stop`, a clean exit) unmounts, since the
//! store lets go of the connection once the unit is down and the mount would be left dead.

use std::path::Path;
use std::process::Command;

use crate::cli::StopPostArgs;
use crate::error::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep(&'static str),
    Unmount(&'static str),
}

/// The job systemd runs on `unit`, from `systemctl list-jobs --plain --no-legend --full`
/// (columns JOB UNIT TYPE STATE).
pub fn job_of(list_jobs: &str, unit: &str) -> Option<String> {
    list_jobs.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_job, job_unit, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (job_unit == unit).then(|| kind.to_owned())
    })
}

/// Whether to unmount, given the unit's job (if any) and `$SERVICE_RESULT`.
pub fn verdict(job: Option<&str>, service_result: Option<&str>) -> Verdict {
    match job {
        Some("restart" | "try-restart" | "reload-or-restart" | "reload-or-try-restart") => {
            Verdict::Keep("systemd is restarting the unit")
        }
        Some(_) => Verdict::Unmount("the unit is stopping"),
        None => match service_result {
            Some("success") | None => Verdict::Unmount("the daemon exited and nothing restarts it"),
            Some(_) => Verdict::Keep("the daemon failed; Restart=on-failure starts it again"),
        },
    }
}

pub fn run(args: &StopPostArgs) -> Result<()> {
    let result = std::env::var("SERVICE_RESULT").ok();
    let listing = Command::new("systemctl")
        .args(["list-jobs", "--plain", "--no-legend", "--full"])
        .output();
    let decided = match listing {
        Ok(out) if out.status.success() => {
            let job = job_of(&String::from_utf8_lossy(&out.stdout), &args.unit);
            verdict(job.as_deref(), result.as_deref())
        }
        // Unsure: unmount, so a stop never leaves a dead mount; a restart then mounts anew.
        Ok(out) => {
            tracing::warn!(status = %out.status, "systemctl list-jobs failed; unmounting");
            Verdict::Unmount("systemd could not be asked")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot run systemctl; unmounting");
            Verdict::Unmount("systemd could not be asked")
        }
    };
    match decided {
        Verdict::Keep(why) => {
            tracing::info!(mountpoint = %args.mountpoint.display(), why, "keeping the mount");
            Ok(())
        }
        Verdict::Unmount(why) => unmount(&args.mountpoint, why),
    }
}

fn unmount(mountpoint: &Path, why: &str) -> Result<()> {
    if !crate::fuse::mount::is_secretsfs_mount(mountpoint) {
        return Ok(());
    }
    tracing::info!(mountpoint = %mountpoint.display(), why, "unmounting");
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| Error::config(format!("cannot unmount {}: {e}", mountpoint.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_restart_to_come_keeps_the_mount() {
        let jobs = "412 other.service start waiting\n413 secretsfs.service restart running\n";
        assert_eq!(
            job_of(jobs, "secretsfs.service").as_deref(),
            Some("restart")
        );
        assert_eq!(job_of(jobs, "secretsfs-http.service"), None);
        assert!(matches!(
            verdict(Some("restart"), Some("success")),
            Verdict::Keep(_)
        ));
        assert!(matches!(
            verdict(Some("stop"), Some("success")),
            Verdict::Unmount(_)
        ));
        assert!(matches!(verdict(None, Some("signal")), Verdict::Keep(_)));
        assert!(matches!(
            verdict(None, Some("success")),
            Verdict::Unmount(_)
        ));
        assert!(matches!(verdict(None, None), Verdict::Unmount(_)));
    }
}
