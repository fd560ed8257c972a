//! The file system's semantics without a mount: the in-memory source, a policy, and calls as
//! the adapter makes them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Waker};
use std::thread::{self, ThreadId};

use super::*;
use crate::inodes::ROOT;
use crate::namespace::Layout;
use secretsfs_core::cache::{CacheConfig, Op};
use secretsfs_core::policy::{
    DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, Defaults, Mode, Policy, RuleSpec, SystemDirectory,
};
use secretsfs_core::source::memory::MemorySource;

fn root_user() -> Caller {
    Caller::new(0, 0, Some(0))
}

fn nobody() -> Caller {
    Caller::new(65534, 65534, Some(0))
}

fn fs_with(layout: Layout, prefix: &str, rules: &[RuleSpec]) -> (Arc<MemorySource>, SecretsFs) {
    let source = Arc::new(MemorySource::new());
    source.put("prod/db", r#"{"user":"app","password":"pw"}"#);
    source.put("prod/db", r#"{"user":"app","password":"pw2"}"#);
    source.put("prod/cache/redis", "r");
    source.put("public", "p");
    let engine = Arc::new(Engine::new(source.clone(), CacheConfig::default()));
    let defaults = Defaults {
        uid: 0,
        gid: 0,
        file_mode: DEFAULT_FILE_MODE,
        dir_mode: Mode(0o555),
    };
    let policy =
        secretsfs_core::policy::shared(Policy::new(rules, defaults, &SystemDirectory).unwrap());
    let namespace = Namespace::new(layout, prefix).unwrap();
    (source, SecretsFs::new(engine, policy, namespace, true))
}

fn default_fs() -> (Arc<MemorySource>, SecretsFs) {
    let public = RuleSpec {
        path: "public".into(),
        owner: None,
        group: None,
        mode: Some(Mode(0o444)),
        dir_mode: None,
    };
    fs_with(Layout::Flat, "", &[public])
}

async fn read_all(fs: &SecretsFs, ino: u64) -> Vec<u8> {
    let (resolved, range) = fs.read(ino, 0, 0, 1 << 20).await.unwrap();
    resolved.bytes()[range].to_vec()
}

fn names(entries: &[DirEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

#[tokio::test]
async fn lookups_find_files_selectors_and_directories() {
    let (_, fs) = default_fs();
    let prod = fs.lookup(&root_user(), ROOT, "prod").await.unwrap();
    assert_eq!(prod.kind, Kind::Dir);
    assert_eq!(prod.mode, 0o555);
    let db = fs.lookup(&root_user(), prod.ino, "db").await.unwrap();
    assert_eq!((db.kind, db.size, db.mode), (Kind::File, 31, 0o440));
    let key = fs
        .lookup(&root_user(), prod.ino, "db:password")
        .await
        .unwrap();
    assert_eq!(read_all(&fs, key.ino).await, b"pw2");
    let previous = fs
        .lookup(&root_user(), prod.ino, "db:password:AWSPREVIOUS")
        .await
        .unwrap();
    assert_eq!(read_all(&fs, previous.ino).await, b"pw");
    for missing in ["nope", "db:nokey", "db:a:b:c:d", "..", ""] {
        assert_eq!(
            fs.lookup(&root_user(), prod.ino, missing).await,
            Err(Errno::ENOENT.into()),
            "{missing}"
        );
    }
    assert_eq!(
        fs.lookup(&root_user(), db.ino, "x").await,
        Err(Errno::ENOTDIR.into())
    );
    assert_eq!(fs.getattr(db.ino).await.unwrap().size, 31);
}

#[tokio::test]
async fn a_name_secrets_manager_would_refuse_is_not_there_and_costs_no_call() {
    let (source, fs) = default_fs();
    source.put("odd%name", "x");
    let calls = source.calls(Op::GetSecretValue);
    for name in ["odd%name", "sp ace", "t\u{e9}st"] {
        assert_eq!(
            fs.lookup(&root_user(), ROOT, name).await.unwrap_err(),
            Errno::ENOENT,
            "{name}"
        );
    }
    assert_eq!(source.calls(Op::GetSecretValue), calls);
}

#[tokio::test]
async fn denied_callers_get_eacces_before_any_call_and_listings_hide_what_they_cannot_read() {
    let (source, fs) = default_fs();
    let prod = fs.lookup(&root_user(), ROOT, "prod").await.unwrap();
    let calls_before = source.calls(Op::GetSecretValue);
    assert_eq!(
        fs.lookup(&nobody(), prod.ino, "db").await,
        Err(Errno::EACCES.into())
    );
    assert_eq!(
        fs.lookup(&nobody(), prod.ino, "db:password").await,
        Err(Errno::EACCES.into())
    );
    assert_eq!(
        source.calls(Op::GetSecretValue),
        calls_before,
        "no upstream call when denied"
    );
    assert!(fs.lookup(&nobody(), ROOT, "public").await.is_ok());

    let root_for_nobody = fs.readdir(&nobody(), ROOT).await.unwrap();
    assert_eq!(names(&root_for_nobody), [".", "..", "prod", "public"]);
    let prod_for_nobody = fs.readdir(&nobody(), prod.ino).await.unwrap();
    assert_eq!(
        names(&prod_for_nobody),
        [".", "..", "cache"],
        "db is hidden"
    );
    let prod_for_root = fs.readdir(&root_user(), prod.ino).await.unwrap();
    assert_eq!(names(&prod_for_root), [".", "..", "cache", "db"]);
}

#[tokio::test]
async fn a_lookup_after_a_listing_fetches_the_directory_ahead() {
    let (source, fs) = default_fs();
    let prod = fs.lookup(&root_user(), ROOT, "prod").await.unwrap();
    let cache = fs.lookup(&root_user(), prod.ino, "cache").await.unwrap();
    let calls = || source.calls(Op::GetSecretValue) + source.calls(Op::BatchGetSecretValue);
    let first = calls();
    fs.readdir(&root_user(), ROOT).await.unwrap();
    // The lookup fetches the listed directory's secrets together: here its one secret, in one
    // call (a batch of one would cost the same, so it is its own GetSecretValue).
    fs.lookup(&root_user(), ROOT, "public").await.unwrap();
    assert_eq!(calls(), first + 1);
    // Without a listing first, a lookup is one GetSecretValue.
    let gets = source.calls(Op::GetSecretValue);
    fs.lookup(&root_user(), cache.ino, "redis").await.unwrap();
    assert_eq!(source.calls(Op::GetSecretValue), gets + 1);
}

#[tokio::test]
async fn the_stages_layout_shows_secrets_as_directories_of_stages() {
    let (_, fs) = fs_with(Layout::Stages, "", &[]);
    let prod = fs.lookup(&root_user(), ROOT, "prod").await.unwrap();
    let db = fs.lookup(&root_user(), prod.ino, "db").await.unwrap();
    assert_eq!(db.kind, Kind::Dir);
    let stages = fs.readdir(&root_user(), db.ino).await.unwrap();
    assert_eq!(names(&stages), [".", "..", "AWSCURRENT", "AWSPREVIOUS"]);
    let previous = fs
        .lookup(&root_user(), db.ino, "AWSPREVIOUS")
        .await
        .unwrap();
    assert_eq!(
        read_all(&fs, previous.ino).await,
        br#"{"user":"app","password":"pw"}"#
    );
    assert_eq!(
        fs.lookup(&root_user(), db.ino, "AWSPENDING").await,
        Err(Errno::ENOENT.into())
    );
}

#[tokio::test]
async fn a_prefix_is_the_root() {
    let (_, fs) = fs_with(Layout::Flat, "prod/", &[]);
    let root = fs.readdir(&root_user(), ROOT).await.unwrap();
    assert_eq!(names(&root), [".", "..", "cache", "db"]);
    let db = fs.lookup(&root_user(), ROOT, "db:user").await.unwrap();
    assert_eq!(read_all(&fs, db.ino).await, b"app");
    assert_eq!(
        fs.lookup(&root_user(), ROOT, "public").await,
        Err(Errno::ENOENT.into())
    );
}

#[tokio::test]
async fn open_handles_are_snapshots() {
    let source = Arc::new(MemorySource::new());
    source.put("db", "old value");
    let fs = rotating_fs(&source, CacheConfig::default().max_bytes, false);
    let db = fs.lookup(&root_user(), ROOT, "db").await.unwrap();
    let fh = fs.open(&root_user(), db.ino).await.unwrap();
    source.put("db", "new");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (snapshot, range) = fs.read(db.ino, fh, 4, 100).await.unwrap();
    assert_eq!(&snapshot.bytes()[range], b"value");
    assert_eq!(
        read_all(&fs, db.ino).await,
        b"old value",
        "the inode is its version"
    );
    let rotated = fs.lookup(&root_user(), ROOT, "db").await.unwrap();
    assert_ne!(rotated.ino, db.ino);
    assert_eq!(read_all(&fs, rotated.ino).await, b"new");
    fs.release(fh);
    assert_eq!(fs.open(&nobody(), db.ino).await, Err(Errno::EACCES.into()));
}

static LOOKUPS: AtomicUsize = AtomicUsize::new(0);
static LOOKED_UP_ON: Mutex<Option<ThreadId>> = Mutex::new(None);

fn counted(_: u32, _: u32, _: Option<u32>) -> Vec<u32> {
    LOOKUPS.fetch_add(1, Relaxed);
    *LOOKED_UP_ON.lock() = Some(thread::current().id());
    Vec::new()
}

#[tokio::test]
async fn groups_are_looked_up_only_when_a_rule_needs_them_and_never_in_the_first_poll() {
    let (_, fs) = default_fs();
    let someone = || Caller::with_resolver(1000, 1000, Some(0), counted);
    // Warm the listing and the values, so that only a group lookup can leave a poll pending.
    let prod = fs.lookup(&root_user(), ROOT, "prod").await.unwrap();
    fs.lookup(&root_user(), prod.ino, "db").await.unwrap();

    // `public` is 0444: whatever the groups, the other bits decide alike.
    assert!(fs.lookup(&someone(), ROOT, "public").await.is_ok());
    assert_eq!(
        names(&fs.readdir(&someone(), ROOT).await.unwrap()),
        [".", "..", "prod", "public"]
    );
    assert_eq!(LOOKUPS.load(Relaxed), 0, "no rule needed the groups");

    // prod/db is root:root 0440: only the groups can tell whether the group bits apply. The
    // first poll, as a FUSE worker makes it, hands the lookup to the runtime.
    let caller = someone();
    let mut op = Box::pin(fs.lookup(&caller, prod.ino, "db"));
    let first = op.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    assert!(first.is_pending());
    assert_eq!(op.await, Err(Errno::EACCES.into()));
    assert_eq!(LOOKUPS.load(Relaxed), 1);
    assert_ne!(
        *LOOKED_UP_ON.lock(),
        Some(thread::current().id()),
        "not inline"
    );

    // A listing judges every entry with one lookup.
    let listing = fs.readdir(&someone(), prod.ino).await.unwrap();
    assert_eq!(names(&listing), [".", "..", "cache"]);
    assert_eq!(LOOKUPS.load(Relaxed), 2);
}

/// A file system over `source` whose values are fresh for a millisecond, and whose inodes hold
/// at most `inode_bytes` of values; `kernel_cache` as the mount's read path.
fn rotating_fs(source: &Arc<MemorySource>, inode_bytes: usize, kernel_cache: bool) -> SecretsFs {
    let engine = Arc::new(Engine::new(
        source.clone(),
        CacheConfig {
            ttl: std::time::Duration::from_millis(1),
            max_bytes: inode_bytes,
            ..CacheConfig::default()
        },
    ));
    fs_over(engine, kernel_cache)
}

/// A flat file system over `engine`, every entry with the default owner and modes.
fn fs_over(engine: Arc<Engine>, kernel_cache: bool) -> SecretsFs {
    let defaults = Defaults {
        uid: 0,
        gid: 0,
        file_mode: DEFAULT_FILE_MODE,
        dir_mode: DEFAULT_DIR_MODE,
    };
    let policy = secretsfs_core::policy::shared(Policy::defaults_only(defaults));
    let namespace = Namespace::new(Layout::Flat, "").unwrap();
    SecretsFs::new(engine, policy, namespace, kernel_cache)
}

#[tokio::test]
async fn a_same_length_rotation_is_a_new_inode_and_the_old_one_keeps_its_bytes() {
    let source = Arc::new(MemorySource::new());
    source.put("db", r#"{"password":"aaaa"}"#);
    let fs = rotating_fs(&source, 1 << 20, true);
    let old = fs.lookup(&root_user(), ROOT, "db:password").await.unwrap();
    source.put("db", r#"{"password":"bbbb"}"#);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let new = fs.lookup(&root_user(), ROOT, "db:password").await.unwrap();
    assert_ne!(new.ino, old.ino);
    assert_eq!((old.size, new.size), (4, 4));
    assert!(new.ctime >= old.ctime);
    assert_eq!(read_all(&fs, old.ino).await, b"aaaa");
    assert_eq!(read_all(&fs, new.ino).await, b"bbbb");
    let old_again = fs.getattr(old.ino).await.unwrap();
    assert_eq!((old_again.size, old_again.mtime), (old.size, old.mtime));
    // The kernel revalidating its entry forgets the new inode, then looks the name up again.
    fs.forget(new.ino, 1);
    let again = fs.lookup(&root_user(), ROOT, "db:password").await.unwrap();
    assert_eq!(again.ino, new.ino, "the current version keeps its number");
    fs.forget(old.ino, 1);
    assert_eq!(fs.getattr(old.ino).await, Err(Errno::ENOENT.into()));
}

#[tokio::test]
async fn a_version_dropped_by_the_byte_budget_is_fetched_again_by_its_id() {
    let source = Arc::new(MemorySource::new());
    source.put("a", "aaaaaaaa");
    source.put("b", "bbbbbbbb");
    let fs = rotating_fs(&source, 10, true);
    let a = fs.lookup(&root_user(), ROOT, "a").await.unwrap();
    let b = fs.lookup(&root_user(), ROOT, "b").await.unwrap();
    assert!(fs.held_bytes() <= 10, "{}", fs.held_bytes());
    source.put("a", "rotated!");
    let calls = source.calls(Op::GetSecretValue);
    assert_eq!(
        read_all(&fs, a.ino).await,
        b"aaaaaaaa",
        "its own version, not the current"
    );
    assert_eq!(read_all(&fs, b.ino).await, b"bbbbbbbb");
    assert!(source.calls(Op::GetSecretValue) > calls, "fetched again");
    assert!(fs.held_bytes() <= 10);
}

/// A listing that outweighs the cache's byte budget (a large account, a small budget) cannot
/// stay in the cache; the mount's tree of it stands for the listing TTL all the same, rather
/// than the whole account being listed again for every lookup.
#[tokio::test]
async fn a_listing_larger_than_the_byte_budget_is_asked_for_once_per_listing_ttl() {
    let source = Arc::new(MemorySource::new());
    for i in 0..200 {
        source.put(&format!("many/s{i:03}"), "v");
    }
    let engine = Arc::new(Engine::new(
        source.clone(),
        CacheConfig {
            max_bytes: 1024,
            ..CacheConfig::default()
        },
    ));
    let fs = fs_over(engine.clone(), true);
    let many = fs.lookup(&root_user(), ROOT, "many").await.unwrap();
    for i in 0..50 {
        let file = fs.lookup(&root_user(), many.ino, &format!("s{i:03}")).await;
        assert_eq!(file.unwrap().kind, Kind::File);
    }
    assert!(
        engine.stats().evictions > 0,
        "the listing did not outweigh the budget"
    );
    assert_eq!(source.calls(Op::ListSecrets), 1);
    assert_eq!(source.calls(Op::GetSecretValue), 50);
}
