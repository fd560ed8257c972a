//! Engines per IAM role: the HTTP API's `roleArn` (the agent's role chaining, v2.1).
//!
//! A request naming a role is answered by that role's own [`Engine`], built on first use over
//! a source whose calls are made as the role (STS AssumeRole through the SDK's provider, on the
//! base credentials), and kept for the life of the process. Each engine has its own caches, so
//! the cache keys effectively include the role and two roles never share a value; all of them
//! share the base engine's one budget of entries and bytes (and its statistics), so memory
//! stays bounded by `cache_size` and `cache_bytes` however many roles are in use.
//!
//! As in the agent, at most `max_roles` roles are kept (20 by default, the agent's default and
//! upper bound); a request for one more is refused, and a role that cannot be assumed takes
//! no place: its refusal is remembered for [`REFUSAL_REMEMBERED`] (so a client asking again
//! and again does not turn each request into an STS call), then it is tried again. See
//! docs/ARCHITECTURE.md#cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::future::BoxFuture;
use tokio::sync::OnceCell;

use super::Engine;
use crate::error::{Error, Result};
use crate::source::DynSource;

/// The agent's default and upper bound of `max_roles`.
pub const DEFAULT_MAX_ROLES: usize = 20;
pub const MAX_ROLES_LIMIT: usize = 20;

/// What a role ARN must look like (the agent's check), before anything is called.
pub const ROLE_ARN_SHAPE: &str = "arn:<partition>:iam::<account>:role/<name>";

/// How long a role that could not be assumed is answered with that refusal without asking
/// STS again (the negative cache's default).
pub const REFUSAL_REMEMBERED: Duration = Duration::from_secs(10);

/// Builds the source of a role (the aws source's `assume_role`), assuming it first, so that a
/// role that cannot be assumed fails here.
pub type Connect = Arc<dyn Fn(String) -> BoxFuture<'static, Result<DynSource>> + Send + Sync>;

/// Whether `arn` is an IAM role's ARN, `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, as the
/// agent checks it (`^arn:[\w-]+:iam::\d{12}:role/[\w+=,.@/-]+$`, in ASCII).
pub fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else {
        return false;
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    arn.len() <= 2048
        && !partition.is_empty()
        && partition.chars().all(|c| word(c) || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && !name.is_empty()
        && name.chars().all(|c| word(c) || "+=,.@/-".contains(c))
}

/// Why a role's engine cannot be had.
#[derive(Debug)]
pub enum RoleRefusal {
    /// `max_roles` roles are in use already.
    TooMany { max: usize },
    /// The role could not be assumed (or its source not built): the cause, for the log.
    NotAssumed(Error),
}

pub struct Roles {
    base: Arc<Engine>,
    connect: Connect,
    max: usize,
    /// One slot per role in use; a slot being filled counts towards the bound.
    slots: parking_lot::Mutex<HashMap<String, Arc<OnceCell<Arc<Engine>>>>>,
    /// Each role's failure (and the bound, under "") is logged once a minute at most.
    logged: crate::log_throttle::LogThrottle,
    /// Roles refused lately: until when, and why.
    refused: parking_lot::Mutex<HashMap<String, (Instant, Error)>>,
    refresh_ahead: bool,
    refreshers: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Roles {
    pub fn new(base: Arc<Engine>, connect: Connect, max: usize) -> Self {
        Roles {
            base,
            connect,
            max: max.clamp(1, MAX_ROLES_LIMIT),
            slots: Default::default(),
            logged: Default::default(),
            refused: Default::default(),
            refresh_ahead: false,
            refreshers: Default::default(),
        }
    }

    /// Runs [`Engine::refresh_ahead`] beside each role's engine, as the long-running front
    /// ends do beside the base engine; stopped when `self` is dropped.
    pub fn refreshing_ahead(mut self) -> Self {
        self.refresh_ahead = true;
        self
    }

    /// How many roles are in use (or being assumed).
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The engine of `role_arn` (checked by [`is_role_arn`] before), built on first use;
    /// concurrent first requests for one role wait for one AssumeRole.
    pub async fn engine(&self, role_arn: &str) -> std::result::Result<Arc<Engine>, RoleRefusal> {
        if let Some((until, err)) = self.refused.lock().get(role_arn)
            && Instant::now() < *until
        {
            return Err(RoleRefusal::NotAssumed(err.clone()));
        }
        let slot = {
            let mut slots = self.slots.lock();
            match slots.get(role_arn) {
                Some(slot) => slot.clone(),
                None if slots.len() >= self.max => {
                    drop(slots);
                    if self.logged.due("").is_some() {
                        tracing::warn!(target: "secretsfs::engine::roles",
                            max_roles = self.max,
                            role = role_arn,
                            "max_roles roles are in use: requests for another role are refused"
                        );
                    }
                    return Err(RoleRefusal::TooMany { max: self.max });
                }
                None => {
                    let slot = Arc::new(OnceCell::new());
                    slots.insert(role_arn.to_owned(), slot.clone());
                    slot
                }
            }
        };
        if let Some(engine) = slot.get() {
            return Ok(engine.clone());
        }
        let built = slot
            .get_or_try_init(|| async {
                let source = (self.connect)(role_arn.to_owned()).await?;
                let engine = Arc::new(self.base.sharing(source));
                if self.refresh_ahead {
                    let task = tokio::spawn(engine.clone().refresh_ahead());
                    self.refreshers.lock().push(task);
                }
                tracing::info!(target: "secretsfs::engine::roles",
                    role = role_arn,
                    roles = self.len(),
                    max_roles = self.max,
                    "role assumed"
                );
                Ok::<_, Error>(engine)
            })
            .await;
        match built {
            Ok(engine) => Ok(engine.clone()),
            Err(err) => {
                {
                    // A role that could not be assumed takes no place.
                    let mut slots = self.slots.lock();
                    if slots
                        .get(role_arn)
                        .is_some_and(|s| Arc::ptr_eq(s, &slot) && s.get().is_none())
                    {
                        slots.remove(role_arn);
                    }
                }
                if self.logged.due(role_arn).is_some() {
                    tracing::warn!(target: "secretsfs::engine::roles", role = role_arn, error = %err, "cannot assume the role: its requests are refused");
                }
                let now = Instant::now();
                let mut refused = self.refused.lock();
                if refused.len() > 4 * MAX_ROLES_LIMIT {
                    refused.retain(|_, (until, _)| now < *until);
                }
                refused.insert(role_arn.to_owned(), (now + REFUSAL_REMEMBERED, err.clone()));
                Err(RoleRefusal::NotAssumed(err))
            }
        }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        for task in self.refreshers.get_mut().drain(..) {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests;
