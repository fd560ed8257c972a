//! Rendering a template (docs/ARCHITECTURE.md#templates) from the cache: its inputs are known
//! before it renders, so they are fetched first, together (AWSCURRENT ones in batches), and
//! the render itself is synchronous over values already in hand.

use std::hash::Hasher;
use std::sync::Arc;

use tokio::time::Instant;
use zeroize::Zeroizing;

use super::{Engine, Resolved};
use crate::error::{Error, ErrorKind};
use crate::source::{Payload, SecretValue};
use crate::template::{Inputs, Template};

/// Why a template could not be rendered; never holds a value.
#[derive(Debug, Clone)]
pub struct RenderFailure {
    /// The input to blame, as the template names it.
    pub input: Option<String>,
    pub cause: String,
    /// An input secret or JSON key that does not exist.
    pub missing: bool,
    /// The class of the failure (an upstream one's, or Internal for the template's own).
    pub kind: ErrorKind,
}

impl std::fmt::Display for RenderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.input {
            Some(input) => write!(f, "input {input:?}: {}", self.cause),
            None => f.write_str(&self.cause),
        }
    }
}

impl std::error::Error for RenderFailure {}

impl RenderFailure {
    fn of_input(input: String, err: &Error) -> Self {
        RenderFailure {
            input: Some(input),
            cause: err.message().to_owned(),
            missing: err.kind() == ErrorKind::NotFound,
            kind: err.kind(),
        }
    }

    /// The error a one-shot command reports (`secretsfs render`).
    pub fn into_error(self, template: &str) -> Error {
        let kind = match (self.missing, self.kind) {
            (true, _) => ErrorKind::NotFound,
            (false, ErrorKind::NotFound) => ErrorKind::Internal,
            (false, kind) => kind,
        };
        Error::new(kind, format!("template {template:?}: {self}"))
    }
}

impl Engine {
    /// Renders `template` from the cache: every input fetched first (AWSCURRENT ones together,
    /// 20 to a BatchGetSecretValue), then the template over them. The result is a version like
    /// any secret's: its bytes, a version id made of its inputs' version ids, the newest of
    /// their dates, fresh as long as the least fresh of them.
    pub async fn render(&self, template: &Template) -> Result<Resolved, RenderFailure> {
        let inputs = template.inputs();
        let mut current: Vec<String> = inputs
            .iter()
            .filter(|s| s.version_ref().is_current())
            .map(|s| s.secret_id.clone())
            .collect();
        current.sort();
        current.dedup();
        self.prefetch_current(&current).await;
        let mut values = Inputs::new();
        let mut versions = std::hash::DefaultHasher::new();
        let mut newest = None;
        let mut stale = false;
        let mut fresh_until: Option<Instant> = None;
        for selector in inputs {
            let resolved = self
                .get(selector)
                .await
                .map_err(|e| RenderFailure::of_input(selector.to_string(), &e))?;
            versions.write(selector.to_string().as_bytes());
            versions.write(resolved.secret.version_id.as_bytes());
            newest = newest.max(resolved.secret.created);
            stale |= resolved.stale;
            fresh_until =
                Some(fresh_until.map_or(resolved.fresh_until, |f| f.min(resolved.fresh_until)));
            values.insert(selector.clone(), Zeroizing::new(resolved.bytes().to_vec()));
        }
        let bytes = template.render(&values).map_err(|e| RenderFailure {
            input: e.input.clone(),
            cause: e.cause.clone(),
            missing: e.missing,
            kind: if e.missing {
                ErrorKind::NotFound
            } else {
                ErrorKind::Internal
            },
        })?;
        Ok(Resolved {
            secret: Arc::new(SecretValue {
                arn: String::new(),
                name: template.name().to_owned(),
                version_id: format!("rendered-{:016x}", versions.finish()),
                stages: Vec::new(),
                created: newest,
                payload: Payload::Binary(bytes),
                answer: Default::default(),
            }),
            extracted: None,
            stale,
            fresh_until: fresh_until.unwrap_or_else(|| Instant::now() + self.config.ttl),
        })
    }
}
