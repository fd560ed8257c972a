//! The inode table (docs/ARCHITECTURE.md#read-paths): a number for every directory path and
//! for every version of every file the kernel holds.
//!
//! A version's bytes never change, so neither does a file's inode: each version of a file is
//! an inode of its own, with a fixed size, mtime and ctime, and its number is never reused for
//! other bytes. A lookup answers the inode of the version current at that moment; an open file
//! keeps its inode, so it reads one version, whole, to its close, and the page cache of an
//! inode can never hold bytes of two versions.
//!
//! The kernel counts its references (one per lookup it was answered) and returns them with
//! FORGET; an inode whose count drops to zero leaves the table. The current version of a path
//! keeps its number for a while even then (`dormant`): when the kernel revalidates an entry and
//! gets a new node id, it forgets that id and looks the name up again at once, and the same
//! (path, version) must answer the same number. The root is never forgotten.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use self::journal::{Journal, Record};
use secretsfs_core::cache::budget::{Budget, Member};
use secretsfs_core::engine::Resolved;
use secretsfs_core::selector::Selector;

pub mod journal;

pub const ROOT: u64 = 1;

/// How many forgotten current versions keep their number (no bytes) for a lookup to come.
const DORMANT_MAX: usize = 4096;

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory of secret names (the root, `prod`, ...).
    Dir,
    /// A file whose contents are what the selector names.
    File(Arc<Selector>),
    /// In the stages layout, a secret shown as a directory of its stage labels.
    SecretDir(Arc<str>),
    /// A template's rendering, by the template's path.
    Template(Arc<str>),
}

/// Which bytes a version is: its version id alone is not enough, because the file source
/// lets a user edit a value in place and keep its VersionId and date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub version_id: Arc<str>,
    len: u64,
    digest: u64,
}

impl Identity {
    pub fn of(resolved: &Resolved) -> Identity {
        let bytes = resolved.bytes();
        // SipHash with fixed keys: stable within the process, which is all a number needs.
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(bytes);
        Identity {
            version_id: Arc::from(resolved.secret.version_id.as_str()),
            len: bytes.len() as u64,
            digest: hasher.finish(),
        }
    }
}

/// One version of one file, fixed for the life of its inode.
#[derive(Debug)]
pub struct Version {
    pub identity: Identity,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// When this mount first saw the version: moves forward on every change, rollbacks too.
    pub ctime: SystemTime,
    /// The bytes, while the budget allows; else fetched again by version id.
    bytes: Mutex<Option<Arc<Resolved>>>,
    last_read: AtomicU64,
}

impl Version {
    /// The bytes if held.
    pub fn bytes(&self) -> Option<Arc<Resolved>> {
        self.bytes.lock().clone()
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub path: Arc<str>,
    pub kind: NodeKind,
    /// Set for files: the version this inode is.
    pub version: Option<Arc<Version>>,
}

#[derive(Debug)]
struct Entry {
    node: Node,
    lookups: u64,
}

/// The inode a path's current version has, even while the kernel holds none.
#[derive(Debug, Clone)]
struct Current {
    ino: u64,
    version: Arc<Version>,
}

#[derive(Debug)]
struct Table {
    by_ino: HashMap<u64, Entry>,
    dirs: HashMap<Arc<str>, u64>,
    files: HashMap<Arc<str>, Current>,
    /// Paths whose current version the kernel forgot, oldest first.
    dormant: VecDeque<(Arc<str>, u64)>,
    next: u64,
    /// The engine's budget, which the bytes versions hold are charged to.
    budget: Arc<Budget>,
    /// Where the table's changes are written for a process that takes over the mount.
    journal: Option<Journal>,
    /// Handle numbers below this may have been given to the kernel (journaled in blocks).
    handle_bound: u64,
    /// The versions holding their bytes, by address: what the budget chooses from. As few as
    /// the budget allows, however many inodes the kernel holds (every file of a large
    /// account after `find | xargs cat`), so that each fetch does not scan them all.
    held: HashMap<usize, Arc<Version>>,
}

#[derive(Debug)]
pub struct Inodes {
    table: RwLock<Table>,
    budget: Arc<Budget>,
    /// The table's `handle_bound`, readable without its lock.
    handles_journaled: AtomicU64,
}

impl Inodes {
    /// An empty table whose versions' bytes count against `budget` (the engine's), which may
    /// release the least recently read of them.
    pub fn new(budget: Arc<Budget>) -> Arc<Self> {
        let root = Node {
            path: Arc::from(""),
            kind: NodeKind::Dir,
            version: None,
        };
        let mut by_ino = HashMap::new();
        let mut dirs = HashMap::new();
        dirs.insert(root.path.clone(), ROOT);
        by_ino.insert(
            ROOT,
            Entry {
                node: root,
                lookups: 1,
            },
        );
        let inodes = Arc::new(Inodes {
            table: RwLock::new(Table {
                by_ino,
                dirs,
                files: HashMap::new(),
                dormant: VecDeque::new(),
                next: ROOT + 1,
                budget: budget.clone(),
                journal: None,
                handle_bound: 0,
                held: HashMap::new(),
            }),
            budget: budget.clone(),
            handles_journaled: AtomicU64::new(0),
        });
        budget.join(Arc::downgrade(&inodes) as std::sync::Weak<dyn Member>);
        inodes
    }

    pub fn get(&self, ino: u64) -> Option<Node> {
        self.table.read().by_ino.get(&ino).map(|e| e.node.clone())
    }

    /// The inode of the directory (or stage directory) at `path`, counting one more kernel
    /// reference to it. A path that changed kind gets a new number.
    pub fn intern_dir(&self, path: &str, kind: NodeKind) -> u64 {
        let mut table = self.table.write();
        table.files.remove(path);
        if let Some(&ino) = table.dirs.get(path) {
            let entry = table.by_ino.get_mut(&ino).expect("tables agree");
            if entry.node.kind == kind {
                entry.lookups += 1;
                table.log(Record::Ref(ino));
                return ino;
            }
            // Replaced: the old number stays valid for the references the kernel still holds.
            table.dirs.remove(path);
        }
        let ino = table.take_number();
        let path: Arc<str> = Arc::from(path);
        table.dirs.insert(path.clone(), ino);
        table.by_ino.insert(
            ino,
            Entry {
                node: Node {
                    path,
                    kind,
                    version: None,
                },
                lookups: 1,
            },
        );
        table.log_node(ino);
        ino
    }

    /// The inode of the version `resolved` of the file at `path`, counting one more kernel
    /// reference: the path's current inode when it is this version, else a new one, which
    /// becomes the current.
    pub fn intern_file(
        &self,
        path: &str,
        selector: &Selector,
        resolved: &Arc<Resolved>,
    ) -> (u64, Node) {
        self.intern_version(path, NodeKind::File(Arc::new(selector.clone())), resolved)
    }

    /// Like [`Inodes::intern_file`], for any kind of file (a template's rendering).
    pub fn intern_version(
        &self,
        path: &str,
        kind: NodeKind,
        resolved: &Arc<Resolved>,
    ) -> (u64, Node) {
        let identity = Identity::of(resolved);
        let mut table = self.table.write();
        table.dirs.remove(path);
        let current = table
            .files
            .get(path)
            .filter(|c| c.version.identity == identity)
            .cloned();
        let (ino, version) = match current {
            Some(current) => (current.ino, current.version),
            None => {
                let version = Arc::new(Version {
                    identity,
                    size: resolved.bytes().len() as u64,
                    mtime: resolved.secret.created,
                    ctime: SystemTime::now(),
                    bytes: Mutex::new(None),
                    last_read: AtomicU64::new(0),
                });
                let ino = table.take_number();
                let path: Arc<str> = Arc::from(path);
                let replaced = table.files.insert(
                    path,
                    Current {
                        ino,
                        version: version.clone(),
                    },
                );
                if let Some(old) = replaced
                    && !table.by_ino.contains_key(&old.ino)
                {
                    table.release_bytes(&old.version);
                }
                (ino, version)
            }
        };
        let stamp = self.budget.stamp();
        table.hold_bytes(&version, resolved, stamp);
        let node = match table.by_ino.get_mut(&ino) {
            Some(entry) => {
                entry.lookups += 1;
                let node = entry.node.clone();
                table.log(Record::Ref(ino));
                node
            }
            None => {
                let node = Node {
                    path: Arc::from(path),
                    kind,
                    version: Some(version),
                };
                table.by_ino.insert(
                    ino,
                    Entry {
                        node: node.clone(),
                        lookups: 1,
                    },
                );
                table.log_node(ino);
                node
            }
        };
        drop(table);
        self.budget.enforce(stamp);
        (ino, node)
    }

    /// Gives `version` its bytes again (fetched anew by version id after the budget dropped
    /// them), and counts a read for the budget's order.
    pub fn restore_bytes(&self, version: &Arc<Version>, resolved: &Arc<Resolved>) {
        let stamp = self.budget.stamp();
        self.table.write().hold_bytes(version, resolved, stamp);
        self.budget.enforce(stamp);
    }

    /// Counts a read of `version`, for the budget to drop the least recently read first.
    pub fn touch(&self, version: &Version) {
        version.last_read.store(self.budget.stamp(), Relaxed);
    }

    /// The inode the kernel would be told of for `path` in a listing, without counting a
    /// reference (readdir's entries are not counted).
    pub fn peek(&self, path: &str) -> Option<u64> {
        let table = self.table.read();
        let ino = table
            .dirs
            .get(path)
            .copied()
            .or_else(|| table.files.get(path).map(|c| c.ino))?;
        table.by_ino.contains_key(&ino).then_some(ino)
    }

    /// The kernel dropped `n` references.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let mut table = self.table.write();
        let Some(entry) = table.by_ino.get_mut(&ino) else {
            return;
        };
        entry.lookups = entry.lookups.saturating_sub(n);
        let held = entry.lookups > 0;
        table.log(Record::Forget(ino, n));
        if held {
            return;
        }
        let node = table.by_ino.remove(&ino).expect("just seen").node;
        if table.dirs.get(&node.path) == Some(&ino) {
            table.dirs.remove(&node.path);
        }
        let Some(version) = node.version else {
            return;
        };
        match table.files.get(&node.path) {
            Some(current) if current.ino == ino => {
                // Kept without its bytes: a lookup that comes back restores them.
                table.release_bytes(&version);
                table.dormant.push_back((node.path, ino));
                while table.dormant.len() > DORMANT_MAX {
                    let (path, ino) = table.dormant.pop_front().expect("not empty");
                    let still_dormant = table.files.get(&path).is_some_and(|c| c.ino == ino)
                        && !table.by_ino.contains_key(&ino);
                    if still_dormant {
                        table.files.remove(&path);
                    }
                }
            }
            _ => table.release_bytes(&version),
        }
    }

    /// Every inode the kernel holds below the root, with its parent's inode and its name,
    /// for telling the kernel to drop what it caches of them.
    pub fn held_entries(&self) -> Vec<(u64, String, u64)> {
        self.held_entries_where(|_| true)
    }

    /// The entries the kernel holds of one secret's files (its stage files too), for telling
    /// the kernel to look them up again when the secret changes.
    pub fn held_entries_of(&self, secret: &str) -> Vec<(u64, String, u64)> {
        self.held_entries_where(|kind| match kind {
            NodeKind::File(selector) => selector.secret_id == secret,
            NodeKind::SecretDir(name) => &**name == secret,
            NodeKind::Dir | NodeKind::Template(_) => false,
        })
    }

    /// The entries the kernel holds of the nodes `which` picks.
    pub fn held_entries_where(&self, which: impl Fn(&NodeKind) -> bool) -> Vec<(u64, String, u64)> {
        let table = self.table.read();
        table
            .by_ino
            .iter()
            .filter(|(ino, entry)| **ino != ROOT && which(&entry.node.kind))
            .filter_map(|(ino, entry)| {
                let path = &entry.node.path;
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                let parent_ino = table.dirs.get(parent)?;
                Some((*parent_ino, name.to_owned(), *ino))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.table.read().by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of values the inodes hold between them.
    pub fn held_bytes(&self) -> usize {
        self.table
            .read()
            .held
            .values()
            .filter_map(|v| v.bytes())
            .map(|r| r.bytes().len())
            .sum()
    }
}

impl Table {
    fn log_node(&mut self, ino: u64) {
        if self.journal.is_some()
            && let Some(saved) = self.by_ino.get(&ino).map(|e| journal::saved(ino, e))
        {
            self.log(Record::Node(saved));
        }
    }

    fn log(&mut self, record: Record) {
        let Some(mut journal) = self.journal.take() else {
            return;
        };
        journal.append(&record);
        if journal.wants_compaction()
            && let Err(e) = journal.compact(self.snapshot())
        {
            journal.break_with(&e);
        }
        self.journal = Some(journal);
    }

    fn take_number(&mut self) -> u64 {
        let ino = self.next;
        self.next += 1;
        ino
    }

    fn hold_bytes(&mut self, version: &Arc<Version>, resolved: &Arc<Resolved>, stamp: u64) {
        version.last_read.store(stamp, Relaxed);
        self.held
            .insert(Arc::as_ptr(version) as usize, version.clone());
        // Replaced even when held: the newer copy carries the newer freshness.
        let mut bytes = version.bytes.lock();
        let before = bytes
            .replace(resolved.clone())
            .map_or(0, |old| old.bytes().len());
        self.budget.recharge(before, resolved.bytes().len());
    }

    fn release_bytes(&mut self, version: &Version) {
        self.held.remove(&(std::ptr::from_ref(version) as usize));
        if let Some(dropped) = version.bytes.lock().take() {
            self.budget.recharge(dropped.bytes().len(), 0);
        }
    }
}

impl Inodes {
    /// The held version least recently read, other than the one stamped `keep`.
    fn oldest_held(&self, keep: u64) -> Option<Arc<Version>> {
        self.table
            .read()
            .held
            .values()
            .filter(|v| v.last_read.load(Relaxed) != keep)
            .min_by_key(|v| v.last_read.load(Relaxed))
            .cloned()
    }
}

/// The budget may drop a version's bytes: they are fetched again by version id if read.
impl Member for Inodes {
    fn oldest(&self, keep: u64) -> Option<u64> {
        self.oldest_held(keep).map(|v| v.last_read.load(Relaxed))
    }

    fn release(&self, stamp: u64) -> bool {
        let mut table = self.table.write();
        let version = table
            .held
            .values()
            .find(|v| v.last_read.load(Relaxed) == stamp)
            .cloned();
        match version {
            Some(version) if version.bytes.lock().is_some() => {
                table.release_bytes(&version);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
