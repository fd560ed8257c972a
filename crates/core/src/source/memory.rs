//! An in-memory source with call counters, injectable latency and failures: the upstream of
//! the cache's unit tests (under tokio's paused clock) and of the benchmarks. Only in test
//! builds and with the `memory-source` feature.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::{BatchItem, Payload, SecretDescription, SecretListing, SecretSource, SecretValue};
use crate::cache::Op;
use crate::error::{Error, Result};
use crate::selector::{AWSCURRENT, VersionRef};

struct Version {
    id: String,
    stages: Vec<String>,
    bytes: Vec<u8>,
    binary: bool,
    created: SystemTime,
}

#[derive(Default)]
pub struct MemorySource {
    secrets: Mutex<BTreeMap<String, Vec<Version>>>,
    calls: [AtomicUsize; 4],
    failures: Mutex<Vec<(Error, usize)>>,
    latency: Mutex<Duration>,
    next_version: AtomicUsize,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a new AWSCURRENT version, as a rotation does: the old AWSCURRENT becomes
    /// AWSPREVIOUS. Returns the new version id.
    pub fn put(&self, name: &str, value: &str) -> String {
        self.put_version(name, value.as_bytes().to_vec(), false)
    }

    pub fn put_binary(&self, name: &str, value: &[u8]) -> String {
        self.put_version(name, value.to_vec(), true)
    }

    fn put_version(&self, name: &str, bytes: Vec<u8>, binary: bool) -> String {
        let n = self.next_version.fetch_add(1, Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let mut secrets = self.secrets.lock();
        let versions = secrets.entry(name.to_owned()).or_default();
        for v in versions.iter_mut() {
            v.stages.retain(|s| s != "AWSPREVIOUS");
            if let Some(s) = v.stages.iter_mut().find(|s| *s == AWSCURRENT) {
                *s = "AWSPREVIOUS".into();
            }
        }
        versions.push(Version {
            id: id.clone(),
            stages: vec![AWSCURRENT.into()],
            bytes,
            binary,
            created: SystemTime::now(),
        });
        id
    }

    /// Moves a stage label onto a version.
    pub fn set_stage(&self, name: &str, stage: &str, version_id: &str) {
        let mut secrets = self.secrets.lock();
        for v in secrets.get_mut(name).into_iter().flatten() {
            v.stages.retain(|s| s != stage);
            if v.id == version_id {
                v.stages.push(stage.into());
            }
        }
    }

    pub fn delete(&self, name: &str) {
        self.secrets.lock().remove(name);
    }

    pub fn calls(&self, op: Op) -> usize {
        self.calls[op as usize].load(Relaxed)
    }

    /// The next `times` calls, of any operation, fail with `err`.
    pub fn fail_next(&self, err: Error, times: usize) {
        self.failures.lock().push((err, times));
    }

    pub fn clear_failures(&self) {
        self.failures.lock().clear();
    }

    /// Each call sleeps this long first (on tokio's clock, so paused-clock tests stay instant).
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock() = latency;
    }

    async fn enter(&self, op: Op) -> Result<()> {
        self.calls[op as usize].fetch_add(1, Relaxed);
        let latency = *self.latency.lock();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut failures = self.failures.lock();
        if let Some((err, left)) = failures.first_mut() {
            let err = err.clone();
            *left -= 1;
            if *left == 0 {
                failures.remove(0);
            }
            return Err(err);
        }
        Ok(())
    }

    fn read(&self, id: &str, want: &VersionRef) -> Result<SecretValue> {
        let secrets = self.secrets.lock();
        let versions = secrets
            .get(id)
            .ok_or_else(|| Error::not_found(format!("secret {id} not found")))?;
        let stage = match (&want.stage, &want.version_id) {
            (None, None) => Some(AWSCURRENT),
            (s, _) => s.as_deref(),
        };
        let v = versions
            .iter()
            .find(|v| {
                want.version_id.as_ref().is_none_or(|w| *w == v.id)
                    && stage.is_none_or(|s| v.stages.iter().any(|t| t == s))
            })
            .ok_or_else(|| Error::not_found(format!("secret {id} has no version with {want}")))?;
        let payload = if v.binary {
            Payload::Binary(Zeroizing::new(v.bytes.clone()))
        } else {
            Payload::String(Zeroizing::new(
                String::from_utf8_lossy(&v.bytes).into_owned(),
            ))
        };
        Ok(SecretValue {
            arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{id}"),
            name: id.to_owned(),
            version_id: v.id.clone(),
            stages: v.stages.clone(),
            created: Some(v.created),
            payload,
            answer: Default::default(),
        })
    }
}

#[async_trait]
impl SecretSource for MemorySource {
    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue> {
        self.enter(Op::GetSecretValue).await?;
        self.read(secret_id, version)
    }

    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription> {
        self.enter(Op::DescribeSecret).await?;
        let secrets = self.secrets.lock();
        let versions = secrets
            .get(secret_id)
            .ok_or_else(|| Error::not_found(format!("secret {secret_id} not found")))?;
        Ok(SecretDescription {
            arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{secret_id}"),
            name: secret_id.to_owned(),
            versions: versions
                .iter()
                .map(|v| (v.id.clone(), v.stages.clone()))
                .collect(),
            created: versions.first().map(|v| v.created),
            last_changed: versions.last().map(|v| v.created),
        })
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>> {
        self.enter(Op::ListSecrets).await?;
        Ok(self
            .secrets
            .lock()
            .iter()
            .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
            .map(|(name, versions)| SecretListing {
                arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}"),
                name: name.clone(),
                last_changed: versions.last().map(|v| v.created),
            })
            .collect())
    }

    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>> {
        self.enter(Op::BatchGetSecretValue).await?;
        let current = VersionRef::current();
        Ok(secret_ids
            .iter()
            .map(|id| (id.clone(), self.read(id, &current)))
            .collect())
    }
}
