//! The hooks' tests (those of their config are in settings/file/hook/tests.rs): `run`,
//! `failures` and `leftovers` start processes (the user and signal cases need root, and say
//! they were skipped without it). Waits poll the counts with a generous limit: no test depends
//! on how fast the machine is.

mod failures;
mod leftovers;
mod run;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::{Pid, Uid};
use parking_lot::Mutex;

use crate::hooks::{HookCounts, HookSpec, Notice};
use crate::settings::file::ConfigFile;

/// One `[[hook]]` entry, parsed as the config file would be.
pub(super) fn hook(body: &str) -> HookSpec {
    let mut file = ConfigFile::parse(&format!("[[hook]]\n{body}\n")).unwrap();
    file.sections.hook.remove(0)
}

/// A hook running `script` with /bin/sh, plus the entry's other keys in `extra`.
pub(super) fn sh(script: &str, extra: &str) -> HookSpec {
    let mut spec = hook(&format!("secrets = [\"x\"]\nexec = [\"/bin/sh\"]\n{extra}"));
    spec.exec = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    spec
}

pub(super) fn change(secret: &str, version: &str) -> Notice {
    Notice {
        secret: secret.into(),
        selector: "x".into(),
        old_version: None,
        new_version: version.into(),
        path: None,
    }
}

pub(super) fn counts(started: u64, succeeded: u64, failed: u64) -> HookCounts {
    HookCounts {
        started,
        succeeded,
        failed,
    }
}

pub(super) async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// The log lines of one test. Tests run on tokio's current-thread runtime, so the hooks'
/// tasks log on the thread that installed the subscriber.
#[derive(Clone, Default)]
pub(super) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub(super) fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        // tracing caches per log line whether anyone listens. While a single subscriber is
        // registered it asks only the current thread's, so a test without one that reaches a
        // hook's log line first would silence that line for every test. A second subscriber,
        // registered for the whole run and never used, makes it ask all of them.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| {
            tracing::Dispatch::new(
                tracing_subscriber::fmt()
                    .with_writer(std::io::sink)
                    .finish(),
            )
        });
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

pub(super) fn is_root() -> bool {
    let root = Uid::effective().is_root();
    if !root {
        eprintln!("skipped: needs root");
    }
    root
}

/// Gone, or a zombie left to a PID 1 that does not reap orphans.
pub(super) fn gone(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_err()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}
