//! The Parameter Store source: aws-sdk-ssm on the same SDK configuration as
//! [`super::aws::AwsSource`] (region, profile, endpoint, credentials, retries, the UserAgent
//! interceptor), with its own timeout.
//!
//! The four operations map onto Parameter Store's (docs/ARCHITECTURE.md#adding-a-source):
//!
//! - GetSecretValue: GetParameter, WithDecryption as built (SecureString decrypted for the
//!   mount). The version maps onto Parameter Store's selector: AWSCURRENT (or none) is the
//!   latest version, another stage a label (`NAME:label`), a version id the version number
//!   (`NAME:3`). The version id of a value is its version number as text.
//! - ListSecrets: GetParametersByPath, recursive, 10 a page, every page.
//! - BatchGetSecretValue: GetParameters, at most 10 names a call ([`SSM_BATCH_LIMIT`]); names
//!   in InvalidParameters are answered `ParameterNotFound`.
//! - DescribeSecret: GetParameterHistory: version number -> labels, the latest version also
//!   labelled AWSCURRENT, so the stages layout shows it.
//!
//! Errors go through [`super::sdk_error::classify`] and [`crate::error::classify_code`], which
//! knows Parameter Store's codes (ParameterNotFound, ParameterVersionNotFound, InvalidKeyId).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::Parameter;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::aws::{AwsOptions, UserAgent, check_credentials, shared_config, system_time};
use super::response_limit::ResponseLimit;
use super::sdk_error::classify;
use super::{BatchItem, Payload, SecretDescription, SecretListing, SecretSource, SecretValue};
use crate::cache::stats::count_further_request;
use crate::error::{Error, ErrorKind, Result, Upstream};
use crate::selector::{AWSCURRENT, VersionRef};

/// GetParameters takes at most 10 names.
pub const SSM_BATCH_LIMIT: usize = 10;
/// GetParametersByPath answers at most 10 parameters a page.
const PAGE_SIZE: i32 = 10;
/// GetParameterHistory answers at most 50 versions a page.
const HISTORY_PAGE_SIZE: i32 = 50;

/// What a value's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The parameter's value, as a file of the mount shows it.
    Value,
    /// GetParameter's `Parameter` object as JSON ([`ParameterAnswer`]), for the HTTP route,
    /// which answers it as the service does.
    Answer,
}

pub struct SsmSource {
    client: Client,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// `role_arn`'s, when calls are made as a role.
    role: Option<super::aws::Role>,
    decrypt: bool,
    shape: Shape,
}

/// GetParameter's `Parameter` as the service's JSON names it, fields in its order. The value
/// is zeroed when this is dropped.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParameterAnswer {
    #[serde(rename = "ARN", skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// Epoch seconds, as the service's JSON protocol writes timestamps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_date: Option<f64>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_result: Option<String>,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub value: String,
    pub version: i64,
}

impl Drop for ParameterAnswer {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl SsmSource {
    /// A client on `options` (its own timeout included). `decrypt` is WithDecryption.
    pub async fn connect(options: &AwsOptions, decrypt: bool, shape: Shape) -> Result<Self> {
        let shared = shared_config(options).await?;
        let mut config = aws_sdk_ssm::config::Builder::from(&shared)
            .interceptor(UserAgent)
            .interceptor(ResponseLimit);
        let role = match &options.role_arn {
            Some(role_arn) => Some(super::aws::Role::new(&shared, role_arn).await),
            None => None,
        };
        if let Some(role) = &role {
            // Renewed before expiry by the client's identity cache.
            config = config.credentials_provider(role.credentials());
        }
        Ok(SsmSource {
            client: Client::from_conf(config.build()),
            credentials: shared.credentials_provider(),
            role,
            decrypt,
            shape,
        })
    }

    /// Resolves credentials now (see [`super::aws::AwsSource::check_credentials`]).
    pub async fn check_credentials(&self) -> Result<()> {
        if let Some(role) = &self.role {
            return role.check().await;
        }
        check_credentials(self.credentials.as_ref()).await
    }

    fn value_of(&self, parameter: Parameter, stages: Vec<String>) -> SecretValue {
        let created = parameter.last_modified_date.and_then(system_time);
        let name = parameter.name.clone().unwrap_or_default();
        let arn = parameter.arn.clone().unwrap_or_default();
        let version_id = parameter.version.to_string();
        let payload = match self.shape {
            Shape::Value => {
                let mut parameter = parameter;
                Zeroizing::new(parameter.value.take().unwrap_or_default())
            }
            Shape::Answer => {
                let mut parameter = parameter;
                let answer = ParameterAnswer {
                    arn: parameter.arn.take(),
                    data_type: parameter.data_type.take(),
                    last_modified_date: parameter.last_modified_date.map(|d| d.as_secs_f64()),
                    name: parameter.name.take().unwrap_or_default(),
                    selector: None,
                    source_result: parameter.source_result.take(),
                    kind: parameter.r#type.take().map(|t| t.as_str().to_owned()),
                    value: parameter.value.take().unwrap_or_default(),
                    version: parameter.version,
                };
                Zeroizing::new(serde_json::to_string(&answer).unwrap_or_default())
            }
        };
        SecretValue {
            arn,
            name,
            version_id,
            stages,
            created,
            payload: Payload::String(payload),
            answer: Default::default(),
        }
    }
}

/// The name GetParameter is asked for: Parameter Store's own selector syntax.
pub fn selected_name(name: &str, version: &VersionRef) -> String {
    match (&version.version_id, &version.stage) {
        (Some(number), _) => format!("{name}:{number}"),
        (None, Some(label)) if label != AWSCURRENT => format!("{name}:{label}"),
        _ => name.to_owned(),
    }
}

/// The path GetParametersByPath is asked for, for names starting with `prefix`: the prefix up
/// to its last `/`, without a trailing one ("/" for the root).
fn path_for(prefix: Option<&str>) -> String {
    let prefix = prefix.unwrap_or("/");
    let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    if dir.is_empty() {
        "/".to_owned()
    } else {
        dir.to_owned()
    }
}

fn not_found(id: &str) -> Error {
    let message = format!("Parameter {id} not found.");
    Error::upstream(
        ErrorKind::NotFound,
        format!("GetParameters {id}: ParameterNotFound"),
        Upstream {
            code: "ParameterNotFound".into(),
            status: Some(400),
            message: Some(message),
        },
    )
}

/// The Parameter Store call behind each of the engine's operations.
pub fn operation_name(op: crate::cache::Op) -> &'static str {
    use crate::cache::Op;
    match op {
        Op::GetSecretValue => "GetParameter",
        Op::DescribeSecret => "GetParameterHistory",
        Op::ListSecrets => "GetParametersByPath",
        Op::BatchGetSecretValue => "GetParameters",
    }
}

#[async_trait]
impl SecretSource for SsmSource {
    fn operation_name(&self, op: crate::cache::Op) -> &'static str {
        operation_name(op)
    }

    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue> {
        let asked = selected_name(secret_id, version);
        let out = self
            .client
            .get_parameter()
            .name(&asked)
            .with_decryption(self.decrypt)
            .send()
            .await
            .map_err(|e| classify(&format!("GetParameter {secret_id} ({version})"), e))?;
        let Some(parameter) = out.parameter else {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("GetParameter {secret_id}: the answer holds no parameter"),
            ));
        };
        let stages = match (&version.version_id, &version.stage) {
            (None, Some(stage)) => vec![stage.clone()],
            (None, None) => vec![AWSCURRENT.to_owned()],
            (Some(_), _) => Vec::new(),
        };
        Ok(self.value_of(parameter, stages))
    }

    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription> {
        let mut pages = self
            .client
            .get_parameter_history()
            .name(secret_id)
            .with_decryption(false)
            .max_results(HISTORY_PAGE_SIZE)
            .into_paginator()
            .send();
        let mut versions: BTreeMap<i64, (Vec<String>, Option<std::time::SystemTime>)> =
            BTreeMap::new();
        let mut name = None;
        let mut requests = 0;
        while let Some(page) = pages.next().await {
            requests += 1;
            if requests > 1 {
                count_further_request();
            }
            let page =
                page.map_err(|e| classify(&format!("GetParameterHistory {secret_id}"), e))?;
            for mut entry in page.parameters.unwrap_or_default() {
                entry.value.zeroize();
                name = name.or(entry.name.take());
                versions.insert(
                    entry.version,
                    (
                        entry.labels.take().unwrap_or_default(),
                        entry.last_modified_date.and_then(system_time),
                    ),
                );
            }
        }
        let created = versions.values().next().and_then(|(_, at)| *at);
        let last_changed = versions.values().next_back().and_then(|(_, at)| *at);
        if let Some((_, (labels, _))) = versions.iter_mut().next_back() {
            labels.push(AWSCURRENT.to_owned());
        }
        Ok(SecretDescription {
            arn: String::new(),
            name: name.unwrap_or_else(|| secret_id.to_owned()),
            versions: versions
                .into_iter()
                .map(|(number, (labels, _))| (number.to_string(), labels))
                .collect(),
            created,
            last_changed,
        })
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>> {
        let path = path_for(prefix);
        let mut pages = self
            .client
            .get_parameters_by_path()
            .path(&path)
            .recursive(true)
            .with_decryption(false)
            .max_results(PAGE_SIZE)
            .into_paginator()
            .send();
        let mut listing = Vec::new();
        let mut requests = 0;
        while let Some(page) = pages.next().await {
            requests += 1;
            if requests > 1 {
                count_further_request();
            }
            let page = page.map_err(|e| classify(&format!("GetParametersByPath {path}"), e))?;
            // The listing needs names only; the values it carries are dropped at once.
            for mut entry in page.parameters.unwrap_or_default() {
                entry.value.zeroize();
                let Some(name) = entry.name.take() else {
                    continue;
                };
                if prefix.is_some_and(|p| !name.starts_with(p)) {
                    continue;
                }
                listing.push(SecretListing {
                    arn: entry.arn.take().unwrap_or_default(),
                    name,
                    last_changed: entry.last_modified_date.and_then(system_time),
                });
            }
        }
        Ok(listing)
    }

    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>> {
        if secret_ids.len() > SSM_BATCH_LIMIT {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("GetParameters takes at most {SSM_BATCH_LIMIT} names"),
            ));
        }
        if secret_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .get_parameters()
            .set_names(Some(secret_ids.to_vec()))
            .with_decryption(self.decrypt)
            .send()
            .await
            .map_err(|e| classify("GetParameters", e))?;
        let mut found: Vec<Parameter> = out.parameters.unwrap_or_default();
        let invalid = out.invalid_parameters.unwrap_or_default();
        let items = secret_ids
            .iter()
            .filter_map(|id| {
                let matches = |p: &Parameter| {
                    p.name.as_deref() == Some(id.as_str()) || p.arn.as_deref() == Some(id.as_str())
                };
                if let Some(pos) = found.iter().position(matches) {
                    let parameter = found.swap_remove(pos);
                    return Some((
                        id.clone(),
                        Ok(self.value_of(parameter, vec![AWSCURRENT.to_owned()])),
                    ));
                }
                // Unmatched and not said invalid: asked for alone by the caller.
                invalid
                    .iter()
                    .any(|i| i == id)
                    .then(|| (id.clone(), Err(not_found(id))))
            })
            .collect();
        for mut rest in found {
            rest.value.zeroize();
        }
        Ok(items)
    }

    fn batch_limit(&self) -> usize {
        SSM_BATCH_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_onto_parameter_store_selectors() {
        let version = |stage: Option<&str>, id: Option<&str>| VersionRef {
            stage: stage.map(str::to_owned),
            version_id: id.map(str::to_owned),
        };
        assert_eq!(selected_name("/a/b", &VersionRef::current()), "/a/b");
        assert_eq!(selected_name("/a/b", &version(None, None)), "/a/b");
        assert_eq!(
            selected_name("/a/b", &version(Some("prod"), None)),
            "/a/b:prod"
        );
        assert_eq!(selected_name("/a/b", &version(None, Some("3"))), "/a/b:3");
        assert_eq!(
            selected_name("/a/b", &version(Some("prod"), Some("3"))),
            "/a/b:3"
        );
    }

    #[test]
    fn a_prefix_is_listed_from_its_directory() {
        assert_eq!(path_for(None), "/");
        assert_eq!(path_for(Some("/")), "/");
        assert_eq!(path_for(Some("/app/")), "/app");
        assert_eq!(path_for(Some("/app/prod/")), "/app/prod");
        assert_eq!(path_for(Some("/app/pr")), "/app");
    }

    #[test]
    fn an_answer_serialises_as_the_service_names_it() {
        let mut answer = ParameterAnswer::default();
        answer.name = "/a".into();
        answer.value = "v".into();
        answer.version = 2;
        answer.kind = Some("String".into());
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"Name":"/a","Type":"String","Value":"v","Version":2}"#
        );
    }
}
