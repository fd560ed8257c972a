use super::*;

fn selector(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn version(id: &str, bytes: &[u8]) -> Arc<Resolved> {
    Arc::new(Resolved::of_bytes(id, bytes))
}

fn file(inodes: &Inodes, path: &str, id: &str, bytes: &[u8]) -> u64 {
    let (ino, node) = inodes.intern_file(path, &selector(path), &version(id, bytes));
    assert_eq!(inodes.peek(path), Some(ino));
    assert_eq!(node.version.unwrap().size, bytes.len() as u64);
    ino
}

const BUDGET: usize = 1 << 20;

/// A table whose versions may hold `bytes` between them (and nothing else is in the budget).
fn table(bytes: usize) -> Arc<Inodes> {
    Inodes::new(Budget::new(secretsfs_core::cache::flight::Limits {
        max_entries: usize::MAX,
        max_bytes: bytes,
    }))
}

/// The bytes the inode `ino` holds (it must hold them).
fn held_bytes_of(inodes: &Inodes, ino: u64) -> Vec<u8> {
    let version = inodes.get(ino).unwrap().version.unwrap();
    version.bytes().expect("bytes held").bytes().to_vec()
}

#[test]
fn numbers_are_stable_while_held_and_released_on_forget() {
    let inodes = table(BUDGET);
    let a = inodes.intern_dir("prod", NodeKind::Dir);
    assert_eq!(inodes.intern_dir("prod", NodeKind::Dir), a);
    assert_eq!(inodes.peek("prod"), Some(a));
    inodes.forget(a, 1);
    assert!(inodes.get(a).is_some(), "one reference left");
    inodes.forget(a, 1);
    assert!(inodes.get(a).is_none());
    assert_eq!(inodes.peek("prod"), None);
    assert_eq!(inodes.len(), 1, "only the root is left");
    inodes.forget(ROOT, 10);
    assert!(inodes.get(ROOT).is_some());
}

#[test]
fn many_selector_lookups_do_not_grow_the_table_once_forgotten() {
    let inodes = table(BUDGET);
    for i in 0..(DORMANT_MAX + 1000) {
        let path = format!("db:key{i}");
        let ino = file(&inodes, &path, "v1", b"x");
        inodes.forget(ino, 1);
    }
    assert_eq!(inodes.len(), 1);
    assert_eq!(inodes.held_bytes(), 0, "forgotten versions hold no bytes");
    assert!(inodes.table.read().files.len() <= DORMANT_MAX);
}

#[test]
fn a_path_that_changes_kind_gets_a_new_number() {
    let inodes = table(BUDGET);
    let f = file(&inodes, "a", "v1", b"x");
    let d = inodes.intern_dir("a", NodeKind::Dir);
    assert_ne!(f, d);
    assert!(
        inodes.get(f).is_some(),
        "the old number stays for its holder"
    );
    inodes.forget(f, 1);
    assert_eq!(inodes.peek("a"), Some(d));
}

#[test]
fn each_version_is_an_inode_of_its_own_with_its_own_bytes() {
    let inodes = table(BUDGET);
    let old = file(&inodes, "db", "v1", b"first!");
    assert_eq!(file(&inodes, "db", "v1", b"first!"), old, "same version");
    let new = file(&inodes, "db", "v2", b"second");
    assert_ne!(new, old, "a rotation to the same length is a new inode");
    let old_version = inodes.get(old).unwrap().version.unwrap();
    assert_eq!(held_bytes_of(&inodes, old), b"first!");
    assert_eq!(held_bytes_of(&inodes, new), b"second");
    assert!(
        inodes.get(new).unwrap().version.unwrap().ctime >= old_version.ctime,
        "ctime moves forward"
    );
    let back = file(&inodes, "db", "v1", b"first!");
    assert_ne!(
        back, old,
        "a rollback is a new inode too: numbers are never reused"
    );
    assert_eq!(inodes.peek("db"), Some(back));
}

#[test]
fn an_edit_in_place_that_keeps_the_version_id_is_a_new_inode() {
    let inodes = table(BUDGET);
    let a = file(&inodes, "db", "v1", b"secret-a");
    let b = file(&inodes, "db", "v1", b"secret-b");
    assert_ne!(a, b);
}

#[test]
fn the_current_version_keeps_its_number_through_a_transient_forget() {
    let inodes = table(BUDGET);
    let old = file(&inodes, "db", "v1", b"one");
    let new = file(&inodes, "db", "v2", b"two");
    // The kernel revalidating its entry for `old` got `new`: it forgets `new` and asks again.
    inodes.forget(new, 1);
    assert!(inodes.get(new).is_none());
    assert_eq!(file(&inodes, "db", "v2", b"two"), new);
    assert_eq!(held_bytes_of(&inodes, new), b"two", "its bytes are back");
    inodes.forget(old, 1);
    assert!(
        inodes.get(old).is_none(),
        "a version no longer current goes"
    );
}

#[test]
fn the_bytes_held_stay_within_the_budget_least_recently_read_first() {
    let inodes = table(10);
    let a = file(&inodes, "a", "v1", b"aaaa");
    let b = file(&inodes, "b", "v1", b"bbbb");
    let a_version = inodes.get(a).unwrap().version.unwrap();
    inodes.touch(&a_version);
    let c = file(&inodes, "c", "v1", b"cccc");
    assert!(inodes.held_bytes() <= 10);
    let held = |ino| inodes.get(ino).unwrap().version.unwrap().bytes().is_some();
    assert!(held(a) && !held(b) && held(c), "b was read least recently");
    let b_version = inodes.get(b).unwrap().version.unwrap();
    inodes.restore_bytes(&b_version, &version("v1", b"bbbb"));
    assert!(held(b));
    assert!(inodes.held_bytes() <= 10);
}

#[test]
fn held_entries_name_their_parent() {
    let inodes = table(BUDGET);
    let prod = inodes.intern_dir("prod", NodeKind::Dir);
    let db = file(&inodes, "prod/db", "v1", b"x");
    let mut held = inodes.held_entries();
    held.sort();
    assert_eq!(
        held,
        vec![(ROOT, "prod".into(), prod), (prod, "db".into(), db)]
    );
}

/// A second table that takes over the journal of `inodes`, as a restarted process does.
fn taken_over(inodes: &Inodes) -> Arc<Inodes> {
    let slots = inodes.journal_fds().expect("journaling").unwrap();
    let next = table(BUDGET);
    next.resume_journal(slots).unwrap();
    next
}

#[test]
fn a_process_taking_over_answers_the_same_numbers_with_the_same_references() {
    let inodes = table(BUDGET);
    let before = inodes.intern_dir("prod", NodeKind::Dir);
    inodes.start_journal().unwrap();
    let prod = inodes.intern_dir("prod", NodeKind::Dir);
    assert_eq!(prod, before);
    let old = file(&inodes, "prod/db", "v1", b"one");
    let new = file(&inodes, "prod/db", "v2", b"two!");
    file(&inodes, "prod/db", "v2", b"two!");
    let gone = file(&inodes, "prod/api", "v1", b"x");
    inodes.forget(gone, 1);

    let next = taken_over(&inodes);
    assert_eq!(next.peek("prod"), Some(prod));
    assert_eq!(
        next.peek("prod/db"),
        Some(new),
        "the newest version is the current one"
    );
    assert_eq!(next.peek("prod/api"), None, "forgotten before the restart");
    let node = next
        .get(old)
        .expect("an open file's old version is still answered");
    let old_version = node.version.unwrap();
    assert_eq!(
        (&*old_version.identity.version_id, old_version.size),
        ("v1", 3)
    );
    assert!(old_version.bytes().is_none(), "values are never journaled");
    // Same bytes, same version: the same number; the kernel's two references are both known.
    let (again, _) = next.intern_file("prod/db", &selector("prod/db"), &version("v2", b"two!"));
    assert_eq!(again, new);
    next.forget(new, 2);
    assert!(
        next.get(new).is_some(),
        "three references were counted, two returned"
    );
    next.forget(new, 1);
    assert!(next.get(new).is_none());
    next.forget(prod, 1);
    assert!(
        next.get(prod).is_some(),
        "two lookups of prod: one reference is left"
    );
    next.forget(prod, 1);
    assert!(next.get(prod).is_none());
    let fresh = next.intern_dir("staging", NodeKind::Dir);
    assert!(fresh > gone, "numbers are never given out twice");
}

#[test]
fn a_torn_last_record_loses_only_itself() {
    use std::os::unix::fs::FileExt;
    let inodes = table(BUDGET);
    inodes.start_journal().unwrap();
    let db = file(&inodes, "db", "v1", b"one");
    let [a, b] = inodes.journal_fds().unwrap().unwrap();
    for slot in [a, b] {
        let slot = std::fs::File::from(slot);
        let end = slot.metadata().unwrap().len();
        if end > 64 {
            slot.write_all_at(br#"{"r":"#, end).unwrap();
        }
    }
    let next = taken_over(&inodes);
    assert_eq!(next.peek("db"), Some(db));
}

#[test]
fn compaction_keeps_the_table_and_handles_are_never_given_twice() {
    let inodes = table(BUDGET);
    inodes.start_journal().unwrap();
    let db = file(&inodes, "db", "v1", b"one");
    // Enough references to outgrow the slot several times over.
    for _ in 0..150_000 {
        inodes.intern_file("db", &selector("db"), &version("v1", b"one"));
    }
    inodes.forget(db, 150_000);
    inodes.note_handle(1);
    inodes.note_handle(5000);
    let next = taken_over(&inodes);
    assert_eq!(next.peek("db"), Some(db));
    assert!(next.get(db).is_some(), "one reference was left");
    let slots = next.journal_fds().unwrap().unwrap();
    let third = table(BUDGET);
    let free = third.resume_journal(slots).unwrap();
    assert!(
        free > 5000,
        "handle numbers up to 5000 were given out; {free} is not past them"
    );
}

/// The kernel may hold far more inodes than the budget holds bytes of (every file of a large
/// account after `find | xargs cat`): the versions the budget chooses from are only those
/// holding bytes, so that a fetch does not scan every inode.
#[test]
fn the_budget_chooses_among_the_versions_holding_bytes_not_among_every_inode() {
    let inodes = table(10 * 8);
    for i in 0..5_000 {
        file(&inodes, &format!("s{i}"), "v1", b"12345678");
    }
    assert_eq!(inodes.len(), 5_001, "the kernel holds them all");
    assert!(inodes.held_bytes() <= 10 * 8);
    assert!(inodes.table.read().held.len() <= 10);
    let last = inodes.peek("s4999").unwrap();
    assert_eq!(held_bytes_of(&inodes, last), b"12345678");
    // Forgetting a version that holds its bytes takes it out of the choice too.
    inodes.forget(last, 1);
    assert!(inodes.table.read().held.len() <= 9);
}
