//! Reading the variables' values: through the same engines, caches and sources as every other
//! command, the current values of each source asked for in batches first (one
//! BatchGetSecretValue per 20 secrets, one GetParameters per 10 parameters, where the policy
//! allows them).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{Entry, From};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::selector::VersionRef;
use crate::settings::Settings;
use crate::source::SourceSpec;
use crate::source::aws::AwsSource;
use crate::source::ssm::{Shape, SsmSource};

/// The engines the entries read from: `--source`'s, and Secrets Manager's and Parameter
/// Store's where ECS entries need them and `--source` is another.
pub struct Engines {
    configured: Arc<Engine>,
    secrets_manager: Option<Arc<Engine>>,
    parameters: Option<Arc<Engine>>,
}

/// Each variable's name and value, in the entries' order; zeroed when dropped.
pub type Values = Vec<(String, Zeroizing<Vec<u8>>)>;

impl Engines {
    pub async fn build(
        settings: &Settings,
        entries: &[Entry],
        check_credentials: bool,
    ) -> Result<Engines> {
        let configured = Arc::new(Engine::new(
            crate::service::build_source(settings, check_credentials).await?,
            settings.source_cache(),
        ));
        let needs = |from: From| entries.iter().any(|e| e.from == from);
        let secrets_manager = match &settings.source {
            _ if !needs(From::SecretsManager) => None,
            SourceSpec::Aws => Some(configured.clone()),
            _ => Some(Arc::new(Engine::new(
                Arc::new(AwsSource::connect(&settings.aws).await?),
                settings.cache,
            ))),
        };
        let parameters = match &settings.source {
            _ if !needs(From::ParameterStore) => None,
            SourceSpec::Ssm => Some(configured.clone()),
            _ => Some(Arc::new(Engine::new(
                Arc::new(SsmSource::connect(&settings.ssm_aws, true, Shape::Value).await?),
                settings.ssm_cache,
            ))),
        };
        Ok(Engines {
            configured,
            secrets_manager,
            parameters,
        })
    }

    pub fn configured(&self) -> &Arc<Engine> {
        &self.configured
    }

    pub fn of(&self, from: From) -> &Arc<Engine> {
        match from {
            From::Configured => &self.configured,
            From::SecretsManager => self.secrets_manager.as_ref().unwrap_or(&self.configured),
            From::ParameterStore => self.parameters.as_ref().unwrap_or(&self.configured),
        }
    }

    /// Each distinct engine once, with the entries it reads.
    pub fn split<'a>(&'a self, entries: &'a [Entry]) -> Vec<(Arc<Engine>, Vec<&'a Entry>)> {
        let mut groups: Vec<(Arc<Engine>, Vec<&Entry>)> = Vec::new();
        for from in [From::Configured, From::SecretsManager, From::ParameterStore] {
            let engine = self.of(from);
            let mine = entries.iter().filter(|e| e.from == from);
            match groups.iter_mut().find(|(e, _)| Arc::ptr_eq(e, engine)) {
                Some((_, group)) => group.extend(mine),
                None => groups.push((engine.clone(), mine.collect())),
            }
        }
        groups
    }
}

/// `values` as a command's environment (`Command::envs`): each name with its exact bytes.
pub fn as_environment(values: &Values) -> impl Iterator<Item = (&str, &std::ffi::OsStr)> {
    use std::os::unix::ffi::OsStrExt;
    values
        .iter()
        .map(|(name, value)| (name.as_str(), std::ffi::OsStr::from_bytes(value)))
}

/// Every entry's value, or the first failure (with the variable's name).
pub async fn read_all(engines: &Engines, entries: &[Entry]) -> Result<Values> {
    for (engine, group) in engines.split(entries) {
        let current: Vec<String> = group
            .iter()
            .filter(|e| e.selector.version_ref() == VersionRef::current())
            .map(|e| e.selector.secret_id.clone())
            .collect();
        if current.len() > 1 {
            engine.prefetch_current(&current).await;
        }
    }
    let mut values = Vec::with_capacity(entries.len());
    for entry in entries {
        let resolved = engines
            .of(entry.from)
            .get(&entry.selector)
            .await
            .map_err(|e| Error::new(e.kind(), format!("{}: {}", entry.name, e.message())))?;
        let bytes = resolved.bytes();
        if bytes.contains(&0) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "{}: the value of {} holds a NUL byte, which an environment variable cannot; read it from a file (the mount, or a template) instead",
                    entry.name, entry.selector.secret_id
                ),
            ));
        }
        values.push((entry.name.clone(), Zeroizing::new(bytes.to_vec())));
    }
    Ok(values)
}
