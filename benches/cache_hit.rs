//! A cache hit through the engine's non-blocking path (what a FUSE worker does for a cached
//! file), from one thread, and from two threads reading different secrets: with no shared
//! lock the two-thread time per read stays close to the one-thread time.
//!
//! Run: `cargo bench --bench cache_hit --features memory-source`. Figures go in
//! docs/cache.md ("Which crate, and why").

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use secretsfs::Engine;
use secretsfs::Selector;
use secretsfs::cache::CacheConfig;
use secretsfs::source::memory::MemorySource;

fn warm_engine() -> (tokio::runtime::Runtime, Engine) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let source = Arc::new(MemorySource::new());
    let value = format!(r#"{{"user":"app","password":"{}"}}"#, "x".repeat(1000));
    for i in 0..100 {
        source.put(&format!("bench/s{i}"), &value);
    }
    let engine = Engine::new(source, CacheConfig::default());
    runtime.block_on(async {
        for i in 0..100 {
            engine
                .get(&Selector::whole(format!("bench/s{i}")))
                .await
                .unwrap();
        }
    });
    (runtime, engine)
}

fn cache_hit(c: &mut Criterion) {
    let (_runtime, engine) = warm_engine();
    let a = Selector::parse("bench/s1").unwrap();
    let b = Selector::parse("bench/s2").unwrap();
    let key = Selector::parse("bench/s3:user").unwrap();

    c.bench_function("cache_hit/1_thread", |bench| {
        bench.iter(|| {
            black_box(
                engine
                    .get_cached(black_box(&a))
                    .unwrap()
                    .unwrap()
                    .bytes()
                    .len(),
            )
        })
    });
    c.bench_function("cache_hit/1_thread_json_key", |bench| {
        bench.iter(|| {
            black_box(
                engine
                    .get_cached(black_box(&key))
                    .unwrap()
                    .unwrap()
                    .bytes()
                    .len(),
            )
        })
    });
    // Time per read on each of two threads, each on its own secret.
    c.bench_function("cache_hit/2_threads_different_secrets", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for selector in [&a, &b] {
                    let engine = &engine;
                    scope.spawn(move || {
                        for _ in 0..iters {
                            let hit = engine.get_cached(black_box(selector)).unwrap().unwrap();
                            black_box(hit.bytes().len());
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
}

criterion_group!(benches, cache_hit);
criterion_main!(benches);
