//! The inode table: a number for every path the kernel holds, stable while it holds it.
//!
//! The kernel counts its references (one per lookup it was answered) and returns them with
//! FORGET; a path whose count drops to zero leaves the table, so looking up arbitrary
//! selector names does not grow it without bound. The root is never forgotten.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::selector::Selector;

pub const ROOT: u64 = 1;

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory of secret names (the root, `prod`, ...).
    Dir,
    /// A file whose contents are what the selector names.
    File(Arc<Selector>),
    /// In the stages layout, a secret shown as a directory of its stage labels.
    SecretDir(Arc<str>),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub path: Arc<str>,
    pub kind: NodeKind,
}

#[derive(Debug)]
struct Entry {
    node: Node,
    lookups: u64,
    /// The version this file last showed, and when this mount first saw it: the ctime, which
    /// must move forward on every change, rollbacks included.
    seen: Option<(String, SystemTime)>,
}

#[derive(Debug)]
struct Table {
    by_ino: HashMap<u64, Entry>,
    by_path: HashMap<Arc<str>, u64>,
    next: u64,
}

#[derive(Debug)]
pub struct Inodes {
    table: RwLock<Table>,
}

impl Default for Inodes {
    fn default() -> Self {
        Self::new()
    }
}

impl Inodes {
    pub fn new() -> Self {
        let root = Node {
            path: Arc::from(""),
            kind: NodeKind::Dir,
        };
        let mut by_ino = HashMap::new();
        let mut by_path = HashMap::new();
        by_path.insert(root.path.clone(), ROOT);
        by_ino.insert(
            ROOT,
            Entry {
                node: root,
                lookups: 1,
                seen: None,
            },
        );
        Inodes {
            table: RwLock::new(Table {
                by_ino,
                by_path,
                next: ROOT + 1,
            }),
        }
    }

    pub fn get(&self, ino: u64) -> Option<Node> {
        self.table.read().by_ino.get(&ino).map(|e| e.node.clone())
    }

    /// The inode of `path`, counting one more kernel reference to it. A path that changed
    /// kind (a file became a directory) gets a new number.
    pub fn intern(&self, path: &str, kind: NodeKind) -> u64 {
        let mut table = self.table.write();
        if let Some(&ino) = table.by_path.get(path) {
            let entry = table.by_ino.get_mut(&ino).expect("tables agree");
            if entry.node.kind == kind {
                entry.lookups += 1;
                return ino;
            }
            // Replaced: the old number stays valid for the references the kernel still holds.
            table.by_path.remove(path);
        }
        let ino = table.next;
        table.next += 1;
        let path: Arc<str> = Arc::from(path);
        table.by_path.insert(path.clone(), ino);
        table.by_ino.insert(
            ino,
            Entry {
                node: Node { path, kind },
                lookups: 1,
                seen: None,
            },
        );
        ino
    }

    /// The inode of `path` if the kernel holds one, without counting a reference (for
    /// readdir, whose entries the kernel does not count).
    pub fn peek(&self, path: &str) -> Option<u64> {
        self.table.read().by_path.get(path).copied()
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
        if entry.lookups == 0 {
            let path = entry.node.path.clone();
            table.by_ino.remove(&ino);
            if table.by_path.get(&path) == Some(&ino) {
                table.by_path.remove(&path);
            }
        }
    }

    /// When this mount first saw `version_id` at `ino`; records it if new.
    pub fn first_seen(&self, ino: u64, version_id: &str) -> SystemTime {
        if let Some(Some((seen, at))) = self.table.read().by_ino.get(&ino).map(|e| &e.seen)
            && seen == version_id
        {
            return *at;
        }
        let now = SystemTime::now();
        if let Some(entry) = self.table.write().by_ino.get_mut(&ino) {
            match &entry.seen {
                Some((seen, at)) if seen == version_id => return *at,
                _ => entry.seen = Some((version_id.to_owned(), now)),
            }
        }
        now
    }

    pub fn len(&self) -> usize {
        self.table.read().by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str) -> NodeKind {
        NodeKind::File(Arc::new(Selector::parse(s).unwrap()))
    }

    #[test]
    fn numbers_are_stable_while_held_and_released_on_forget() {
        let inodes = Inodes::new();
        let a = inodes.intern("prod/db", file("prod/db"));
        assert_eq!(inodes.intern("prod/db", file("prod/db")), a);
        assert_eq!(inodes.peek("prod/db"), Some(a));
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_some(), "one reference left");
        inodes.forget(a, 1);
        assert!(inodes.get(a).is_none());
        assert_eq!(inodes.peek("prod/db"), None);
        assert_eq!(inodes.len(), 1, "only the root is left");
        inodes.forget(ROOT, 10);
        assert!(inodes.get(ROOT).is_some());
    }

    #[test]
    fn many_selector_lookups_do_not_grow_the_table_once_forgotten() {
        let inodes = Inodes::new();
        for i in 0..1000 {
            let path = format!("db:key{i}");
            let ino = inodes.intern(&path, file(&path));
            inodes.forget(ino, 1);
        }
        assert_eq!(inodes.len(), 1);
    }

    #[test]
    fn a_path_that_changes_kind_gets_a_new_number() {
        let inodes = Inodes::new();
        let f = inodes.intern("a", file("a"));
        let d = inodes.intern("a", NodeKind::Dir);
        assert_ne!(f, d);
        assert!(
            inodes.get(f).is_some(),
            "the old number stays for its holder"
        );
        inodes.forget(f, 1);
        assert_eq!(inodes.peek("a"), Some(d));
    }

    #[test]
    fn ctime_moves_on_every_version_change() {
        let inodes = Inodes::new();
        let ino = inodes.intern("db", file("db"));
        let first = inodes.first_seen(ino, "v1");
        assert_eq!(inodes.first_seen(ino, "v1"), first);
        let second = inodes.first_seen(ino, "v2");
        assert!(second >= first);
        let back = inodes.first_seen(ino, "v1");
        assert!(back >= second, "a rollback is a change too");
    }
}
