//! The engines behind the HTTP API's Parameter Store route (`/systemsmanager/parameters/get`),
//! built at its first request: each its own [`Engine`] over an [`SsmSource`] that keeps
//! GetParameter's whole `Parameter` object ([`Shape::Answer`]), one with WithDecryption and
//! one without, since a SecureString's two answers differ (so they never share a cache key).
//! They use the settings' cache knobs with `ssm_ttl`, and are apart from the Secrets Manager
//! engine (and from a `--source ssm` mount's, whose values are the bare values).

use std::sync::Arc;

use tokio::sync::OnceCell;

use secretsfs_core::cache::CacheConfig;
use secretsfs_core::engine::Engine;
use secretsfs_core::error::Result;
use secretsfs_core::source::aws::AwsOptions;
use secretsfs_core::source::ssm::{Shape, SsmSource};

pub struct ParameterEngines {
    options: AwsOptions,
    cache: CacheConfig,
    decrypted: OnceCell<Arc<Engine>>,
    encrypted: OnceCell<Arc<Engine>>,
}

impl ParameterEngines {
    pub fn new(options: AwsOptions, cache: CacheConfig) -> Self {
        ParameterEngines {
            options,
            cache,
            decrypted: OnceCell::new(),
            encrypted: OnceCell::new(),
        }
    }

    /// The engine answering WithDecryption=`decrypt`, built (client included) the first time.
    pub async fn engine(&self, decrypt: bool) -> Result<Arc<Engine>> {
        let cell = if decrypt {
            &self.decrypted
        } else {
            &self.encrypted
        };
        cell.get_or_try_init(|| async {
            let source = SsmSource::connect(&self.options, decrypt, Shape::Answer).await?;
            let engine = Arc::new(Engine::new(Arc::new(source), self.cache));
            // Parameters read within their TTL are refreshed before it ends, as secrets are.
            tokio::spawn(engine.clone().refresh_ahead());
            Ok(engine)
        })
        .await
        .cloned()
    }

    /// The counters of the engines built so far, added up; none before the first request.
    pub fn stats(&self) -> Option<secretsfs_core::cache::StatsSnapshot> {
        let built = [self.decrypted.get(), self.encrypted.get()];
        let mut engines = built.into_iter().flatten();
        let mut total = engines.next()?.stats();
        for engine in engines {
            total.absorb(&engine.stats());
        }
        Some(total)
    }
}
