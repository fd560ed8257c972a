//! The inode table's journal (docs/ARCHITECTURE.md#restarts): what the kernel holds, written
//! as it changes into two memory files that outlive the process in a file descriptor store, so
//! that the process taking over the FUSE connection answers the kernel's inode numbers.
//!
//! A crash can stop a write at any byte, so each slot is a header line, written last, over
//! JSON lines: a torn last line ends the replay and loses at most the change it recorded (a
//! lookup counted before its reply went out, hence a reference counted once too often, never
//! once too few). A compaction writes a snapshot into the other slot under a higher generation
//! and switches to it only once its header is whole; the old slot stays valid until then.
//! No value is ever written: versions are named by id and digest, and their bytes fetched again.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::{Current, Entry, Identity, Inodes, Node, NodeKind, ROOT, Table, Version};
use secretsfs_core::selector::Selector;

/// Bytes before the records: the header line, padded.
const HEADER: usize = 64;
/// A slot grows this much past its snapshot before it is compacted.
const COMPACT_AFTER: u64 = 1 << 20;
/// The most a slot may hold when read back (a bound on what a takeover allocates).
const MAX_SLOT: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SavedKind {
    #[serde(rename = "d")]
    Dir,
    /// The selector, as text.
    #[serde(rename = "f")]
    File(String),
    #[serde(rename = "s")]
    SecretDir(String),
    #[serde(rename = "t")]
    Template(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedVersion {
    pub id: String,
    pub len: u64,
    pub digest: u64,
    pub size: u64,
    /// Nanoseconds since the epoch.
    pub mtime: Option<u64>,
    pub ctime: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedNode {
    pub ino: u64,
    pub path: String,
    pub kind: SavedKind,
    pub lookups: u64,
    pub version: Option<SavedVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// A node the kernel was told of, with the references it holds.
    #[serde(rename = "n")]
    Node(SavedNode),
    /// One more reference to a node.
    #[serde(rename = "r")]
    Ref(u64),
    /// The kernel dropped this many references.
    #[serde(rename = "f")]
    Forget(u64, u64),
    /// Inode and handle numbers below these may still be in the kernel's hands.
    #[serde(rename = "c")]
    Counters { next_ino: u64, handles: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    #[serde(rename = "g")]
    generation: u64,
}

/// What a journal held: the nodes the kernel holds references to, and the counters.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    pub nodes: Vec<SavedNode>,
    pub next_ino: u64,
    pub handles: u64,
}

impl Restored {
    fn apply(&mut self, record: Record, index: &mut std::collections::HashMap<u64, usize>) {
        match record {
            Record::Node(node) => {
                self.next_ino = self.next_ino.max(node.ino + 1);
                match index.get(&node.ino) {
                    Some(&at) => self.nodes[at] = node,
                    None => {
                        index.insert(node.ino, self.nodes.len());
                        self.nodes.push(node);
                    }
                }
            }
            Record::Ref(ino) => {
                if let Some(&at) = index.get(&ino) {
                    self.nodes[at].lookups += 1;
                }
            }
            Record::Forget(ino, n) => {
                if let Some(&at) = index.get(&ino) {
                    let node = &mut self.nodes[at];
                    node.lookups = node.lookups.saturating_sub(n);
                }
            }
            Record::Counters { next_ino, handles } => {
                self.next_ino = self.next_ino.max(next_ino);
                self.handles = self.handles.max(handles);
            }
        }
    }
}

#[derive(Debug)]
pub struct Journal {
    slots: [File; 2],
    active: usize,
    generation: u64,
    /// Where the next record goes in the active slot.
    end: u64,
    /// How long the active slot's snapshot was.
    snapshot_end: u64,
    /// A write failed: the journal is no longer trusted, and says so once.
    broken: bool,
}

impl Journal {
    /// A new journal in two memory files, holding `snapshot`.
    pub fn create(snapshot: impl IntoIterator<Item = Record>) -> io::Result<Journal> {
        let slot = |name: &str| -> io::Result<File> {
            let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(io::Error::from)?;
            Ok(File::from(fd))
        };
        let mut journal = Journal {
            slots: [slot("secretsfs-inodes-0")?, slot("secretsfs-inodes-1")?],
            active: 1,
            generation: 0,
            end: HEADER as u64,
            snapshot_end: HEADER as u64,
            broken: false,
        };
        journal.compact(snapshot)?;
        Ok(journal)
    }

    /// Reads back the journal a previous process left in `slots`, and goes on writing to them.
    pub fn open(slots: [OwnedFd; 2]) -> io::Result<(Journal, Restored)> {
        let slots = slots.map(File::from);
        let generations = [read_header(&slots[0]), read_header(&slots[1])];
        let active = match generations {
            [Some(a), Some(b)] => usize::from(b > a),
            [Some(_), None] => 0,
            [None, Some(_)] => 1,
            [None, None] => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "neither journal slot has a whole header",
                ));
            }
        };
        let (restored, end) = replay(&slots[active])?;
        let journal = Journal {
            generation: generations[active].unwrap_or(0),
            slots,
            active,
            end,
            snapshot_end: end,
            broken: false,
        };
        Ok((journal, restored))
    }

    /// The two memory files, to hand to the store.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.slots[0].as_fd(), self.slots[1].as_fd()]
    }

    /// Appends one record; a failure is logged once and stops the journal.
    pub fn append(&mut self, record: &Record) {
        if self.broken {
            return;
        }
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        match self.slots[self.active].write_all_at(&line, self.end) {
            Ok(()) => self.end += line.len() as u64,
            Err(e) => self.break_with(&e),
        }
    }

    pub fn wants_compaction(&self) -> bool {
        !self.broken
            && self.end - self.snapshot_end > COMPACT_AFTER
            && self.end > 4 * self.snapshot_end
    }

    /// Writes `snapshot` into the other slot and makes it the active one.
    pub fn compact(&mut self, snapshot: impl IntoIterator<Item = Record>) -> io::Result<()> {
        let next = 1 - self.active;
        let slot = &self.slots[next];
        // Invalid (no header) until the snapshot is whole.
        slot.set_len(0)?;
        let mut body = Vec::new();
        for record in snapshot {
            serde_json::to_writer(&mut body, &record).expect("records serialize");
            body.push(b'\n');
        }
        slot.write_all_at(&body, HEADER as u64)?;
        let generation = self.generation + 1;
        let mut header = serde_json::to_vec(&Header { generation }).expect("serializes");
        header.resize(HEADER - 1, b' ');
        header.push(b'\n');
        slot.write_all_at(&header, 0)?;
        self.active = next;
        self.generation = generation;
        self.end = (HEADER + body.len()) as u64;
        self.snapshot_end = self.end;
        Ok(())
    }

    /// Compaction failed or a write did: a takeover would find a table that misses changes,
    /// so no slot stays valid.
    pub fn break_with(&mut self, e: &io::Error) {
        if !self.broken {
            self.broken = true;
            tracing::error!(target: "secretsfs::fuse::inodes::journal", error = %e,
                "the inode journal could not be written; a restart will not take over this mount");
            for slot in &self.slots {
                let _ = slot.set_len(0);
            }
        }
    }
}

fn read_header(slot: &File) -> Option<u64> {
    let mut header = [0u8; HEADER];
    slot.read_exact_at(&mut header, 0).ok()?;
    let line = std::str::from_utf8(&header).ok()?.trim_end();
    serde_json::from_str::<Header>(line)
        .ok()
        .map(|h| h.generation)
}

fn replay(slot: &File) -> io::Result<(Restored, u64)> {
    let len = slot.metadata()?.len();
    if len > MAX_SLOT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the journal slot is {len} bytes, over {MAX_SLOT}"),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    slot.read_exact_at(&mut bytes, 0)?;
    let mut restored = Restored::default();
    let mut index = std::collections::HashMap::new();
    let mut end = HEADER;
    for line in bytes[HEADER.min(bytes.len())..].split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        let Ok(record) = serde_json::from_slice::<Record>(&line[..line.len() - 1]) else {
            break;
        };
        restored.apply(record, &mut index);
        end += line.len();
    }
    restored.nodes.retain(|node| node.lookups > 0);
    Ok((restored, end as u64))
}

pub fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

const HANDLE_BLOCK: u64 = 4096;

pub(super) fn saved(ino: u64, entry: &Entry) -> SavedNode {
    let node = &entry.node;
    SavedNode {
        ino,
        path: node.path.to_string(),
        kind: match &node.kind {
            NodeKind::Dir => SavedKind::Dir,
            NodeKind::File(selector) => SavedKind::File(selector.to_string()),
            NodeKind::SecretDir(name) => SavedKind::SecretDir(name.to_string()),
            NodeKind::Template(path) => SavedKind::Template(path.to_string()),
        },
        lookups: entry.lookups,
        version: node.version.as_ref().map(|v| SavedVersion {
            id: v.identity.version_id.to_string(),
            len: v.identity.len,
            digest: v.identity.digest,
            size: v.size,
            mtime: v.mtime.map(nanos),
            ctime: nanos(v.ctime),
        }),
    }
}

fn node_of(saved: &SavedNode) -> Option<Node> {
    let kind = match &saved.kind {
        SavedKind::Dir => NodeKind::Dir,
        SavedKind::File(selector) => NodeKind::File(Arc::new(Selector::parse(selector).ok()?)),
        SavedKind::SecretDir(name) => NodeKind::SecretDir(Arc::from(name.as_str())),
        SavedKind::Template(path) => NodeKind::Template(Arc::from(path.as_str())),
    };
    let version = saved.version.as_ref().map(|v| {
        Arc::new(Version {
            identity: Identity {
                version_id: Arc::from(v.id.as_str()),
                len: v.len,
                digest: v.digest,
            },
            size: v.size,
            mtime: v.mtime.map(time),
            ctime: time(v.ctime),
            bytes: parking_lot::Mutex::new(None),
            last_read: AtomicU64::new(0),
        })
    });
    Some(Node {
        path: Arc::from(saved.path.as_str()),
        kind,
        version,
    })
}

impl Table {
    pub(super) fn snapshot(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .by_ino
            .iter()
            .filter(|(ino, _)| **ino != ROOT)
            .map(|(ino, entry)| Record::Node(saved(*ino, entry)))
            .collect();
        records.push(Record::Counters {
            next_ino: self.next,
            handles: self.handle_bound,
        });
        records
    }

    /// Takes in what a previous process's journal held. The path's current version is the
    /// newest number the kernel holds for it: numbers only grow.
    fn restore(&mut self, restored: &Restored) {
        let mut nodes: Vec<&SavedNode> = restored.nodes.iter().collect();
        nodes.sort_by_key(|n| n.ino);
        for saved in nodes {
            if saved.ino == ROOT {
                continue;
            }
            let Some(node) = node_of(saved) else {
                tracing::warn!(target: "secretsfs::fuse::inodes::journal", ino = saved.ino, path = %saved.path,
                    "an inode from the previous process could not be read back; the kernel's \
                    uses of it fail ENOENT");
                continue;
            };
            match &node.version {
                Some(version) => {
                    self.dirs.remove(&node.path);
                    self.files.insert(
                        node.path.clone(),
                        Current {
                            ino: saved.ino,
                            version: version.clone(),
                        },
                    );
                }
                None => {
                    self.files.remove(&node.path);
                    self.dirs.insert(node.path.clone(), saved.ino);
                }
            }
            self.by_ino.insert(
                saved.ino,
                Entry {
                    node,
                    lookups: saved.lookups,
                },
            );
        }
        self.next = self.next.max(restored.next_ino);
        self.handle_bound = restored.handles;
    }
}

impl Inodes {
    /// Starts writing the table's changes to a new journal.
    pub fn start_journal(&self) -> io::Result<()> {
        let mut table = self.table.write();
        table.journal = Some(Journal::create(table.snapshot())?);
        Ok(())
    }

    /// Takes in the table a previous process journaled in `slots`, and goes on journaling
    /// there. Returns the first handle number that is free.
    pub fn resume_journal(&self, slots: [OwnedFd; 2]) -> io::Result<u64> {
        let (mut journal, restored) = Journal::open(slots)?;
        let mut table = self.table.write();
        table.restore(&restored);
        // Starts the slot anew from a snapshot: no torn line is left behind to write after.
        journal.compact(table.snapshot())?;
        table.journal = Some(journal);
        self.handles_journaled.store(table.handle_bound, Relaxed);
        Ok(table.handle_bound)
    }

    /// Copies of the journal's memory files, for the file descriptor store.
    pub fn journal_fds(&self) -> Option<io::Result<[OwnedFd; 2]>> {
        let table = self.table.read();
        let journal = table.journal.as_ref()?;
        let [a, b] = journal.fds();
        Some(
            a.try_clone_to_owned()
                .and_then(|a| Ok([a, b.try_clone_to_owned()?])),
        )
    }

    /// Journals handle numbers in blocks, so that a process taking over gives out none the
    /// kernel may still hold.
    pub fn note_handle(&self, fh: u64) {
        if fh < self.handles_journaled.load(Relaxed) {
            return;
        }
        let mut table = self.table.write();
        if fh >= table.handle_bound {
            table.handle_bound = fh + HANDLE_BLOCK;
            let (next_ino, handles) = (table.next, table.handle_bound);
            table.log(Record::Counters { next_ino, handles });
            self.handles_journaled.store(handles, Relaxed);
        }
    }
}
