//! Telling programs that a secret changed (docs/ARCHITECTURE.md#changes): the change hooks of
//! the config file and `secretsfs watch` both hand the engine what they watch and hear back,
//! through a [`Watcher`], which of their selectors saw a new value.
//!
//! The engine refreshes watched values ahead of expiry whether anyone reads them or not, so a
//! rotation is seen within the TTL. A change is what a selector shows changing: a new version
//! (or new bytes) of a whole secret, or a new value of one JSON key; a refresh that finds the
//! same version changes nothing. Before anything fires for a rotation, the front ends are made
//! to serve it (the mount drops the kernel's entries of the old version), so a program that
//! reloads on the notice reads the new value.

pub mod pattern;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

pub use pattern::{Seen, WatchPattern};

use crate::engine::{Engine, Landed};
use crate::selector::{Selector, VersionRef};

/// One selector of one group that saw a change, as a hook (or the child of `secretsfs watch`)
/// is told of it. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The secret's name as watched.
    pub secret: String,
    /// The selector that matched, as written in the config or on the command line.
    pub selector: String,
    pub old_version: Option<String>,
    pub new_version: String,
    /// The file in the mount, when there is a mount.
    pub path: Option<PathBuf>,
}

/// Where a group's notices go: a hook, or the child of `secretsfs watch`.
pub type Fire = Arc<dyn Fn(usize, Notice) + Send + Sync>;
/// The mount's path of a selector.
pub type PathOf = Arc<dyn Fn(&Selector) -> Option<PathBuf> + Send + Sync>;
/// What must happen before a rotation is told to anyone (the mount drops the kernel's entries
/// of the old version); run on the blocking pool and awaited.
pub type BeforeTelling = Arc<dyn Fn(&Landed) + Send + Sync>;

/// How long before the names of a watch without globs are handed to the engine again: never,
/// in practice.
const ONCE_IS_ENOUGH: Duration = Duration::from_secs(365 * 24 * 3600);

pub struct Watcher {
    engine: Arc<Engine>,
    groups: Vec<Vec<WatchPattern>>,
    /// (group, pattern, secret) -> what was last seen, and of which version.
    seen: HashMap<(usize, usize, String), (Seen, String)>,
    fire: Fire,
    path_of: Option<PathOf>,
    before: Option<BeforeTelling>,
    relist_every: Duration,
    /// Watched names found missing (at the first look, or new in a glob's listing since the
    /// last one): the first version that lands of one is a change, not what was there before.
    missing: HashSet<(String, VersionRef)>,
    /// The names handed to the engine last time; `None` before the first time.
    watched: Option<HashSet<(String, VersionRef)>>,
}

impl Watcher {
    /// Watches `groups` of patterns; a change seen by a pattern of group N is told to
    /// `fire(N, ...)`. Globs are matched against a listing taken every `relist_every`.
    pub fn new(
        engine: Arc<Engine>,
        groups: Vec<Vec<WatchPattern>>,
        relist_every: Duration,
        fire: Fire,
    ) -> Self {
        Watcher {
            engine,
            groups,
            seen: HashMap::new(),
            fire,
            path_of: None,
            before: None,
            relist_every,
            missing: HashSet::new(),
            watched: None,
        }
    }

    pub fn with_paths(mut self, path_of: PathOf) -> Self {
        self.path_of = Some(path_of);
        self
    }

    pub fn before_telling(mut self, before: BeforeTelling) -> Self {
        self.before = Some(before);
        self
    }

    /// Watches until the engine goes away.
    pub async fn run(mut self) {
        // Before anything is watched, so that the first fetch of each is heard.
        let mut changes = self.engine.changes();
        let globs = self
            .groups
            .iter()
            .flatten()
            .any(|p| p.exact_name().is_none());
        let mut relist = tokio::time::interval(self.relist_every);
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) => self.on_change(&change).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "change notices came faster than they were \
                            handled; comparing every watched value with the cache instead");
                        self.recheck().await;
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = relist.tick() => {
                    self.watch_names().await;
                    if !globs {
                        // Exact names need no listing: once is enough.
                        relist.reset_after(ONCE_IS_ENOUGH);
                    }
                }
            }
        }
    }

    /// Tells the engine which values to keep refreshed: the exact names, and the names a
    /// listing shows for each glob (a listing that fails keeps what the last one found).
    async fn watch_names(&mut self) {
        let mut keys: HashSet<(String, VersionRef)> = HashSet::new();
        for pattern in self.groups.iter().flatten() {
            if let Some(name) = pattern.exact_name() {
                keys.insert((name.to_owned(), pattern.version().clone()));
            }
        }
        for pattern in self.groups.iter().flatten() {
            let Some(prefix) = pattern.listing_prefix() else {
                continue;
            };
            let prefix = (!prefix.is_empty()).then_some(prefix);
            match self.engine.list(prefix).await {
                Ok(listing) => keys.extend(
                    listing
                        .value
                        .iter()
                        .filter(|l| pattern.matches(&l.name))
                        .map(|l| (l.name.clone(), pattern.version().clone())),
                ),
                Err(e) => {
                    // The listing cache logs the failure itself; this says what it costs.
                    tracing::warn!(pattern = %pattern.text, error = %e,
                        "a watched glob could not be listed; its names stay as last listed");
                    keys.extend(
                        self.seen
                            .keys()
                            .filter(|(_, _, name)| pattern.matches(name))
                            .map(|(_, _, name)| (name.clone(), pattern.version().clone())),
                    );
                }
            }
        }
        // What was seen of names no longer watched (gone from a glob's listing) is forgotten.
        let groups = &self.groups;
        self.seen.retain(|(group, index, name), _| {
            keys.contains(&(name.clone(), groups[*group][*index].version().clone()))
        });
        self.missing.retain(|key| keys.contains(key));
        match &self.watched {
            None => self.find_missing(&keys).await,
            // Names a glob lists now and did not before were created since.
            Some(before) => self
                .missing
                .extend(keys.iter().filter(|k| !before.contains(*k)).cloned()),
        }
        self.watched = Some(keys.clone());
        self.engine.watch(keys);
    }

    /// Asks once for every watched name (AWSCURRENT ones in batches, as the engine would
    /// anyway) and keeps those that do not exist yet in `missing`.
    async fn find_missing(&mut self, keys: &HashSet<(String, VersionRef)>) {
        let current: Vec<String> = keys
            .iter()
            .filter(|(_, version)| version.is_current())
            .map(|(name, _)| name.clone())
            .collect();
        self.engine.prefetch_current(&current).await;
        let engine = &self.engine;
        let looks = keys.iter().map(|key| async move {
            let found = engine.secret_value(&key.0, &key.1, false).await;
            let missing = matches!(&found, Err(e) if e.kind() == crate::error::ErrorKind::NotFound);
            missing.then(|| key.clone())
        });
        let missing = futures::future::join_all(looks).await;
        self.missing.extend(missing.into_iter().flatten());
    }

    async fn on_change(&mut self, change: &Arc<Landed>) {
        if change.is_rotation()
            && let Some(before) = self.before.clone()
        {
            let change = change.clone();
            let _ = tokio::task::spawn_blocking(move || before(&change)).await;
        }
        let appeared = self
            .missing
            .remove(&(change.secret_id.clone(), change.version.clone()));
        for (group, patterns) in self.groups.iter().enumerate() {
            for (index, pattern) in patterns.iter().enumerate() {
                if !pattern.matches(&change.secret_id) || pattern.version() != &change.version {
                    continue;
                }
                let now = pattern.seen_in(&change.value);
                let key = (group, index, change.secret_id.clone());
                let was = self.seen.get(&key).cloned().or_else(|| {
                    let previous = change.previous.as_ref()?;
                    Some((pattern.seen_in(previous), previous.version_id.clone()))
                });
                self.seen
                    .insert(key, (now.clone(), change.value.version_id.clone()));
                let old_version = match was {
                    Some((was, _)) if was == now => continue,
                    Some((_, old_version)) => Some(old_version),
                    // The first value of a name that did not exist is a change; the first
                    // of one that did is only what was there.
                    None if appeared => None,
                    None => continue,
                };
                let selector = pattern.selector_for(&change.secret_id);
                let noticed = Notice {
                    secret: change.secret_id.clone(),
                    selector: pattern.text.clone(),
                    old_version,
                    new_version: change.value.version_id.clone(),
                    path: self.path_of.as_ref().and_then(|path_of| path_of(&selector)),
                };
                tracing::info!(secret = %noticed.secret, selector = %noticed.selector,
                    old_version = noticed.old_version.as_deref().unwrap_or(""),
                    new_version = %noticed.new_version, "watched secret changed");
                (self.fire)(group, noticed);
            }
        }
    }

    /// After missed notices: what the cache holds now, compared with what was seen.
    async fn recheck(&mut self) {
        let secrets: HashSet<(String, VersionRef)> = self
            .seen
            .keys()
            .map(|(group, index, name)| {
                (name.clone(), self.groups[*group][*index].version().clone())
            })
            .collect();
        for (name, version) in secrets {
            let Ok(served) = self.engine.secret_value(&name, &version, false).await else {
                continue;
            };
            let change = Arc::new(Landed {
                secret_id: name,
                version,
                previous: None,
                value: served.value,
            });
            self.on_change(&change).await;
        }
    }
}

/// Stops a task when dropped, so that aborting the task that owns it stops both.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
