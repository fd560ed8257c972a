//! Whose credentials a pod's objects are read with, and the cache that goes with them.
//!
//! One [`Identity`] per IAM role (IRSA), per service account (EKS Pod Identity, whose agent
//! does not say which role it answered for), or the node's own (only with
//! `--allow-node-identity`). Each has its own engines (one per region and service), so a value
//! fetched for one identity is never served to another; all share one budget of entries and
//! bytes. A pod is served from an identity's engines only once its own token has been accepted
//! for that identity (STS or the agent answered credentials for it), remembered per service
//! account until those credentials expire (see [`ACCEPTANCE_MARGIN`]).

mod credentials;
pub mod pod_identity;
pub mod sts;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use secretsfs_core::Engine;
use secretsfs_core::cache::budget::Budget;
use secretsfs_core::cache::{CacheConfig, Stats};
use secretsfs_core::source::DynSource;
use secretsfs_core::source::aws::{AwsOptions, AwsSource};
use secretsfs_core::source::ssm::{Shape, SsmSource};
use tokio::sync::OnceCell;

use self::credentials::IdentityCredentials;
use crate::failure::{self, Failure};
use crate::kube::KubeApi;
use crate::request::MountParams;
use crate::spec::ObjectType;

/// An acceptance is renewed this long before the credentials it gave expire, so that a pod
/// mounting then renews them for the identity's refreshes.
pub const ACCEPTANCE_MARGIN: Duration = Duration::from_secs(600);

/// The most identities kept: each costs a few engines and their refresh tasks.
pub const MAX_IDENTITIES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityKey {
    /// IRSA: the role.
    Role(String),
    /// EKS Pod Identity: the namespace and service account the agent answered for.
    ServiceAccount { namespace: String, name: String },
    /// The provider's own credentials.
    Node,
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKey::Role(role) => write!(f, "role {role}"),
            IdentityKey::ServiceAccount { namespace, name } => {
                write!(f, "Pod Identity of {namespace}/{name}")
            }
            IdentityKey::Node => f.write_str("the node's identity"),
        }
    }
}

/// An engine being made, or made: concurrent first mounts wait for one.
type EngineSlot = Arc<OnceCell<Arc<Engine>>>;

/// One identity's credentials and engines.
pub struct Identity {
    pub key: IdentityKey,
    /// `None` for the node's identity: the default chain.
    credentials: Option<IdentityCredentials>,
    engines: parking_lot::Mutex<HashMap<(String, ObjectType), EngineSlot>>,
    refreshers: parking_lot::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        for refresher in self.refreshers.lock().drain(..) {
            refresher.abort();
        }
    }
}

pub struct Identities {
    base: AwsOptions,
    cache: CacheConfig,
    budget: Arc<Budget>,
    stats: Arc<Stats>,
    allow_node_identity: bool,
    kube: Arc<KubeApi>,
    sts: sts::Sts,
    agent: pod_identity::PodIdentityAgent,
    by_key: parking_lot::Mutex<HashMap<IdentityKey, Arc<Identity>>>,
    /// Until when a service account's token is taken as accepted for an identity.
    accepted: parking_lot::Mutex<HashMap<Acceptance, SystemTime>>,
    /// Whose acceptance is being asked for.
    accepting: parking_lot::Mutex<HashMap<Acceptance, Arc<tokio::sync::Mutex<()>>>>,
}

/// An identity, and the namespace and service account whose token was accepted for it.
type Acceptance = (IdentityKey, String, String);

pub struct IdentitiesConfig {
    /// Endpoint, timeout and FIPS settings every client starts from; no region, no
    /// credentials.
    pub base: AwsOptions,
    pub cache: CacheConfig,
    pub allow_node_identity: bool,
    pub pod_identity_endpoint: Option<String>,
}

impl Identities {
    pub fn new(config: IdentitiesConfig, kube: Arc<KubeApi>) -> Result<Identities, String> {
        Ok(Identities {
            sts: sts::Sts::new(config.base.clone()),
            agent: pod_identity::PodIdentityAgent::new(config.pod_identity_endpoint)?,
            base: config.base,
            budget: Budget::new(config.cache.limits()),
            stats: Arc::new(Stats::default()),
            cache: config.cache,
            allow_node_identity: config.allow_node_identity,
            kube,
            by_key: Default::default(),
            accepted: Default::default(),
            accepting: Default::default(),
        })
    }

    /// Upstream calls made for every identity so far (the cache's statistics).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The identity `params`' pod reads with, after its token has been accepted for it.
    pub async fn resolve(
        &self,
        params: &MountParams,
        regions: &[String],
    ) -> Result<Arc<Identity>, Failure> {
        if params.tokens.is_none() && self.allow_node_identity {
            return self.identity(IdentityKey::Node, None);
        }
        let token = params
            .identity_token()
            .map_err(|e| Failure::new(failure::MISSING_TOKEN, e.0))?;
        let (namespace, account) = (&params.pod_namespace, &params.service_account);
        crate::token::check(
            token,
            namespace,
            account,
            params.identity_audience(),
            unix_now(),
        )
        .map_err(|why| Failure::new(failure::INVALID_TOKEN, why))?;
        let key = if params.use_pod_identity {
            IdentityKey::ServiceAccount {
                namespace: namespace.clone(),
                name: account.clone(),
            }
        } else {
            IdentityKey::Role(self.role_of(params).await?)
        };
        let acceptance = (key.clone(), namespace.clone(), account.clone());
        if let Some(identity) = self.accepted_identity(&acceptance) {
            return Ok(identity);
        }
        // One acceptance at a time per service account and identity: the pods of a rollout
        // that arrive together wait for the first one's STS call instead of each making one.
        let turn = self
            .accepting
            .lock()
            .entry(acceptance.clone())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        if let Some(identity) = self.accepted_identity(&acceptance) {
            return Ok(identity);
        }
        let now = SystemTime::now();
        let credentials = match &key {
            IdentityKey::Role(role) => {
                let session = sts::session_name(namespace, account);
                // STS is regional: an outage of the primary's is met in the failover region.
                let mut assumed = self.sts.assume(&regions[0], role, token, &session).await;
                if let (Err(f), Some(failover)) = (&assumed, regions.get(1))
                    && f.code == failure::STS_UNAVAILABLE
                {
                    tracing::info!(target: "secretsfs::csi", region = %regions[0], failover_region = %failover,
                        cause = %f.cause, "asking STS in the failover region");
                    assumed = self.sts.assume(failover, role, token, &session).await;
                }
                assumed?
            }
            _ => {
                self.agent
                    .credentials(params.preferred_address_type, token)
                    .await?
            }
        };
        let until = credentials
            .expiry()
            .map(|at| at.checked_sub(ACCEPTANCE_MARGIN).unwrap_or(at))
            .unwrap_or(now + Duration::from_secs(900));
        let identity = self.identity(key, Some(credentials))?;
        self.accepted.lock().insert(acceptance, until);
        Ok(identity)
    }

    /// The identity of `acceptance`, if its service account's token was accepted for it and
    /// that has not run out.
    fn accepted_identity(&self, acceptance: &Acceptance) -> Option<Arc<Identity>> {
        let accepted = self
            .accepted
            .lock()
            .get(acceptance)
            .is_some_and(|until| SystemTime::now() < *until);
        accepted
            .then(|| self.by_key.lock().get(&acceptance.0).cloned())
            .flatten()
    }

    /// The role of an IRSA pod: the class's `roleArn`, else its service account's annotation.
    async fn role_of(&self, params: &MountParams) -> Result<String, Failure> {
        let (namespace, account) = (&params.pod_namespace, &params.service_account);
        let role = match &params.role_arn {
            Some(role) => role.clone(),
            None => self
                .kube
                .service_account_role(namespace, account)
                .await
                .map_err(|why| {
                    Failure::new(
                        failure::KUBERNETES_API,
                        format!("failed to get service account {namespace}/{account}: {why}"),
                    )
                })?
                .ok_or_else(|| {
                    Failure::new(
                        failure::NO_ROLE,
                        format!(
                            "An IAM role must be associated with service account {account} (namespace: {namespace})"
                        ),
                    )
                })?,
        };
        if !secretsfs_core::engine::roles::is_role_arn(&role) {
            return Err(Failure::new(
                failure::INVALID_CLASS,
                format!(
                    "the role {role:?} is not a role ARN ({})",
                    secretsfs_core::engine::roles::ROLE_ARN_SHAPE
                ),
            ));
        }
        Ok(role)
    }

    /// The identity of `key`, made on first use; `credentials` replace its current ones.
    fn identity(
        &self,
        key: IdentityKey,
        credentials: Option<aws_credential_types::Credentials>,
    ) -> Result<Arc<Identity>, Failure> {
        let mut by_key = self.by_key.lock();
        let identity = match by_key.get(&key) {
            Some(identity) => identity.clone(),
            None => {
                if by_key.len() >= MAX_IDENTITIES {
                    self.evict_idle(&mut by_key);
                }
                if by_key.len() >= MAX_IDENTITIES {
                    return Err(Failure::new(
                        failure::TOO_MANY_IDENTITIES,
                        format!("{MAX_IDENTITIES} identities are in use on this node"),
                    ));
                }
                let identity = Arc::new(Identity {
                    credentials: match key {
                        IdentityKey::Node => None,
                        _ => Some(IdentityCredentials::new(key.to_string())),
                    },
                    key: key.clone(),
                    engines: Default::default(),
                    refreshers: Default::default(),
                });
                by_key.insert(key, identity.clone());
                identity
            }
        };
        if let (Some(holder), Some(credentials)) = (&identity.credentials, credentials) {
            holder.replace(credentials);
        }
        Ok(identity)
    }

    /// Forgets the identities no pod holds an unexpired acceptance for (their engines, their
    /// refreshes and their cached values go with them), and the acceptances that ran out.
    fn evict_idle(&self, by_key: &mut HashMap<IdentityKey, Arc<Identity>>) {
        let now = SystemTime::now();
        let mut accepted = self.accepted.lock();
        accepted.retain(|_, until| now < *until);
        self.accepting.lock().retain(|acceptance, turn| {
            accepted.contains_key(acceptance) || Arc::strong_count(turn) > 1
        });
        let before = by_key.len();
        by_key.retain(|key, _| {
            *key == IdentityKey::Node || accepted.keys().any(|(held, _, _)| held == key)
        });
        tracing::info!(target: "secretsfs::csi", evicted = before - by_key.len(),
            "identities without an unexpired acceptance forgotten");
    }

    /// `identity`'s engine for `object_type` in `region`, made on first use, with refresh ahead.
    pub async fn engine(
        &self,
        identity: &Identity,
        region: &str,
        object_type: ObjectType,
    ) -> Result<Arc<Engine>, Failure> {
        let cell = identity
            .engines
            .lock()
            .entry((region.to_owned(), object_type))
            .or_default()
            .clone();
        let engine = cell
            .get_or_try_init(|| async {
                let options = AwsOptions {
                    region: Some(region.to_owned()),
                    credentials: identity
                        .credentials
                        .clone()
                        .map(SharedCredentialsProvider::new)
                        .or_else(|| self.base.credentials.clone()),
                    role_arn: None,
                    ..self.base.clone()
                };
                let source: DynSource = match object_type {
                    ObjectType::SecretsManager => Arc::new(AwsSource::connect(&options).await?),
                    ObjectType::ParameterStore => {
                        Arc::new(SsmSource::connect(&options, true, Shape::Value).await?)
                    }
                };
                let engine = Arc::new(Engine::with_budget(
                    source,
                    self.cache,
                    self.budget.clone(),
                    self.stats.clone(),
                ));
                let refresher = tokio::spawn(engine.clone().refresh_ahead());
                identity.refreshers.lock().push(refresher.abort_handle());
                Ok::<_, secretsfs_core::Error>(engine)
            })
            .await
            .map_err(|e| Failure::of_read(&e))?;
        Ok(engine.clone())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
