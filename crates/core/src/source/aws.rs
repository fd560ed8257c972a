//! The Secrets Manager source: aws-sdk-secretsmanager on the default credential chain.
//!
//! Region, profile and endpoint come from flags when given and from the SDK's own chain
//! otherwise (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, profiles, SSO, IMDS, ECS, web identity). Every failure
//! is classified by its Secrets Manager error code (see [`crate::error::classify_code`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_secretsmanager::primitives::{Blob, DateTime};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use zeroize::Zeroizing;

use super::response_limit::ResponseLimit;
use super::sdk_error::{chain, classify};
use super::{
    BATCH_LIMIT, BatchItem, Payload, SecretDescription, SecretListing, SecretSource, SecretValue,
};
use crate::cache::stats::count_further_request;
use crate::error::{Error, ErrorKind, Result, Upstream, classify_code, one_line};
use crate::selector::VersionRef;

/// What `--region`, `--profile`, `--endpoint-url` and the timeout say; `None` defers to the
/// SDK's own chain.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// The deadline for one whole call, retries included.
    pub timeout: Option<Duration>,
    /// Credentials in place of the default chain: fixed ones for tests, a pod's identity for
    /// the CSI provider.
    pub credentials: Option<SharedCredentialsProvider>,
    /// A shared credentials file in place of ~/.aws/credentials (the agent's
    /// `credentials_file_path`).
    pub credentials_file: Option<std::path::PathBuf>,
    /// The region's FIPS endpoint; `None` defers to the profile.
    pub use_fips: Option<bool>,
    /// The region's dual-stack endpoint; `None` defers to the profile.
    pub use_dual_stack: Option<bool>,
    /// An IAM role every call is made as (`--role-arn`): STS AssumeRole on the credentials
    /// above, at the same endpoint settings.
    pub role_arn: Option<String>,
}

/// Per attempt, a stuck connection should give way to a retry well before the call's deadline.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPT_TIMEOUT_SHARE: u32 = 3;

pub struct AwsSource {
    client: Client,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// The role's credentials when calls are made as a role, so that the check at start-up
    /// assumes it once and hands the result to the client.
    role: Option<Arc<AssumedRole>>,
    /// The configuration before any role: what a role of a request (`roleArn`) is assumed
    /// with.
    base: aws_config::SdkConfig,
}

/// The SDK's shared configuration for `options`: region, profile, endpoint, credentials,
/// retries and timeouts; each service's client is built from it (this source and
/// [`super::ssm::SsmSource`]).
pub async fn shared_config(options: &AwsOptions) -> Result<aws_config::SdkConfig> {
    let timeout = options.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(timeout)
                .operation_attempt_timeout(timeout / ATTEMPT_TIMEOUT_SHARE)
                .build(),
        );
    if let Some(region) = &options.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &options.endpoint_url {
        if options.use_fips == Some(true) {
            // The SDK would ignore one of them without a word.
            return Err(Error::config(
                "use_fips_endpoint and endpoint_url cannot be combined: a custom endpoint \
                 is used as it is, FIPS or not; drop one of them",
            ));
        }
        loader = loader.endpoint_url(url);
    }
    if let Some(fips) = options.use_fips {
        loader = loader.use_fips(fips);
    }
    if let Some(dual_stack) = options.use_dual_stack {
        loader = loader.use_dual_stack(dual_stack);
    }
    if let Some(path) = &options.credentials_file {
        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
        // The SDK reads the file whole, whatever it is: a FIFO would hang the first call, a
        // device fill memory. A missing one stays the SDK's to report, as before.
        if path.exists() {
            crate::host_file::read(path, crate::host_file::CONFIG).map_err(|why| {
                Error::config(format!("credentials_file_path {}: {why}", path.display()))
            })?;
        }
        let files = EnvConfigFiles::builder()
            .include_default_config_file(true)
            .with_file(EnvConfigFileKind::Credentials, path)
            .build();
        loader = loader.profile_files(files);
    }
    if let Some(credentials) = &options.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(Error::config(
            "no AWS region: pass --region or set AWS_REGION (or a region in the AWS profile)",
        ));
    }
    Ok(shared)
}

impl AwsSource {
    pub async fn connect(options: &AwsOptions) -> Result<Self> {
        let shared = shared_config(options).await?;
        match &options.role_arn {
            Some(role_arn) => Ok(AwsSource::as_role(&shared, role_arn).await),
            None => Ok(AwsSource::with(&shared, None)),
        }
    }

    /// A source on `base` as it is: the SDK-answer fuzz target's, whose configuration has no
    /// retries.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub fn from_sdk_config(base: &aws_config::SdkConfig) -> AwsSource {
        AwsSource::with(base, None)
    }

    fn with(base: &aws_config::SdkConfig, role: Option<Arc<AssumedRole>>) -> AwsSource {
        let mut config = aws_sdk_secretsmanager::config::Builder::from(base)
            .interceptor(UserAgent)
            .interceptor(ResponseLimit);
        let credentials = match &role {
            Some(role) => {
                let shared = SharedCredentialsProvider::new(RoleCredentials(role.clone()));
                config = config.credentials_provider(shared.clone());
                Some(shared)
            }
            None => base.credentials_provider(),
        };
        AwsSource {
            client: Client::from_conf(config.build()),
            credentials,
            role,
            base: base.clone(),
        }
    }

    /// A source whose calls are made as `role_arn`, assumed with `base`'s credentials, region,
    /// endpoint and timeouts (`AWS_ENDPOINT_URL` and `--endpoint-url` apply to STS as well;
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER` does not). Nothing is called yet.
    async fn as_role(base: &aws_config::SdkConfig, role_arn: &str) -> AwsSource {
        AwsSource::with(base, Some(Role::new(base, role_arn).await.0))
    }

    /// This source's base configuration as `role_arn` (a request's `roleArn`), the role
    /// assumed now, as the agent does, so that a role that cannot be assumed is refused
    /// before any Secrets Manager call; the client starts with these credentials, so this is
    /// the role's one AssumeRole until they near their expiry.
    pub async fn assume_role(&self, role_arn: &str) -> Result<AwsSource> {
        let source = AwsSource::as_role(&self.base, role_arn).await;
        if let Some(role) = &source.role {
            role.prime().await.map_err(|e| {
                Error::new(
                    ErrorKind::AccessDenied,
                    format!("assuming role {role_arn}: {}", chain(&e)),
                )
            })?;
        }
        Ok(source)
    }

    /// Resolves credentials now, so that a daemon without any fails at start-up with a clear
    /// cause instead of on every read.
    pub async fn check_credentials(&self) -> Result<()> {
        if let Some(role) = &self.role {
            return role.prime().await.map_err(|e| {
                Error::config(format!("cannot assume the role of role_arn: {}", chain(&e)))
            });
        }
        check_credentials(self.credentials.as_ref()).await
    }
}

/// Resolves credentials now (see [`AwsSource::check_credentials`]).
pub(super) async fn check_credentials(
    credentials: Option<&aws_credential_types::provider::SharedCredentialsProvider>,
) -> Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = credentials else {
        return Err(Error::config("no AWS credentials provider is configured"));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| Error::config(format!("no usable AWS credentials: {}", chain(&e))))
}

/// The session name of every AssumeRole, as CloudTrail shows it (the agent says
/// `secrets-manager-provider`).
pub const ROLE_SESSION_NAME: &str = "secretsfs";

/// A role's credentials: the SDK's AssumeRoleProvider (one AssumeRole a call, no cache of its
/// own; the client's identity cache keeps them until near their expiry and then asks again),
/// and the credentials of a check made before the client's first call, handed to it once.
#[derive(Debug)]
struct AssumedRole {
    provider: aws_config::sts::AssumeRoleProvider,
    primed: parking_lot::Mutex<Option<aws_credential_types::Credentials>>,
}

impl AssumedRole {
    /// Assumes the role now, keeping the credentials for the client's first call.
    async fn prime(&self) -> std::result::Result<(), CredentialsError> {
        use aws_credential_types::provider::ProvideCredentials;
        let credentials = self.provider.provide_credentials().await?;
        *self.primed.lock() = Some(credentials);
        Ok(())
    }
}

#[derive(Debug)]
struct RoleCredentials(Arc<AssumedRole>);

/// A role for a client of another service (Parameter Store), with the same priming: the
/// start-up check's AssumeRole is the one the client's first call uses.
#[derive(Debug, Clone)]
pub(super) struct Role(Arc<AssumedRole>);

impl Role {
    pub(super) async fn new(base: &aws_config::SdkConfig, role_arn: &str) -> Role {
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .configure(base)
            .session_name(ROLE_SESSION_NAME)
            .build()
            .await;
        Role(Arc::new(AssumedRole {
            provider,
            primed: parking_lot::Mutex::new(None),
        }))
    }

    pub(super) fn credentials(&self) -> SharedCredentialsProvider {
        SharedCredentialsProvider::new(RoleCredentials(self.0.clone()))
    }

    pub(super) async fn check(&self) -> Result<()> {
        self.0.prime().await.map_err(|e| {
            Error::config(format!("cannot assume the role of role_arn: {}", chain(&e)))
        })
    }
}

impl aws_credential_types::provider::ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let primed = self.0.primed.lock().take();
            match primed {
                Some(credentials) => Ok(credentials),
                None => self.0.provider.provide_credentials().await,
            }
        })
    }
}

/// Appends `secretsfs/<version>` to the user agent, so that CloudTrail and the service's own
/// metrics can tell secretsfs's calls apart (the SDK's `app_name` does not allow a `/`).
#[derive(Debug)]
pub(super) struct UserAgent;

const USER_AGENT_SUFFIX: &str = concat!("secretsfs/", env!("CARGO_PKG_VERSION"));

impl Intercept for UserAgent {
    fn name(&self) -> &'static str {
        "secretsfs-user-agent"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let headers = context.request_mut().headers_mut();
        for header in ["user-agent", "x-amz-user-agent"] {
            if let Some(current) = headers.get(header) {
                let appended = format!("{current} {USER_AGENT_SUFFIX}");
                headers.insert(header, appended);
            }
        }
        Ok(())
    }
}

/// The fields GetSecretValue and BatchGetSecretValue answer alike.
struct ValueParts {
    arn: Option<String>,
    name: Option<String>,
    version_id: Option<String>,
    secret_string: Option<String>,
    secret_binary: Option<Blob>,
    version_stages: Option<Vec<String>>,
    created_date: Option<DateTime>,
}

impl ValueParts {
    fn into_value(self) -> SecretValue {
        let payload = match (self.secret_string, self.secret_binary) {
            (Some(s), _) => Payload::String(Zeroizing::new(s)),
            (None, Some(b)) => Payload::Binary(Zeroizing::new(b.into_inner())),
            (None, None) => Payload::String(Zeroizing::new(String::new())),
        };
        SecretValue {
            arn: self.arn.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            version_id: self.version_id.unwrap_or_default(),
            stages: self.version_stages.unwrap_or_default(),
            created: self.created_date.and_then(system_time),
            payload,
            answer: Default::default(),
        }
    }
}

pub(super) fn system_time(d: DateTime) -> Option<SystemTime> {
    SystemTime::try_from(d).ok()
}

#[async_trait]
impl SecretSource for AwsSource {
    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_stage(version.stage.clone())
            .set_version_id(version.version_id.clone())
            .send()
            .await
            .map_err(|e| classify(&format!("GetSecretValue {secret_id} ({version})"), e))?;
        Ok(ValueParts {
            arn: out.arn,
            name: out.name,
            version_id: out.version_id,
            secret_string: out.secret_string,
            secret_binary: out.secret_binary,
            version_stages: out.version_stages,
            created_date: out.created_date,
        }
        .into_value())
    }

    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| classify(&format!("DescribeSecret {secret_id}"), e))?;
        Ok(SecretDescription {
            arn: out.arn.unwrap_or_default(),
            name: out.name.unwrap_or_default(),
            versions: out
                .version_ids_to_stages
                .unwrap_or_default()
                .into_iter()
                .collect(),
            created: out.created_date.and_then(system_time),
            last_changed: out.last_changed_date.and_then(system_time),
        })
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>> {
        let mut request = self.client.list_secrets();
        if let Some(p) = prefix.filter(|p| !p.is_empty()) {
            request = request.filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(p)
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        let mut listing = Vec::new();
        let mut requests = 0;
        while let Some(page) = pages.next().await {
            requests += 1;
            if requests > 1 {
                count_further_request();
            }
            let page = page.map_err(|e| classify("ListSecrets", e))?;
            for entry in page.secret_list.unwrap_or_default() {
                let Some(name) = entry.name else { continue };
                // The filter is the API's; checking again keeps the prefix exact whatever an
                // endpoint (moto, a proxy, an older API version) makes of it.
                if prefix.is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                listing.push(SecretListing {
                    arn: entry.arn.unwrap_or_default(),
                    name,
                    last_changed: entry.last_changed_date.and_then(system_time),
                });
            }
        }
        Ok(listing)
    }

    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>> {
        if secret_ids.len() > BATCH_LIMIT {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("BatchGetSecretValue takes at most {BATCH_LIMIT} ids"),
            ));
        }
        if secret_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pages = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(secret_ids.to_vec()))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        let mut failed = Vec::new();
        let mut requests = 0;
        while let Some(page) = pages.next().await {
            requests += 1;
            if requests > 1 {
                count_further_request();
            }
            let page = page.map_err(|e| classify("BatchGetSecretValue", e))?;
            for entry in page.secret_values.unwrap_or_default() {
                found.push(
                    ValueParts {
                        arn: entry.arn,
                        name: entry.name,
                        version_id: entry.version_id,
                        secret_string: entry.secret_string,
                        secret_binary: entry.secret_binary,
                        version_stages: entry.version_stages,
                        created_date: entry.created_date,
                    }
                    .into_value(),
                );
            }
            failed.extend(page.errors.unwrap_or_default());
        }
        // Answers name secrets by name and ARN; match them back to the ids as asked. An id
        // matched by neither (a partial ARN, or an id asked twice in two spellings) is left out:
        // the caller fetches it alone rather than take it for missing.
        let items = secret_ids
            .iter()
            .filter_map(|id| {
                if let Some(pos) = found.iter().position(|v| v.name == *id || v.arn == *id) {
                    return Some((id.clone(), Ok(found.swap_remove(pos))));
                }
                let err = failed
                    .iter()
                    .find(|e| e.secret_id.as_deref() == Some(id.as_str()))
                    .map(|e| {
                        let code = e
                            .error_code
                            .clone()
                            .unwrap_or_else(|| "UnknownError".into());
                        Error::upstream(
                            classify_code(&code),
                            format!(
                                "BatchGetSecretValue {id}: {}: {}",
                                one_line(&code),
                                one_line(e.message.as_deref().unwrap_or("no message"))
                            ),
                            Upstream {
                                code,
                                status: None,
                                message: None,
                            },
                        )
                    })?;
                Some((id.clone(), Err(err)))
            })
            .collect();
        Ok(items)
    }
}

#[cfg(test)]
mod tests;
