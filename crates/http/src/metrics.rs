//! `/metrics` in the Prometheus text format: the cache's counters, HTTP answers by status, and
//! the latency of upstream calls by operation. It holds no secret values and no secret names.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use secretsfs_core::cache::{Op, StatsSnapshot};
use secretsfs_core::engine::Engine;
use secretsfs_core::engine::UPSTREAM_LATENCY;

/// Upstream latencies span a cached-credentials round trip to a throttled retry.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use (one per process, like the cache).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(UPSTREAM_LATENCY.into()), &LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The statuses the API answers, each with its counter registered once: a counter looked up
/// per request would build its key (and allocate) on every answer.
const STATUSES: [u16; 12] = [200, 400, 401, 403, 404, 405, 408, 429, 500, 502, 503, 504];

static RESPONSE_COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();

pub fn count_response(status: u16) {
    let counters = RESPONSE_COUNTERS.get_or_init(|| {
        STATUSES
            .iter()
            .map(|s| metrics::counter!("secretsfs_http_requests_total", "status" => s.to_string()))
            .collect()
    });
    match STATUSES.iter().position(|s| *s == status) {
        Some(i) => counters[i].increment(1),
        None => metrics::counter!("secretsfs_http_requests_total", "status" => status.to_string())
            .increment(1),
    }
}

/// The exposition text, with the cache counters as they are now: the main engine's, and the
/// parameters route's (`secretsfs_parameters_*`) once it has engines.
pub fn render(main: &Engine, parameters: Option<&StatsSnapshot>) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    record("secretsfs", &main.stats(), |op| main.operation_name(op));
    if let Some(stats) = parameters {
        record(
            "secretsfs_parameters",
            stats,
            secretsfs_core::source::ssm::operation_name,
        );
    }
    handle.run_upkeep();
    handle.render()
}

fn record(prefix: &str, stats: &StatsSnapshot, operation_name: impl Fn(Op) -> &'static str) {
    let counters = [
        ("secretsfs_cache_hits_total", stats.hits),
        ("secretsfs_cache_negative_hits_total", stats.negative_hits),
        ("secretsfs_cache_misses_total", stats.misses),
        (
            "secretsfs_cache_coalesced_waits_total",
            stats.coalesced_waits,
        ),
        ("secretsfs_cache_stale_serves_total", stats.stale_serves),
        (
            "secretsfs_cache_refreshes_ahead_total",
            stats.refreshes_ahead,
        ),
        ("secretsfs_cache_evictions_total", stats.evictions),
        ("secretsfs_upstream_errors_total", stats.upstream_errors),
    ];
    for (name, value) in counters {
        let name = format!("{prefix}{}", name.trim_start_matches("secretsfs"));
        metrics::counter!(name).absolute(value);
    }
    for op in Op::ALL {
        metrics::counter!(format!("{prefix}_upstream_calls_total"),
            "operation" => operation_name(op))
        .absolute(stats.upstream_calls.get(op));
    }
}
