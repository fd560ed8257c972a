//! The watcher over the in-memory source, under tokio's paused clock: what fires, how often,
//! and in which order with the step that comes before.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::advance;

use super::*;
use crate::cache::{CacheConfig, DEFAULT_TTL};
use crate::source::memory::MemorySource;

struct Setup {
    source: Arc<MemorySource>,
    fired: Arc<Mutex<Vec<(usize, Notice)>>>,
    /// What happened, in order: "before SECRET" and "fire SECRET".
    order: Arc<Mutex<Vec<String>>>,
}

fn watching(groups: &[&[&str]]) -> Setup {
    let source = Arc::new(MemorySource::new());
    let engine = Arc::new(Engine::new(source.clone(), CacheConfig::default()));
    tokio::spawn(engine.clone().refresh_ahead());
    let fired = Arc::new(Mutex::new(Vec::new()));
    let order = Arc::new(Mutex::new(Vec::new()));
    let groups = groups
        .iter()
        .map(|g| g.iter().map(|p| WatchPattern::parse(p).unwrap()).collect())
        .collect();
    let (f, o) = (fired.clone(), order.clone());
    let fire: Fire = Arc::new(move |group, noticed: Notice| {
        o.lock().push(format!("fire {}", noticed.secret));
        f.lock().push((group, noticed));
    });
    let o = order.clone();
    let before: BeforeTelling = Arc::new(move |change: &Landed| {
        o.lock().push(format!("before {}", change.secret_id));
    });
    let path_of: PathOf = Arc::new(|s: &Selector| Some(PathBuf::from(format!("/m/{s}"))));
    let watcher = Watcher::new(engine, groups, Duration::from_secs(60), fire)
        .with_paths(path_of)
        .before_telling(before);
    tokio::spawn(watcher.run());
    Setup {
        source,
        fired,
        order,
    }
}

async fn pass(time: Duration) {
    let step = Duration::from_millis(250);
    let mut passed = Duration::ZERO;
    while passed < time {
        advance(step).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        passed += step;
    }
    // The step before telling runs on the blocking pool, in real time: give it some, so that
    // what it holds up has happened before the test looks (a loaded machine is slow to start
    // a blocking thread).
    for _ in 0..10 {
        let _ = tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))).await;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_rotation_fires_once_with_both_versions_after_the_mount_was_told() {
    let setup = watching(&[&["prod/db"]]);
    let v1 = setup.source.put("prod/db", "one");
    pass(Duration::from_secs(10)).await;
    pass(2 * DEFAULT_TTL).await;
    assert!(
        setup.fired.lock().is_empty(),
        "refreshes found the same version"
    );
    let v2 = setup.source.put("prod/db", "two");
    pass(DEFAULT_TTL).await;
    let fired = setup.fired.lock().clone();
    assert_eq!(
        fired,
        vec![(
            0,
            Notice {
                secret: "prod/db".into(),
                selector: "prod/db".into(),
                old_version: Some(v1),
                new_version: v2,
                path: Some("/m/prod/db".into()),
            }
        )]
    );
    assert_eq!(*setup.order.lock(), ["before prod/db", "fire prod/db"]);
}

#[tokio::test(start_paused = true)]
async fn a_key_pattern_fires_only_when_its_key_changes() {
    let setup = watching(&[&["db:password"], &["db"]]);
    setup.source.put("db", r#"{"password":"a","host":"h1"}"#);
    pass(Duration::from_secs(10)).await;
    setup.source.put("db", r#"{"password":"a","host":"h2"}"#);
    pass(DEFAULT_TTL).await;
    let groups: Vec<usize> = setup.fired.lock().iter().map(|(g, _)| *g).collect();
    assert_eq!(
        groups,
        [1],
        "only the whole-secret watch saw the host change"
    );
    setup.source.put("db", r#"{"password":"b","host":"h2"}"#);
    pass(DEFAULT_TTL).await;
    let groups: Vec<usize> = setup.fired.lock().iter().map(|(g, _)| *g).collect();
    assert_eq!(groups, [1, 0, 1]);
    assert_eq!(setup.fired.lock()[1].1.path, Some("/m/db:password".into()));
}

#[tokio::test(start_paused = true)]
async fn a_glob_watches_the_names_a_listing_shows() {
    let setup = watching(&[&["certs/*"]]);
    setup.source.put("certs/a", "1");
    setup.source.put("certs/b", "1");
    setup.source.put("other", "1");
    pass(Duration::from_secs(10)).await;
    setup.source.put("certs/b", "2");
    setup.source.put("other", "2");
    pass(DEFAULT_TTL).await;
    let secrets: Vec<String> = setup
        .fired
        .lock()
        .iter()
        .map(|(_, n)| n.secret.clone())
        .collect();
    assert_eq!(secrets, ["certs/b"]);
}

#[tokio::test(start_paused = true)]
async fn a_watched_secret_created_after_the_start_fires_when_it_appears_and_when_it_rotates() {
    let setup = watching(&[&["hook/a"], &["late/*"]]);
    setup.source.put("late/old", "1");
    pass(Duration::from_secs(120)).await;
    assert!(
        setup.fired.lock().is_empty(),
        "nothing exists yet but late/old"
    );
    let v1 = setup.source.put("hook/a", "one");
    setup.source.put("late/new", "1");
    // A missing name is asked for at least once a minute; a glob's listing every 60 s.
    pass(Duration::from_secs(75)).await;
    let fired: Vec<(usize, String, Option<String>)> = setup
        .fired
        .lock()
        .iter()
        .map(|(g, n)| (*g, n.secret.clone(), n.old_version.clone()))
        .collect();
    assert!(
        fired.contains(&(0, "hook/a".into(), None))
            && fired.contains(&(1, "late/new".into(), None)),
        "{fired:?}"
    );
    assert_eq!(fired.len(), 2, "late/old was there before: {fired:?}");
    let v2 = setup.source.put("hook/a", "two");
    pass(DEFAULT_TTL).await;
    let last = setup.fired.lock().last().cloned().unwrap().1;
    assert_eq!(
        (last.old_version, last.new_version),
        (Some(v1), v2),
        "then a rotation"
    );
}
