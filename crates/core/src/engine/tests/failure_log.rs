//! Failures show in the log: one warn line per secret and class of failure a minute, saying
//! what readers got, then one line when it succeeds again; never a value.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::advance;

use super::transient;
use crate::engine::*;
use crate::source::memory::MemorySource;

/// Everything logged while the returned guard lives, at warn and above.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const VALUE: &str = "s3cret-value-never-logged";

#[tokio::test(start_paused = true)]
async fn a_failing_secret_logs_once_a_minute_with_what_readers_got_then_its_recovery() {
    let (log, _guard) = Captured::start();
    let source = Arc::new(MemorySource::new());
    let engine = Engine::new(
        source.clone(),
        CacheConfig {
            ttl_jitter: 0.0,
            ..CacheConfig::default()
        },
    );
    source.put("db", VALUE);
    source.fail_next(transient(), usize::MAX);
    for _ in 0..5 {
        assert!(engine.get(&Selector::whole("db")).await.is_err());
    }
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    for needle in [
        "fetch failed",
        "\"db\"",
        "ThrottlingException",
        "an error (Unavailable)",
        "left_out=0",
    ] {
        assert!(lines[0].contains(needle), "{needle} in {}", lines[0]);
    }
    advance(Duration::from_secs(61)).await;
    assert!(engine.get(&Selector::whole("db")).await.is_err());
    let lines = log.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[1].contains("left_out=4"), "{}", lines[1]);

    source.clear_failures();
    assert!(engine.get(&Selector::whole("db")).await.is_ok());
    assert!(engine.get(&Selector::whole("db")).await.is_ok());
    let lines = log.lines();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[2].contains("succeeds again"), "{}", lines[2]);

    // A stale value served through a failure says so, with its age.
    advance(crate::cache::DEFAULT_TTL + Duration::from_secs(1)).await;
    source.fail_next(transient(), usize::MAX);
    assert!(engine.get(&Selector::whole("db")).await.unwrap().stale);
    let lines = log.lines();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[3].contains("stale"), "{}", lines[3]);
    assert!(log.lines().iter().all(|l| !l.contains(VALUE)));
}

#[tokio::test(start_paused = true)]
async fn a_missing_secret_is_no_failure_to_log() {
    let (log, _guard) = Captured::start();
    let engine = Engine::new(Arc::new(MemorySource::new()), CacheConfig::default());
    assert!(engine.get(&Selector::whole("nope")).await.is_err());
    assert_eq!(log.lines(), Vec::<String>::new());
}
