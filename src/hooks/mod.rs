//! Change hooks: what runs when a watched secret changes upstream (a rotation), and how.
//!
//! `[[hook]]` entries ([`HookSpec`]) name the secrets they watch, as selectors kept as
//! written, and one action: a program (`exec`), a signal to a pid file's process or a systemd
//! unit (`signal` with `pid_file` or `unit`), or `systemctl reload` (`reload`). The change
//! detection decides which hook a change fires and calls [`Hooks::fire`]; this module
//! debounces, runs, times out and retries.
//!
//! A hook never sees a secret value: [`Notice`] holds names and version ids only, and a hook
//! that needs the value reads it like any other reader.

mod action;
mod pid_file;
mod reaper;
mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::error::{Error, Result};
use action::{Action, Identity};
use worker::{Hook, Queued};

pub use crate::settings::file::hook::{ActionSpec, HOOK_PATH, HookSpec};
pub use crate::watch::Notice;

/// A hook's attempts so far: each attempt counts as started, then as succeeded or failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookCounts {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// The wait before a failed hook's first retry.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

struct Slot {
    hook: Arc<Hook>,
    tx: UnboundedSender<Queued>,
    /// Taken by the first `fire`, which starts the hook's task: `Hooks::new` may run before
    /// the runtime exists.
    rx: Mutex<Option<UnboundedReceiver<Queued>>>,
}

/// The configured hooks, each with its own task. Cloning shares them; when the last clone
/// is dropped, the tasks end once their current run does.
#[derive(Clone)]
pub struct Hooks {
    specs: Arc<[HookSpec]>,
    slots: Arc<[Slot]>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").field("specs", &self.specs).finish()
    }
}

impl Hooks {
    /// Checks the entries again, resolves their users and checks that secretsfs may run
    /// hooks as them (only root may run a hook as another user).
    pub fn new(specs: &[HookSpec]) -> Result<Hooks> {
        Self::build(specs, INITIAL_BACKOFF)
    }

    /// As [`Hooks::new`], with a shorter wait before retries so tests need not sleep.
    #[cfg(test)]
    pub(crate) fn with_backoff(specs: &[HookSpec], initial: Duration) -> Result<Hooks> {
        Self::build(specs, initial)
    }

    fn build(specs: &[HookSpec], backoff: Duration) -> Result<Hooks> {
        let slots = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let action = resolve(spec)
                    .map_err(|why| Error::config(format!("{}: {why}", spec.label(i))))?;
                let (tx, rx) = mpsc::unbounded_channel();
                let hook = Hook {
                    name: spec.display_name(i),
                    action,
                    debounce: spec.debounce(),
                    retries: spec.retries(),
                    backoff,
                    started: AtomicU64::new(0),
                    succeeded: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                };
                Ok(Slot {
                    hook: Arc::new(hook),
                    tx,
                    rx: Mutex::new(Some(rx)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Hooks {
            specs: specs.into(),
            slots: slots.into(),
        })
    }

    pub fn specs(&self) -> &[HookSpec] {
        &self.specs
    }

    /// Non-blocking (call from a tokio runtime): queues `change` for hook `index`. Changes
    /// that arrive within the hook's debounce window of the first queued one fire one run:
    /// its environment describes the last change, and `SECRETSFS_CHANGED` lists every secret
    /// of the window (newline-separated, sorted, once each). A run never overlaps another run
    /// of the same hook: changes that arrive while it runs are queued for the next run.
    pub fn fire(&self, index: usize, change: Notice) {
        let Some(slot) = self.slots.get(index) else {
            tracing::error!(index, hooks = self.slots.len(), "no such hook to fire");
            return;
        };
        let mut rx = slot.rx.lock();
        if rx.is_some() {
            // Refused rather than panicking: a hook missed is better than a daemon gone.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::error!(hook = %slot.hook.name, "hook fired outside the runtime; not run");
                return;
            };
            if let Some(rx) = rx.take() {
                runtime.spawn(worker::work(slot.hook.clone(), rx));
            }
        }
        drop(rx);
        let queued = Queued {
            change,
            at: tokio::time::Instant::now(),
        };
        // Fails only once the task is gone, which it is not while `self` holds the sender.
        let _ = slot.tx.send(queued);
    }

    /// Attempts started, succeeded and failed so far by hook `index` (zero for no such hook).
    pub fn counts(&self, index: usize) -> HookCounts {
        self.slots
            .get(index)
            .map(|slot| slot.hook.counts())
            .unwrap_or_default()
    }
}

fn resolve(spec: &HookSpec) -> std::result::Result<Action, String> {
    let action = spec.check()?;
    let identity = spec.user.as_deref().map(Identity::resolve).transpose()?;
    Ok(Action {
        spec: action,
        identity,
        timeout: spec.timeout(),
    })
}
