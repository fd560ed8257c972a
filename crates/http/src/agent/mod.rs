//! The AWS Secrets Manager Agent's HTTP API, request by request: the same routes, parameters,
//! checks in the same order, status codes and bodies, so that a client written for the agent
//! works unchanged. Where this differs from the agent it is on purpose, and listed in
//! docs/http-api.md: JSON bodies say `Content-Type: application/json`, error messages are JSON-escaped,
//! the token comparison is constant-time, and `/metrics` exists.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use base64::Engine as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::Api;
use secretsfs_core::audit::{Access, Decision, Front};
use secretsfs_core::caller::Caller;
use secretsfs_core::engine::Engine;
use secretsfs_core::engine::roles::{self, RoleRefusal};
use secretsfs_core::error::{Error, one_line};
use secretsfs_core::policy;
use secretsfs_core::selector::{self, VersionRef};
use secretsfs_core::source::{Payload, SecretValue};

/// Who is on the other end of the connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// TCP: only the token says anything about the caller.
    Tcp,
    /// The Unix socket: the kernel's word on the caller, which the policy judges.
    Unix(Caller),
}

pub type Body = Full<Bytes>;

/// A GetSecretValue request, from either route.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub secret_id: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
    pub refresh_now: bool,
    /// The IAM role to read as (the agent's `roleArn`), of the shape [`roles::is_role_arn`]
    /// checks.
    pub role_arn: Option<String>,
}

pub const PING: &str = "/ping";
pub const METRICS: &str = "/metrics";
pub const GET: &str = "/secretsmanager/get";
/// The AWS Parameters and Secrets Lambda Extension's Parameter Store route.
pub const PARAMETER: &str = "/systemsmanager/parameters/get";
const FORWARDED: &str = "x-forwarded-for";

/// Parses the query of `/secretsmanager/get` (`with_secret_id`) or of the path route.
pub fn parse_query(query: Option<&str>, with_secret_id: bool) -> Result<Query, Refusal> {
    let mut parsed = Query::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "secretId" if with_secret_id => parsed.secret_id = value.into_owned(),
            "versionId" => parsed.version_id = Some(value.into_owned()),
            "versionStage" => parsed.version_stage = Some(value.into_owned()),
            "refreshNow" => {
                parsed.refresh_now = match value.to_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Refusal::text(400, "invalid refreshNow value")),
                }
            }
            "roleArn" => parsed.role_arn = Some(value.into_owned()),
            // The name as sent, but on one line: it may be `%0A`.
            other => {
                return Err(Refusal::text(
                    400,
                    format!("unknown parameter: {}", one_line(other)),
                ));
            }
        }
    }
    if with_secret_id && parsed.secret_id.is_empty() {
        return Err(Refusal::text(400, "missing parameter secretId"));
    }
    // As the agent: checked once the parameters are read, before anything is called.
    if parsed
        .role_arn
        .as_deref()
        .is_some_and(|arn| !roles::is_role_arn(arn))
    {
        return Err(Refusal::text(
            400,
            format!("invalid roleArn format, expected {}", roles::ROLE_ARN_SHAPE),
        ));
    }
    Ok(parsed)
}

/// The route and the checks before it, in the agent's order (the connection limit comes
/// first, at accept): forwarded, token, method, route.
pub fn route<B>(api: &Api, req: &Request<B>, peer: &Peer) -> Result<Route, Refusal> {
    let path = req.uri().path();
    let unguarded = path == PING || path == METRICS;
    if matches!(peer, Peer::Tcp) && !unguarded {
        if req.headers().contains_key(FORWARDED) {
            return Err(Refusal::text(400, "Forwarded"));
        }
        if !api.token_presented(req.headers()) {
            audit(peer, path, Decision::Denied, None, false, Some("bad token"));
            return Err(Refusal::bad_token());
        }
    }
    if req.method() != Method::GET {
        return Err(Refusal::text(405, "Not allowed"));
    }
    match path {
        PING => Ok(Route::Ping),
        METRICS => Ok(Route::Metrics),
        GET => Ok(Route::Get(parse_query(req.uri().query(), true)?)),
        PARAMETER => Ok(Route::Parameter(parameter::parse_query(req.uri().query())?)),
        _ => match path.strip_prefix(api.path_prefix.as_str()) {
            Some(id) if !id.is_empty() => {
                let mut query = parse_query(req.uri().query(), false)?;
                query.secret_id = id.to_owned();
                Ok(Route::Get(query))
            }
            Some(_) => Err(Refusal::text(400, "missing secret ID")),
            None => Err(Refusal::text(404, "Not found")),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Ping,
    Metrics,
    Get(Query),
    Parameter(parameter::Query),
}

/// Answers a GetSecretValue request from the shared cache, with its audit record.
pub async fn get_secret(api: &Api, query: Query, peer: &Peer) -> Result<Bytes, Refusal> {
    let result = get_secret_unaudited(api, &query, peer).await;
    audit_answer(peer, &query, &result);
    result.map(|served| served.body)
}

/// The audit record of a GetSecretValue answer, built only when it is written.
fn audit_answer(peer: &Peer, query: &Query, result: &Result<Answered, Refusal>) {
    // Denied is the policy's answer (403); a failure to fetch was an allowed access; a
    // request refused by `validate` never reached the policy.
    let decision = match result {
        Err(r) if r.is_denial() => Decision::Denied,
        Err(_) if validate(query).is_err() => Decision::Invalid,
        _ => Decision::Allowed,
    };
    if secretsfs_core::audit::enabled(decision) {
        let (version, stale, reason) = match result {
            Ok(served) => (Some(served.version_id.as_str()), served.stale, None),
            Err(r) => (None, false, Some(r.body.as_str())),
        };
        audit(peer, &describe(query), decision, version, stale, reason);
    }
}

/// Answers a GetSecretValue request from the cache alone, without waiting: `None` when that
/// takes a fetch, a role, a refresh or the policy (the Unix socket), which the full path
/// does. Audited like it.
pub fn get_secret_cached(api: &Api, query: &Query, peer: &Peer) -> Option<Result<Bytes, Refusal>> {
    if !matches!(peer, Peer::Tcp) || query.refresh_now || query.role_arn.is_some() {
        return None;
    }
    let result = match validate(query) {
        Err(r) => Err(r),
        Ok(()) => {
            let version = requested_version(query);
            match api.engine.cached_value(&query.secret_id, &version)? {
                Ok(served) => Ok(answered(&served)),
                Err(e) => Err(refusal_for(&e)),
            }
        }
    };
    audit_answer(peer, query, &result);
    Some(result.map(|served| served.body))
}

/// The version a request asks for: AWSCURRENT when it names none.
fn requested_version(query: &Query) -> VersionRef {
    let version = VersionRef {
        stage: query.version_stage.clone(),
        version_id: query.version_id.clone(),
    };
    if version.stage.is_none() && version.version_id.is_none() {
        VersionRef::current()
    } else {
        version
    }
}

/// The answer of a served value: its body, rendered once per cached version and shared (a
/// hit costs no serialization, and the buffer is zeroed when the last answer of a version
/// that left the cache is sent).
fn answered(served: &secretsfs_core::cache::Served<SecretValue>) -> Answered {
    let body = served
        .value
        .answer
        .get_or_init(|| {
            Bytes::from_owner(zeroize::Zeroizing::new(
                success_body(&served.value).into_bytes(),
            ))
        })
        .clone();
    Answered {
        body,
        version_id: served.value.version_id.clone(),
        stale: served.stale,
    }
}

/// What a request was answered: the body, and for the audit record its version.
struct Answered {
    body: Bytes,
    version_id: String,
    stale: bool,
}

/// One audit record of the HTTP API.
pub fn audit(
    peer: &Peer,
    selector: &str,
    decision: Decision,
    version: Option<&str>,
    stale: bool,
    reason: Option<&str>,
) {
    let (front, uid, pid) = match peer {
        Peer::Tcp => (Front::HttpTcp, None, None),
        Peer::Unix(caller) => (Front::HttpSocket, Some(caller.uid), caller.pid),
    };
    Access {
        front,
        uid,
        pid,
        selector,
        decision,
        version,
        stale,
        reason,
    }
    .log();
}

/// What a request asked for, as a selector would say it (for the audit record).
fn describe(query: &Query) -> String {
    let mut s = query.secret_id.clone();
    if let Some(stage) = &query.version_stage {
        s.push_str("::");
        s.push_str(stage);
    }
    if let Some(id) = &query.version_id {
        s.push_str(if query.version_stage.is_some() {
            ":"
        } else {
            ":::"
        });
        s.push_str(id);
    }
    s
}

async fn get_secret_unaudited(api: &Api, query: &Query, peer: &Peer) -> Result<Answered, Refusal> {
    validate(query)?;
    if let Peer::Unix(caller) = peer {
        authorize(api, caller, &query.secret_id).await?;
    }
    let version = requested_version(query);
    let engine = engine_for(api, query.role_arn.as_deref()).await?;
    let served = engine
        .secret_value(&query.secret_id, &version, query.refresh_now)
        .await
        .map_err(|e| refusal_for(&e))?;
    // The agent's refreshNow never falls back to a cached value: it answers the failure.
    if query.refresh_now
        && let Some(err) = &served.refresh_error
    {
        return Err(refusal_for(err));
    }
    if let Peer::Unix(caller) = peer {
        // The id may have been an ARN: judge the name it resolved to as well.
        authorize(api, caller, &served.value.name).await?;
    }
    Ok(answered(&served))
}

/// The engine that reads as `role_arn` (the base engine without one), with the agent's
/// answers: past `max_roles`, 400 `MaxRolesExceeded`; a role that cannot be assumed, 403
/// `AccessDeniedException` (the cause is logged, not answered).
async fn engine_for(api: &Api, role_arn: Option<&str>) -> Result<Arc<Engine>, Refusal> {
    let Some(role_arn) = role_arn else {
        return Ok(api.engine.clone());
    };
    let Some(roles) = &api.roles else {
        return Err(Refusal::aws(
            400,
            "InvalidParameterException",
            Some("roleArn needs the aws source"),
        ));
    };
    roles
        .engine(role_arn)
        .await
        .map_err(|refusal| match refusal {
            RoleRefusal::TooMany { max } => Refusal::aws(
                400,
                "MaxRolesExceeded",
                Some(&format!(
                    "The maximum number of assumed roles ({max}) has been reached. Unable to \
                 assume the following role to create a client: {role_arn}"
                )),
            ),
            RoleRefusal::NotAssumed(_) => Refusal::aws(
                403,
                "AccessDeniedException",
                Some(&format!(
                    "Failed to create caching client from role: {role_arn}"
                )),
            ),
        })
}

/// Rejects what Secrets Manager would reject, before asking it.
fn validate(query: &Query) -> Result<(), Refusal> {
    let invalid = |why: String| Refusal::aws(400, "InvalidParameterException", Some(&why));
    let id = &query.secret_id;
    let parsed = if id.starts_with("arn:") {
        selector::Selector::parse(id).map(|_| ())
    } else {
        selector::validate_name(id).map_err(Error::invalid_selector)
    };
    parsed.map_err(|e| invalid(e.message().to_owned()))?;
    if let Some(v) = &query.version_id
        && !(32..=64).contains(&v.len())
    {
        return Err(invalid("versionId must be 32 to 64 characters".into()));
    }
    if let Some(s) = &query.version_stage
        && !(1..=256).contains(&s.chars().count())
    {
        return Err(invalid("versionStage must be 1 to 256 characters".into()));
    }
    Ok(())
}

pub(crate) async fn authorize(api: &Api, caller: &Caller, secret_id: &str) -> Result<(), Refusal> {
    let name = name_of(secret_id);
    // An owned snapshot rather than a load() guard: the check may wait for a group lookup,
    // and guards are not meant to be held that long.
    let policy = api.policy.load_full();
    let decision = policy.check_file(caller, name, policy::READ).await;
    if decision.allowed {
        return Ok(());
    }
    Err(Refusal::denied_by_policy())
}

/// The secret name in an id: a name as is; an ARN's name without the six random characters
/// Secrets Manager appends.
fn name_of(secret_id: &str) -> &str {
    let Some(name) = secret_id
        .strip_prefix("arn:")
        .and_then(|r| r.splitn(6, ':').nth(5))
    else {
        return secret_id;
    };
    match name.rsplit_once('-') {
        Some((base, suffix))
            if suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            base
        }
        _ => name,
    }
}

/// GetSecretValue's JSON in the agent's field order; absent ids are `null`, as there.
fn success_body(value: &SecretValue) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Out<'a> {
        #[serde(rename = "ARN")]
        arn: Option<&'a str>,
        name: Option<&'a str>,
        version_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_string: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret_binary: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version_stages: Option<&'a [String]>,
        created_date: Option<String>,
    }
    fn present(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    let (secret_string, secret_binary) = match &value.payload {
        Payload::String(s) => (Some(s.as_str()), None),
        Payload::Binary(b) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
    };
    let out = Out {
        arn: present(&value.arn),
        name: present(&value.name),
        version_id: present(&value.version_id),
        secret_string,
        secret_binary,
        version_stages: Some(&value.stages),
        // Epoch seconds with fractions, as a string, in f64's shortest form, as the agent.
        created_date: value
            .created
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64().to_string()),
    };
    serde_json::to_string(&out).unwrap_or_default()
}

pub fn respond(status: StatusCode, body: String, json: bool) -> Response<Body> {
    respond_bytes(status, Bytes::from(body), json)
}

pub fn respond_bytes(status: StatusCode, body: Bytes, json: bool) -> Response<Body> {
    let content_type = if json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub mod parameter;
mod refusal;

pub use refusal::{Refusal, refusal_for};
#[cfg(test)]
mod tests;
