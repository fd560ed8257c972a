//! The file system's semantics, as async operations that know nothing of FUSE: what a lookup
//! finds, what a file presents, who may see it. The adapter only translates requests into
//! these calls and their results into replies, so all of this is testable without a mount.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::inodes::{Inodes, Node, NodeKind};
use super::namespace::{EntryKind, Layout, Namespace, Tree, join, valid_component};
use super::templates::Templates;
use secretsfs_core::audit::{Access, Decision, Front};
use secretsfs_core::caller::Caller;
use secretsfs_core::engine::{Engine, Resolved};
use secretsfs_core::error::ErrorKind;
use secretsfs_core::policy::{self, SharedPolicy};
use secretsfs_core::secrets_list::SecretsList;
use secretsfs_core::selector::Selector;
use secretsfs_core::source::SecretListing;

/// The inode number readdir gives entries the kernel holds no inode for (libfuse's value).
pub const UNKNOWN_INO: u64 = 0xffff_ffff;
/// A lookup in a directory listed this recently is taken for `ls -l` or `find`: the values of
/// the whole directory are fetched in batches instead of one call per file.
const LISTING_HINT: Duration = Duration::from_secs(10);
/// The most values fetched in batches ahead of an `ls -l` (5 BatchGetSecretValue calls).
const PREFETCH_WINDOW: usize = 100;
/// Directory attributes are re-asked this often when no listing says better.
const DIR_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What a file or directory presents, and for how long the kernel may keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// How long the kernel may keep the attributes.
    pub ttl: Duration,
    /// How long it may keep the name's entry: `ttl`, but none for a file whose access the
    /// presented mode cannot express (a template), so that every path walk asks again.
    pub entry_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub name: String,
    pub kind: Kind,
}

pub use error::{FsError, FsResult};

/// A tree, the listing it was built from, and until when that listing is fresh.
type BuiltTree = (Arc<Vec<SecretListing>>, Arc<Tree>, Instant);

/// One audit record of the mount: the policy's answer, the version served if any, and why
/// nothing was (denied, or a failure to fetch after access was allowed).
fn audit(caller: &Caller, selector: &str, served: Option<&Resolved>, reason: Option<&str>) {
    Access {
        front: Front::Mount,
        uid: Some(caller.uid),
        pid: caller.pid,
        selector,
        decision: if served.is_none() && reason == Some(DENIED) {
            Decision::Denied
        } else {
            Decision::Allowed
        },
        version: served.map(|r| r.secret.version_id.as_str()),
        stale: served.is_some_and(|r| r.stale),
        reason,
    }
    .log();
}

const DENIED: &str = "denied by policy";

/// The mounted file system: the kernel's inodes and open handles over the shared engine, each
/// request judged by the policy.
pub struct SecretsFs {
    engine: Arc<Engine>,
    policy: SharedPolicy,
    namespace: Namespace,
    kernel_cache: bool,
    inodes: Arc<Inodes>,
    mounted_at: SystemTime,
    /// The tree built from the listing it came from, rebuilt when the listing changes.
    tree: Mutex<Option<BuiltTree>>,
    /// When ListSecrets was last refused: retried only after the listing TTL, so a role
    /// without the permission does not pay a refused call on every `ls`.
    listing_refused_at: Mutex<Option<Instant>>,
    listed: Mutex<HashMap<String, Instant>>,
    handles: Mutex<HashMap<u64, Arc<Resolved>>>,
    /// Each open directory's listing, taken at its first readdir, so that a listing read in
    /// several calls neither skips nor repeats a name when the listing changes between them.
    dir_handles: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_handle: AtomicU64,
    /// The config file's `secrets` list: when set, exactly these are presented.
    only: Option<SecretsList>,
    /// The tree of the list's exact names, built once: it needs no listing.
    only_tree: std::sync::OnceLock<Arc<Tree>>,
    /// The config file's templates, files of their own beside the secrets.
    templates: Arc<Templates>,
    /// Per uid, how many more names not in the listing may be asked for upstream.
    misses: misses::MissBudget,
}

impl SecretsFs {
    pub fn new(
        engine: Arc<Engine>,
        policy: SharedPolicy,
        namespace: Namespace,
        kernel_cache: bool,
    ) -> Self {
        // Versions the kernel still holds count against the cache's own budget.
        let inodes = Inodes::new(engine.budget().clone());
        SecretsFs {
            engine,
            policy,
            namespace,
            kernel_cache,
            inodes,
            mounted_at: SystemTime::now(),
            tree: Mutex::new(None),
            listing_refused_at: Mutex::new(None),
            listed: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            only: None,
            only_tree: std::sync::OnceLock::new(),
            templates: Arc::default(),
            misses: Default::default(),
        }
    }

    /// A number for a new open file or directory, never one the kernel may still hold from a
    /// process this one took over from.
    fn new_handle(&self) -> u64 {
        let fh = self
            .next_handle
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inodes.note_handle(fh);
        fh
    }

    /// Journals the kernel's inodes from now on, for a process that may take over the mount.
    pub fn start_journal(&self) -> std::io::Result<()> {
        self.inodes.start_journal()
    }

    /// Answers the kernel's inode and handle numbers as the process that journaled them in
    /// `slots` did, before serving a connection taken over from it.
    pub fn resume_journal(&self, slots: [std::os::fd::OwnedFd; 2]) -> std::io::Result<()> {
        let free = self.inodes.resume_journal(slots)?;
        self.next_handle
            .fetch_max(free, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Copies of the journal's memory files, for the file descriptor store.
    pub fn journal_fds(&self) -> Option<std::io::Result<[std::os::fd::OwnedFd; 2]>> {
        self.inodes.journal_fds()
    }

    /// Shows these templates at their paths.
    pub fn with_templates(mut self, templates: Arc<Templates>) -> Self {
        self.templates = templates;
        self
    }

    /// Presents exactly the names of `list` (the config file's `secrets`), and no others.
    pub fn presenting_only(mut self, list: Option<SecretsList>) -> Self {
        self.only = list;
        self
    }

    /// The tree of the list's exact names.
    fn exact_names_tree(&self, only: &SecretsList) -> Arc<Tree> {
        self.only_tree
            .get_or_init(|| Arc::new(Tree::build(&self.namespace, &only.presented(&[]))))
            .clone()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn kernel_cache(&self) -> bool {
        self.kernel_cache
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Checks the policy for reading `selector`, before anything goes upstream; a denial is
    /// audited here, an allowed access once its value is known.
    async fn may_read(&self, caller: &Caller, selector: &Selector) -> FsResult<()> {
        if self.may_read_secret(caller, &selector.secret_id).await {
            return Ok(());
        }
        audit(caller, &selector.to_string(), None, Some(DENIED));
        Err(Errno::EACCES.into())
    }

    /// Whether the policy lets `caller` read the secret `name`. Pending only while the
    /// caller's groups are looked up, which happens on the runtime, off a FUSE worker.
    async fn may_read_secret(&self, caller: &Caller, name: &str) -> bool {
        let attrs = self.policy.load().file_attrs(name);
        policy::permits(caller, &attrs, policy::READ).await
    }

    /// The directory tree of the current listing; `None` when there is none to be had (e.g.
    /// ListSecrets is denied), in which case names are looked up one by one.
    async fn tree(&self) -> Option<(Arc<Tree>, Instant)> {
        let list_ttl = self.engine.config().list_ttl;
        if let Some(only) = self.only.as_ref().filter(|o| !o.has_globs()) {
            return Some((self.exact_names_tree(only), Instant::now() + list_ttl));
        }
        if self
            .listing_refused_at
            .lock()
            .is_some_and(|at| at.elapsed() < list_ttl)
        {
            return None;
        }
        // The tree is held here whatever the cache does with its listing: while the listing is
        // fresh, the tree stands, even where the cache's byte budget could not keep the
        // listing (a large account); asking the cache would list the whole account again.
        if let Some((_, tree, fresh_until)) = self.tree.lock().as_ref()
            && Instant::now() < *fresh_until
        {
            return Some((tree.clone(), *fresh_until));
        }
        let prefix = Some(self.namespace.prefix()).filter(|p| !p.is_empty());
        let listing = match self.engine.list(prefix).await {
            Ok(served) => served,
            Err(err) if err.kind() == ErrorKind::AccessDenied => {
                if self
                    .listing_refused_at
                    .lock()
                    .replace(Instant::now())
                    .is_none()
                {
                    tracing::warn!(target: "secretsfs::fuse::fs", error = %err,
                        "ListSecrets is denied: directories list nothing, but secrets can still be read by name");
                }
                // The list's exact names need no listing; its globs do.
                let only = self.only.as_ref()?;
                return Some((self.exact_names_tree(only), Instant::now() + list_ttl));
            }
            // Logged by the cache, once a minute at most, with what readers got.
            Err(_) => return None,
        };
        let mut cached = self.tree.lock();
        if let Some((source, tree, fresh_until)) = cached.as_mut()
            && Arc::ptr_eq(source, &listing.value)
        {
            *fresh_until = listing.fresh_until;
            return Some((tree.clone(), listing.fresh_until));
        }
        let tree = match &self.only {
            Some(only) => Tree::build(&self.namespace, &only.presented(&listing.value)),
            None => Tree::build(&self.namespace, &listing.value),
        };
        let tree = Arc::new(tree);
        *cached = Some((listing.value.clone(), tree.clone(), listing.fresh_until));
        Some((tree, listing.fresh_until))
    }

    pub async fn lookup(&self, caller: &Caller, parent: u64, name: &str) -> FsResult<Attr> {
        let node = self.inodes.get(parent).ok_or(Errno::ENOENT)?;
        if !valid_component(name) {
            return Err(Errno::ENOENT.into());
        }
        let path = join(&node.path, name);
        match node.kind {
            NodeKind::File(_) | NodeKind::Template(_) => Err(Errno::ENOTDIR.into()),
            NodeKind::SecretDir(secret) => {
                let selector = Selector::of_stage(&secret, name).map_err(|_| Errno::ENOENT)?;
                self.lookup_file(caller, &path, selector, None).await
            }
            NodeKind::Dir => {
                match self.templates.entry(&path) {
                    Some(EntryKind::Secret) => return self.lookup_template(caller, &path).await,
                    Some(EntryKind::Dir) => {
                        let ino = self.inodes.intern_dir(&path, NodeKind::Dir);
                        return Ok(self.dir_attr(ino, &path, None));
                    }
                    None => {}
                }
                if let Some(parsed) = self.namespace.selector_in(&node.path, name) {
                    let selector = parsed.map_err(|_| Errno::ENOENT)?;
                    return self.lookup_file(caller, &path, selector, None).await;
                }
                let secret = self.namespace.secret_name(&path);
                // The one rule for names (as HTTP and `get` apply it): a name Secrets Manager
                // would refuse is not looked up, nor asked for.
                if secretsfs_core::selector::validate_name(&secret).is_err() {
                    return Err(Errno::ENOENT.into());
                }
                let tree = self.tree().await;
                match tree.as_ref().and_then(|(t, _)| t.entry(&path)) {
                    Some(EntryKind::Dir) => {
                        let ino = self.inodes.intern_dir(&path, NodeKind::Dir);
                        Ok(self.dir_attr(ino, &path, tree.map(|(_, until)| until)))
                    }
                    Some(EntryKind::Secret) => match self.namespace.layout() {
                        Layout::Flat => {
                            let hint = tree.map(|(t, _)| (t, node.path.to_string()));
                            self.lookup_file(caller, &path, Selector::whole(secret), hint)
                                .await
                        }
                        Layout::Stages => self.lookup_secret_dir(caller, &path, secret).await,
                    },
                    None => {
                        self.lookup_unlisted(caller, &path, secret, tree.is_some())
                            .await
                    }
                }
            }
        }
    }

    async fn lookup_file(
        &self,
        caller: &Caller,
        path: &str,
        selector: Selector,
        listing: Option<(Arc<Tree>, String)>,
    ) -> FsResult<Attr> {
        self.may_read(caller, &selector).await?;
        let listed = listing.filter(|(_, dir)| self.listed_recently(dir));
        let resolved = match listed {
            Some((tree, _)) if self.engine.needs_fetch_current(&selector) => {
                let window = self.prefetch_window(caller, &tree, path).await;
                let (_, resolved) = tokio::join!(
                    self.engine.prefetch_current(&window),
                    self.engine.get(&selector)
                );
                resolved
            }
            _ => self.engine.get(&selector).await,
        }?;
        Ok(self.file_entry(path, &selector, resolved))
    }

    /// The entry of the file at `path` showing `resolved`: its version's inode.
    fn file_entry(&self, path: &str, selector: &Selector, resolved: Resolved) -> Attr {
        let resolved = Arc::new(resolved);
        let (ino, node) = self.inodes.intern_file(path, selector, &resolved);
        self.file_attr(ino, &selector.secret_id, &node, resolved.fresh_until)
    }

    /// The entry of the directory of `secret`'s stages at `path` (the stages layout).
    fn secret_dir_entry(&self, path: &str, secret: &str) -> Attr {
        let ino = self
            .inodes
            .intern_dir(path, NodeKind::SecretDir(Arc::from(secret)));
        self.secret_dir_attr(ino, secret)
    }

    /// The secrets to fetch in batches along with the one at `path`, when a listing (`ls -l`)
    /// is being looked up name by name: it and the names after it in the directory, as many
    /// as the cache can hold beside them, that the caller may read. A window, not the whole
    /// directory: its work does not grow with the directory, and its values are not evicted
    /// by their own siblings before they are read. Asked only when `path`'s value is not
    /// cached, so a directory costs about one window per [`PREFETCH_WINDOW`] names.
    async fn prefetch_window(&self, caller: &Caller, tree: &Tree, path: &str) -> Vec<String> {
        let size = PREFETCH_WINDOW
            .min(self.engine.config().max_entries / 2)
            .max(1);
        let mut window = Vec::with_capacity(size);
        for sibling in std::iter::once(path.to_owned()).chain(tree.secrets_after(path, size - 1)) {
            let name = self.namespace.secret_name(&sibling);
            if self.may_read_secret(caller, &name).await {
                window.push(name);
            }
        }
        window
    }

    /// A name the listing does not have: the listing is denied, or the name is newer than it.
    /// It is asked for by name: a secret is a file (a directory of stages in that layout).
    /// Otherwise (not found, or denied by Secrets Manager, as a role scoped to named secrets
    /// answers for `prod` when it may read `prod/db`): with a fresh listing, a miss after that
    /// one call (a directory would be in the listing; one newer than it shows at the next,
    /// as in `ls`); where listing is denied, a directory that lists nothing, so that paths
    /// below it can be looked up. The policy is checked before any call, and each uid has a
    /// budget of misses (`misses.rs`).
    async fn lookup_unlisted(
        &self,
        caller: &Caller,
        path: &str,
        secret: String,
        listing_allowed: bool,
    ) -> FsResult<Attr> {
        if self.only.is_some() {
            // The list says what the mount presents.
            return Err(Errno::ENOENT.into());
        }
        if !self.may_read_secret(caller, &secret).await {
            // Not readable as a secret: only a directory could be meant, and only where no
            // listing says there is none.
            return if listing_allowed {
                audit(caller, &secret, None, Some(DENIED));
                Err(Errno::EACCES.into())
            } else {
                Ok(self.empty_dir_entry(path))
            };
        }
        if !self.misses.may_ask(caller.uid) {
            return Err(Errno::ENOENT.into());
        }
        let selector = Selector::whole(secret.as_str());
        let found = match self.namespace.layout() {
            Layout::Flat => self.engine.get(&selector).await.map(Some),
            Layout::Stages => self.engine.describe(&secret).await.map(|_| None),
        };
        match found {
            Ok(Some(resolved)) => Ok(self.file_entry(path, &selector, resolved)),
            Ok(None) => Ok(self.secret_dir_entry(path, &secret)),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AccessDenied) => {
                self.misses.missed(caller.uid);
                if listing_allowed {
                    Err(Errno::ENOENT.into())
                } else {
                    Ok(self.empty_dir_entry(path))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn empty_dir_entry(&self, path: &str) -> Attr {
        let ino = self.inodes.intern_dir(path, NodeKind::Dir);
        let until = Instant::now() + self.engine.config().list_ttl;
        self.dir_attr(ino, path, Some(until))
    }

    async fn lookup_secret_dir(
        &self,
        caller: &Caller,
        path: &str,
        secret: String,
    ) -> FsResult<Attr> {
        self.may_read(caller, &Selector::whole(secret.as_str()))
            .await?;
        self.engine.describe(&secret).await?;
        Ok(self.secret_dir_entry(path, &secret))
    }

    fn listed_recently(&self, dir: &str) -> bool {
        self.listed
            .lock()
            .get(dir)
            .is_some_and(|at| at.elapsed() < LISTING_HINT)
    }

    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let node = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        match node.kind {
            NodeKind::Dir => Ok(self.dir_attr(ino, &node.path, None)),
            NodeKind::SecretDir(secret) => Ok(self.secret_dir_attr(ino, &secret)),
            NodeKind::File(ref selector) => {
                // An inode is one version: its attributes are fixed, nothing to fetch.
                let fresh_until = node
                    .version
                    .as_ref()
                    .and_then(|v| v.bytes())
                    .map_or_else(Instant::now, |r| r.fresh_until);
                Ok(self.file_attr(ino, &selector.secret_id, &node, fresh_until))
            }
            NodeKind::Template(ref path) => {
                let template = self.templates.get(path).ok_or(Errno::ENOENT)?;
                let fresh_until = node
                    .version
                    .as_ref()
                    .and_then(|v| v.bytes())
                    .map_or_else(Instant::now, |r| r.fresh_until);
                Ok(self.template_attr(ino, template, &node, fresh_until))
            }
        }
    }

    fn file_attr(&self, ino: u64, secret: &str, node: &Node, fresh_until: Instant) -> Attr {
        let attrs = self.policy.load().file_attrs(secret);
        self.file_attr_as(ino, attrs, node, fresh_until)
    }

    fn file_attr_as(
        &self,
        ino: u64,
        attrs: policy::Attrs,
        node: &Node,
        fresh_until: Instant,
    ) -> Attr {
        let version = node.version.as_ref().expect("a file node has a version");
        let ttl = fresh_until.saturating_duration_since(Instant::now());
        Attr {
            ino,
            kind: Kind::File,
            size: version.size,
            mtime: version.mtime.unwrap_or(self.mounted_at),
            ctime: version.ctime,
            uid: attrs.uid,
            gid: attrs.gid,
            mode: attrs.mode.0,
            ttl,
            entry_ttl: ttl,
        }
    }

    fn dir_attr(&self, ino: u64, path: &str, fresh_until: Option<Instant>) -> Attr {
        let name = self.namespace.secret_name(path);
        let attrs = self.policy.load().dir_attrs(name.trim_end_matches('/'));
        let ttl = fresh_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(DIR_TTL);
        Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            mtime: self.mounted_at,
            ctime: self.mounted_at,
            uid: attrs.uid,
            gid: attrs.gid,
            mode: attrs.mode.0,
            ttl,
            entry_ttl: ttl,
        }
    }

    fn secret_dir_attr(&self, ino: u64, secret: &str) -> Attr {
        let owner = self.policy.load().file_attrs(secret);
        Attr {
            uid: owner.uid,
            gid: owner.gid,
            mode: self.policy.load().dir_attrs(secret).mode.0,
            ..self.dir_attr(ino, "", None)
        }
    }

    /// Every entry the kernel may cache (parent inode, name, inode), for invalidation.
    pub fn held_entries(&self) -> Vec<(u64, String, u64)> {
        self.inodes.held_entries()
    }

    /// The entries the kernel may cache of one secret's files, and of the templates that
    /// read it.
    pub fn held_entries_of(&self, secret: &str) -> Vec<(u64, String, u64)> {
        let mut entries = self.inodes.held_entries_of(secret);
        if !self.templates.is_empty() {
            entries.extend(self.inodes.held_entries_where(|kind| {
                match kind {
                    NodeKind::Template(path) => self
                        .templates
                        .get(path)
                        .is_some_and(|t| t.template.inputs().iter().any(|i| i.secret_id == secret)),
                    _ => false,
                }
            }));
        }
        entries
    }

    /// Bytes of values that inodes hold (old versions the kernel still holds included).
    pub fn held_bytes(&self) -> usize {
        self.inodes.held_bytes()
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }
}

mod error;
mod listing;
mod misses;
mod reading;
mod templated;

#[cfg(test)]
mod tests;
