//! `secretsfs watch SELECTOR... -- COMMAND`: runs COMMAND and restarts it (or signals it) when
//! a watched selector changes; the exec mode of consul-template and Vault Agent, for
//! containers and scripts, on the same engine as the mount (no mount needed). With `--env`,
//! COMMAND's environment holds secrets ([`crate::environment`]), read anew for each restart.
//!
//! watch stands in for COMMAND: the signals a supervisor sends (TERM, INT, HUP, QUIT, USR1,
//! USR2) go on to it, and when it exits, watch exits with its status. COMMAND gets the
//! caller's resource limits, not watch's hardening.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::WatchArgs;
use crate::environment::Entry;
use crate::environment::read::{Engines, Values, as_environment, read_all};
use crate::error::{Error, ErrorKind, Result};
use crate::watch::{AbortOnDrop, Fire, Notice, WatchPattern, Watcher};

/// The signals passed on to COMMAND.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Runs COMMAND under watch until it exits; its exit code (128 + N for signal N).
pub async fn supervise(
    engines: Engines,
    entries: Vec<Entry>,
    args: &WatchArgs,
    relist: Duration,
) -> Result<u8> {
    let engine = engines.configured().clone();
    let patterns = args
        .selectors
        .iter()
        .map(|s| WatchPattern::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let notify = match &args.signal {
        Some(name) => Some(crate::signal_name::parse(name).ok_or_else(|| {
            Error::config(format!("invalid --signal {name:?}: not a signal name"))
        })?),
        None => None,
    };
    // COMMAND starts with every named secret readable, as a template would: a typo or a
    // missing permission fails here, with the reason, instead of in a restart loop.
    for pattern in &patterns {
        if let Some(name) = pattern.exact_name() {
            engine.get(&pattern.selector_for(name)).await?;
        }
    }
    let mut values = read_all(&engines, &entries).await?;
    let (changes, mut changed) = mpsc::unbounded_channel::<Notice>();
    let fire: Fire = Arc::new(move |_, noticed| {
        let _ = changes.send(noticed);
    });
    // One watcher and one refresher per engine (Parameter Store entries have their own).
    let mut running = Vec::new();
    let mut positional = Some(patterns);
    for (engine, group) in engines.split(&entries) {
        let mut watched: Vec<WatchPattern> = group
            .iter()
            .map(|e| WatchPattern::of_selector(&e.selector))
            .collect();
        if Arc::ptr_eq(&engine, engines.configured()) {
            watched.extend(positional.take().unwrap_or_default());
        }
        if watched.is_empty() {
            continue;
        }
        running.push(AbortOnDrop(tokio::spawn(engine.clone().refresh_ahead())));
        let watcher = Watcher::new(engine, vec![watched], relist, fire.clone());
        running.push(AbortOnDrop(tokio::spawn(watcher.run())));
    }
    let (to_forward, mut forwarded) = mpsc::unbounded_channel();
    for sig in FORWARDED {
        let mut stream = signal(SignalKind::from_raw(sig as i32))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("signals: {e}")))?;
        let to_forward = to_forward.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() && to_forward.send(sig).is_ok() {}
        });
    }
    let mut child = start(args, &values)?;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| Error::new(ErrorKind::Internal,
                    format!("waiting for the command: {e}")))?;
                return Ok(exit_code(status));
            }
            Some(sig) = forwarded.recv() => send(&child, sig),
            Some(first) = changed.recv() => {
                let mut secrets = vec![first.secret];
                // Changes close together (a certificate and its key) restart once.
                let debounce = tokio::time::sleep(Duration::from_secs(args.debounce));
                tokio::pin!(debounce);
                loop {
                    tokio::select! {
                        () = &mut debounce => break,
                        Some(more) = changed.recv() => secrets.push(more.secret),
                        // Meanwhile COMMAND is still watch's to stand in for.
                        Some(sig) = forwarded.recv() => send(&child, sig),
                        status = child.wait() => {
                            let status = status.map_err(|e| Error::new(ErrorKind::Internal,
                                format!("waiting for the command: {e}")))?;
                            return Ok(exit_code(status));
                        }
                    }
                }
                secrets.sort();
                secrets.dedup();
                match notify {
                    Some(sig) => {
                        tracing::info!(target: "secretsfs::watch::command", changed = ?secrets, signal = %sig, "watched secrets changed: signalling the command");
                        send(&child, sig);
                    }
                    None => {
                        // Read before COMMAND stops: a value that cannot be read now leaves
                        // COMMAND running as it is, rather than not running at all.
                        if !entries.is_empty() {
                            match read_all(&engines, &entries).await {
                                Ok(read) => values = read,
                                Err(err) => {
                                    tracing::warn!(target: "secretsfs::watch::command", changed = ?secrets, error = %err,
                                        "watched secrets changed, but the environment cannot be read anew: the command keeps running");
                                    continue;
                                }
                            }
                        }
                        tracing::info!(target: "secretsfs::watch::command", changed = ?secrets, "watched secrets changed: restarting the command");
                        stop(&mut child, Duration::from_secs(args.kill_timeout)).await;
                        child = start(args, &values)?;
                    }
                }
            }
        }
    }
}

fn start(args: &WatchArgs, values: &Values) -> Result<Child> {
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Error::config("watch: no COMMAND after --"))?;
    let mut command = Command::new(program);
    command.args(rest).envs(as_environment(values));
    // SAFETY: setrlimit allocates nothing and takes no lock: safe between fork and exec.
    unsafe {
        command.pre_exec(crate::hardening::restore_callers_limits);
    }
    command.spawn().map_err(|e| {
        Error::config(format!(
            "watch: cannot start {}: {e}",
            program.to_string_lossy()
        ))
    })
}

fn send(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// SIGTERM, then SIGKILL if it is still there after `grace`; reaped either way.
async fn stop(child: &mut Child, grace: Duration) {
    send(child, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!(target: "secretsfs::watch::command",
            grace_seconds = grace.as_secs(),
            "the command outlived SIGTERM: killing it"
        );
        let _ = child.kill().await;
    }
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(u8::MAX),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        (None, None) => u8::MAX,
    }
}
