//! One task per hook: collects changes for the debounce window, runs the action, retries with
//! backoff. Being one task is what keeps two runs of a hook from overlapping: changes that
//! arrive during a run wait in the channel for the next one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use super::HookCounts;
use super::Notice;
use super::action::{Action, Outcome, RunEnv};

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A change as queued by `Hooks::fire`, stamped so the debounce window counts from its
/// arrival, not from when the task got to it.
#[derive(Debug)]
pub(super) struct Queued {
    pub change: Notice,
    pub at: Instant,
}

pub(super) struct Hook {
    pub name: String,
    pub action: Action,
    pub debounce: Duration,
    pub retries: u32,
    /// The wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

impl Hook {
    pub fn counts(&self) -> HookCounts {
        HookCounts {
            started: self.started.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            failed: self.failed.load(Relaxed),
        }
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!("secretsfs_hook_runs_total", "hook" => self.name.clone(), "outcome" => outcome)
            .increment(1);
    }
}

/// The changes one run answers for.
struct Window {
    last: Notice,
    changed: BTreeSet<String>,
    deadline: Instant,
}

impl Window {
    fn new(first: Queued, debounce: Duration, carried: BTreeSet<String>) -> Self {
        let mut window = Window {
            deadline: first.at + debounce,
            changed: carried,
            last: first.change,
        };
        window.changed.insert(window.last.secret.clone());
        window
    }

    fn add(&mut self, queued: Queued) {
        self.changed.insert(queued.change.secret.clone());
        self.last = queued.change;
    }

    /// Waits out the window, taking in what arrives, then whatever was queued already.
    async fn collect(&mut self, rx: &mut UnboundedReceiver<Queued>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(self.deadline) => break,
                queued = rx.recv() => match queued {
                    Some(queued) => self.add(queued),
                    None => break,
                },
            }
        }
        while let Ok(queued) = rx.try_recv() {
            self.add(queued);
        }
    }

    fn env(&self, hook: &str) -> RunEnv {
        let c = &self.last;
        let mut vars: Vec<(&'static str, std::ffi::OsString)> = vec![
            ("SECRETSFS_HOOK", hook.into()),
            ("SECRETSFS_SECRET", c.secret.clone().into()),
            ("SECRETSFS_SELECTOR", c.selector.clone().into()),
            (
                "SECRETSFS_OLD_VERSION",
                c.old_version.clone().unwrap_or_default().into(),
            ),
            ("SECRETSFS_NEW_VERSION", c.new_version.clone().into()),
        ];
        if let Some(path) = &c.path {
            vars.push(("SECRETSFS_PATH", path.clone().into()));
        }
        let changed: Vec<&str> = self.changed.iter().map(String::as_str).collect();
        vars.push(("SECRETSFS_CHANGED", changed.join("\n").into()));
        RunEnv { vars }
    }
}

pub(super) async fn work(hook: std::sync::Arc<Hook>, mut rx: UnboundedReceiver<Queued>) {
    let mut next: Option<Queued> = None;
    let mut carried = BTreeSet::new();
    loop {
        let first = match next.take() {
            Some(queued) => queued,
            None => match rx.recv().await {
                Some(queued) => queued,
                None => return,
            },
        };
        let mut window = Window::new(first, hook.debounce, std::mem::take(&mut carried));
        window.collect(&mut rx).await;
        if let Some((queued, changed)) = run(&hook, window, &mut rx).await {
            // The replaced run still owes the hook its secrets: the fresh one lists them too.
            next = Some(queued);
            carried = changed;
        }
    }
}

/// Runs the window's attempts. A change arriving while a retry waits ends this window: it is
/// returned with the names the window had, to start a fresh one.
async fn run(
    hook: &Hook,
    window: Window,
    rx: &mut UnboundedReceiver<Queued>,
) -> Option<(Queued, BTreeSet<String>)> {
    let env = window.env(&hook.name);
    let change = &window.last;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        hook.started.fetch_add(1, Relaxed);
        let began = Instant::now();
        let (cause, stderr, outcome) = match hook.action.run(&env).await {
            Outcome::Ok => {
                hook.succeeded.fetch_add(1, Relaxed);
                hook.count("ok");
                tracing::info!(
                    hook = %hook.name,
                    secret = %change.secret,
                    new_version = %change.new_version,
                    changed = window.changed.len(),
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    "hook ran"
                );
                return None;
            }
            Outcome::Failed { cause, stderr } => (cause, stderr, "failed"),
            Outcome::TimedOut { after, stderr } => (
                format!("timed out after {} s", after.as_secs()),
                stderr,
                "timeout",
            ),
        };
        hook.failed.fetch_add(1, Relaxed);
        hook.count(outcome);
        let stderr = stderr.unwrap_or_default();
        if attempt > hook.retries {
            tracing::warn!(hook = %hook.name, secret = %change.secret, cause = %cause,
                stderr = %stderr, attempt, "hook failed");
            tracing::error!(hook = %hook.name, secret = %change.secret, attempts = attempt,
                new_version = %change.new_version,
                "hook gave up after {attempt} attempt(s); it runs again on the next change");
            return None;
        }
        let delay = backoff(hook.backoff, attempt);
        tracing::warn!(hook = %hook.name, secret = %change.secret, cause = %cause,
            stderr = %stderr, attempt, retry_in_ms = delay.as_millis() as u64,
            "hook failed; retrying in {:.1} s", delay.as_secs_f64());
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        tokio::select! {
            _ = &mut sleep => {}
            queued = rx.recv() => match queued {
                Some(queued) => return Some((queued, window.changed)),
                // Hooks is gone (shutting down): the retry still runs.
                None => sleep.await,
            },
        }
    }
}

/// The wait after failed attempt `attempt` (1-based): `initial`, doubled each time, capped.
fn backoff(initial: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(1), 1), s(1));
        assert_eq!(backoff(s(1), 2), s(2));
        assert_eq!(backoff(s(1), 4), s(8));
        assert_eq!(backoff(s(1), 9), s(256));
        assert_eq!(backoff(s(1), 10), MAX_BACKOFF);
        assert_eq!(backoff(s(1), 100), MAX_BACKOFF);
    }
}
