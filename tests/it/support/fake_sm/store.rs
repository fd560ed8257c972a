//! The in-memory model of secrets, their versions and staging labels, and
//! what each operation answers from it: lookups by name or ARN, stage
//! semantics, ListSecrets pagination and name filters, batches.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::wire::{
    ApiError, INVALID_NEXT_TOKEN, NOT_FOUND, arn_for, epoch_seconds, opt_max_results, opt_str,
    required_str,
};
use super::{Op, SecretData};

const AWSCURRENT: &str = "AWSCURRENT";
const AWSPREVIOUS: &str = "AWSPREVIOUS";
const DEFAULT_LIST_PAGE_SIZE: usize = 100;
const LIST_MAX_RESULTS: usize = 100;
const BATCH_MAX_RESULTS: usize = 20;
const BATCH_MAX_IDS: usize = 20;
const NEXT_TOKEN_PREFIX: &str = "fake-sm/v1/";
/// After [`NEXT_TOKEN_PREFIX`] in the cursor of a batch by ids, before the count.
const IDS_TOKEN: &str = "ids/";

pub(super) struct Store {
    /// Keyed by name; the ordering gives listings and page cursors.
    secrets: BTreeMap<String, Secret>,
    pub(super) list_page_size: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            secrets: BTreeMap::new(),
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
        }
    }
}

struct Secret {
    name: String,
    arn: String,
    created: SystemTime,
    last_changed: SystemTime,
    /// In creation order. Versions left without stages stay readable by id,
    /// as deprecated versions are on AWS until cleaned up.
    versions: Vec<Version>,
}

struct Version {
    id: String,
    stages: Vec<String>,
    data: SecretData,
    created: SystemTime,
}

impl Secret {
    fn version_with_stage(&self, stage: &str) -> Option<&Version> {
        self.versions
            .iter()
            .find(|version| version.stages.iter().any(|s| s == stage))
    }

    fn version(&self, id: &str) -> Option<&Version> {
        self.versions.iter().find(|version| version.id == id)
    }

    fn move_stage(&mut self, stage: &str, to_version: &str) {
        for version in &mut self.versions {
            let has = version.stages.iter().any(|s| s == stage);
            if version.id == to_version {
                if !has {
                    version.stages.push(stage.to_owned());
                }
            } else if has {
                version.stages.retain(|s| s != stage);
            }
        }
    }

    /// Only versions with stages, as DescribeSecret and ListSecrets show.
    fn versions_to_stages(&self) -> Value {
        let map: Map<String, Value> = self
            .versions
            .iter()
            .filter(|version| !version.stages.is_empty())
            .map(|version| (version.id.clone(), json!(version.stages)))
            .collect();
        Value::Object(map)
    }

    fn value_entry(&self, version: &Version) -> Value {
        let mut entry = json!({
            "ARN": self.arn,
            "Name": self.name,
            "VersionId": version.id,
            "VersionStages": version.stages,
            "CreatedDate": epoch_seconds(version.created),
        });
        match &version.data {
            SecretData::String(s) => entry["SecretString"] = json!(s),
            SecretData::Binary(b) => entry["SecretBinary"] = json!(BASE64.encode(b)),
        }
        entry
    }
}

impl Store {
    pub(super) fn put_version(
        &mut self,
        name: &str,
        version_id: &str,
        stages: &[&str],
        data: SecretData,
    ) {
        let now = SystemTime::now();
        let secret = self
            .secrets
            .entry(name.to_owned())
            .or_insert_with(|| Secret {
                name: name.to_owned(),
                arn: arn_for(name),
                created: now,
                last_changed: now,
                versions: Vec::new(),
            });
        match secret.versions.iter_mut().find(|v| v.id == version_id) {
            Some(version) => {
                version.stages.clear();
                version.data = data;
                version.created = now;
            }
            None => secret.versions.push(Version {
                id: version_id.to_owned(),
                stages: Vec::new(),
                data,
                created: now,
            }),
        }
        for stage in stages {
            secret.move_stage(stage, version_id);
        }
        secret.last_changed = now;
    }

    fn find(&self, secret_id: &str) -> Option<&Secret> {
        self.secrets.get(secret_id).or_else(|| {
            secret_id
                .starts_with("arn:")
                .then(|| self.secrets.values().find(|s| s.arn == secret_id))
                .flatten()
        })
    }

    /// Adds a new `AWSCURRENT` version the way a rotation does: the previous
    /// `AWSCURRENT` version becomes `AWSPREVIOUS`.
    pub(super) fn rotate(&mut self, name: &str, version_id: &str, data: SecretData) {
        if let Some(secret) = self.secrets.get_mut(name)
            && let Some(current) = secret
                .version_with_stage(AWSCURRENT)
                .map(|version| version.id.clone())
        {
            secret.move_stage(AWSPREVIOUS, &current);
        }
        self.put_version(name, version_id, &[AWSCURRENT], data);
    }

    pub(super) fn remove(&mut self, name: &str) {
        self.secrets.remove(name);
    }

    /// `involved` collects the names of the secrets whose holds apply.
    pub(super) fn answer(
        &self,
        op: Op,
        body: &Map<String, Value>,
        involved: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        match op {
            Op::GetSecretValue => self.get_secret_value(body, involved),
            Op::DescribeSecret => self.describe_secret(body),
            Op::ListSecrets => self.list_secrets(body),
            Op::BatchGetSecretValue => self.batch_get_secret_value(body, involved),
        }
    }

    fn get_secret_value(
        &self,
        body: &Map<String, Value>,
        involved: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let secret_id = required_str(body, "SecretId")?;
        let version_id = opt_str(body, "VersionId")?;
        let stage = opt_str(body, "VersionStage")?;
        let secret = self.find(secret_id);
        involved.push(secret.map_or(secret_id, |s| &s.name).to_owned());
        let secret = secret.ok_or_else(ApiError::secret_not_found)?;
        let version = match (version_id, stage) {
            (Some(id), Some(stage)) => secret
                .version(id)
                .filter(|version| version.stages.iter().any(|s| s == stage))
                .ok_or_else(|| {
                    ApiError::new(
                        NOT_FOUND,
                        format!(
                            "Secrets Manager can't find the specified secret value for \
                             VersionId: {id} and staging label: {stage}"
                        ),
                    )
                })?,
            (Some(id), None) => secret.version(id).ok_or_else(|| {
                ApiError::new(
                    NOT_FOUND,
                    format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id}"
                    ),
                )
            })?,
            (None, stage) => {
                let stage = stage.unwrap_or(AWSCURRENT);
                secret.version_with_stage(stage).ok_or_else(|| {
                    ApiError::new(
                        NOT_FOUND,
                        format!(
                            "Secrets Manager can't find the specified secret value for staging \
                             label: {stage}"
                        ),
                    )
                })?
            }
        };
        Ok(secret.value_entry(version))
    }

    fn describe_secret(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let secret_id = required_str(body, "SecretId")?;
        let secret = self
            .find(secret_id)
            .ok_or_else(ApiError::secret_not_found)?;
        Ok(json!({
            "ARN": secret.arn,
            "Name": secret.name,
            "VersionIdsToStages": secret.versions_to_stages(),
            "CreatedDate": epoch_seconds(secret.created),
            "LastChangedDate": epoch_seconds(secret.last_changed),
        }))
    }

    fn list_secrets(&self, body: &Map<String, Value>) -> Result<Value, ApiError> {
        let max_results = opt_max_results(body, LIST_MAX_RESULTS)?;
        let filters = parse_filters(body)?;
        let (page, next_token) = self.page(&filters, opt_str(body, "NextToken")?, max_results)?;
        let list: Vec<Value> = page
            .iter()
            .map(|secret| {
                json!({
                    "ARN": secret.arn,
                    "Name": secret.name,
                    "SecretVersionsToStages": secret.versions_to_stages(),
                    "CreatedDate": epoch_seconds(secret.created),
                    "LastChangedDate": epoch_seconds(secret.last_changed),
                })
            })
            .collect();
        let mut out = json!({ "SecretList": list });
        if let Some(token) = next_token {
            out["NextToken"] = json!(token);
        }
        Ok(out)
    }

    fn batch_get_secret_value(
        &self,
        body: &Map<String, Value>,
        involved: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let ids = match body.get("SecretIdList") {
            None | Some(Value::Null) => None,
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .map(|id| {
                        id.as_str().ok_or_else(|| {
                            ApiError::invalid_parameter("SecretIdList must contain strings.")
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(ApiError::invalid_parameter("SecretIdList must be a list.")),
        };
        let has_filters = !matches!(body.get("Filters"), None | Some(Value::Null));
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let mut next_token = None;
        match ids {
            Some(_) if has_filters => {
                return Err(ApiError::invalid_parameter(
                    "Either Filters or SecretIdList must be specified, but not both.",
                ));
            }
            None if !has_filters => {
                return Err(ApiError::invalid_parameter(
                    "Either Filters or SecretIdList must be specified.",
                ));
            }
            Some(ids) => {
                if ids.is_empty() || ids.len() > BATCH_MAX_IDS {
                    return Err(ApiError::invalid_parameter(format!(
                        "SecretIdList must contain between 1 and {BATCH_MAX_IDS} ids."
                    )));
                }
                if body.get("MaxResults").is_some_and(|v| !v.is_null()) {
                    return Err(ApiError::invalid_parameter(
                        "MaxResults can only be used with Filters.",
                    ));
                }
                // Ids too are answered a page at a time, as AWS may split a large answer.
                let start = opt_str(body, "NextToken")?
                    .map(|token| decode_ids_token(token, ids.len()))
                    .transpose()?
                    .unwrap_or(0);
                let end = ids.len().min(start + self.list_page_size);
                if end < ids.len() {
                    next_token = Some(encode_next_token(&format!("{IDS_TOKEN}{end}")));
                }
                for &id in &ids[start..end] {
                    let secret = self.find(id);
                    involved.push(secret.map_or(id, |s| &s.name).to_owned());
                    match secret.and_then(|s| Some((s, s.version_with_stage(AWSCURRENT)?))) {
                        Some((secret, version)) => values.push(secret.value_entry(version)),
                        None => errors.push(json!({
                            "SecretId": id,
                            "ErrorCode": NOT_FOUND,
                            "Message": "Secrets Manager can't find the specified secret.",
                        })),
                    }
                }
            }
            None => {
                let max_results = opt_max_results(body, BATCH_MAX_RESULTS)?;
                let filters = parse_filters(body)?;
                let (page, token) =
                    self.page(&filters, opt_str(body, "NextToken")?, max_results)?;
                next_token = token;
                for secret in page {
                    involved.push(secret.name.clone());
                    match secret.version_with_stage(AWSCURRENT) {
                        Some(version) => values.push(secret.value_entry(version)),
                        None => errors.push(json!({
                            "SecretId": secret.name,
                            "ErrorCode": NOT_FOUND,
                            "Message": "Secrets Manager can't find the specified secret value \
                                        for staging label: AWSCURRENT",
                        })),
                    }
                }
            }
        }
        let mut out = json!({ "SecretValues": values, "Errors": errors });
        if let Some(token) = next_token {
            out["NextToken"] = json!(token);
        }
        Ok(out)
    }

    /// One page of the secrets matching `filters`, after the cursor carried by
    /// `next_token`; the page size is `max_results` capped by the configured
    /// page size. The cursor is the last name returned, so secrets added or
    /// deleted between pages shift nothing.
    fn page(
        &self,
        filters: &[Vec<String>],
        next_token: Option<&str>,
        max_results: Option<usize>,
    ) -> Result<(Vec<&Secret>, Option<String>), ApiError> {
        let page_size = max_results.map_or(self.list_page_size, |max| max.min(self.list_page_size));
        let after = next_token.map(decode_next_token).transpose()?;
        let start = match &after {
            Some(name) => Bound::Excluded(name.as_str()),
            None => Bound::Unbounded,
        };
        let mut matching = self
            .secrets
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, secret)| secret)
            .filter(|secret| filters_match(filters, &secret.name));
        let page: Vec<&Secret> = matching.by_ref().take(page_size).collect();
        let next_token = match (matching.next(), page.last()) {
            (Some(_), Some(last)) => Some(encode_next_token(&last.name)),
            _ => None,
        };
        Ok((page, next_token))
    }
}

/// Each filter becomes its list of values; only the `name` key is supported.
fn parse_filters(body: &Map<String, Value>) -> Result<Vec<Vec<String>>, ApiError> {
    let filters = match body.get("Filters") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(filters)) => filters,
        Some(_) => return Err(ApiError::invalid_parameter("Filters must be a list.")),
    };
    filters
        .iter()
        .map(|filter| {
            match filter.get("Key").and_then(Value::as_str) {
                Some("name") => {}
                Some(key) => {
                    return Err(ApiError::invalid_parameter(format!(
                        "The fake only supports the name filter, not {key}."
                    )));
                }
                None => return Err(ApiError::invalid_parameter("A filter needs a Key.")),
            }
            filter
                .get("Values")
                .and_then(Value::as_array)
                .filter(|values| !values.is_empty())
                .ok_or_else(|| ApiError::invalid_parameter("A filter needs Values."))?
                .iter()
                .map(|value| {
                    value
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::invalid_parameter("Filter values are strings."))
                })
                .collect()
        })
        .collect()
}

fn filters_match(filters: &[Vec<String>], name: &str) -> bool {
    filters.iter().all(|values| {
        values.iter().any(|value| match value.strip_prefix('!') {
            Some(negated) => !name.starts_with(negated),
            None => name.starts_with(value.as_str()),
        })
    })
}

fn encode_next_token(last_name: &str) -> String {
    BASE64.encode(format!("{NEXT_TOKEN_PREFIX}{last_name}"))
}

/// The cursor of a batch by ids: how many ids the pages so far answered.
fn decode_ids_token(token: &str, ids: usize) -> Result<usize, ApiError> {
    decode_next_token(token)?
        .strip_prefix(IDS_TOKEN)
        .and_then(|n| n.parse().ok())
        .filter(|&n| n < ids)
        .ok_or_else(|| ApiError::new(INVALID_NEXT_TOKEN, "The NextToken value is invalid."))
}

fn decode_next_token(token: &str) -> Result<String, ApiError> {
    BASE64
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(NEXT_TOKEN_PREFIX).map(str::to_owned))
        .ok_or_else(|| ApiError::new(INVALID_NEXT_TOKEN, "The NextToken value is invalid."))
}
