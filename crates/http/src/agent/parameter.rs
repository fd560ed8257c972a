//! The AWS Parameters and Secrets Lambda Extension's Parameter Store route,
//! `GET /systemsmanager/parameters/get?name=NAME_OR_ARN[&version=N|&label=L][&withDecryption=B]`,
//! answered with GetParameter's JSON (`{"Parameter":{...},"ResultMetadata":{}}`) from the
//! engines of [`crate::ParameterEngines`]. The checks before it (forwarded header,
//! token, method) are the secrets routes' ([`super::route`]); on the Unix socket the policy
//! judges the parameter's name, as it judges a secret's.

use serde::Serialize;

use super::{Peer, Refusal, audit, authorize, refusal_for};
use crate::Api;
use secretsfs_core::audit::Decision;
use secretsfs_core::error::{Error, ErrorKind, one_line};
use secretsfs_core::selector::{Selector, VersionRef};
use secretsfs_core::source::ssm::ParameterAnswer;

/// A GetParameter request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub name: String,
    pub version: Option<String>,
    pub label: Option<String>,
    /// The extension's default: false.
    pub with_decryption: bool,
}

/// Parses the query of the route; `version` with `label` is refused, as the extension does.
pub fn parse_query(query: Option<&str>) -> Result<Query, Refusal> {
    let mut parsed = Query::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "name" => parsed.name = value.into_owned(),
            "version" => parsed.version = Some(value.into_owned()),
            "label" => parsed.label = Some(value.into_owned()),
            "withDecryption" => {
                parsed.with_decryption = match value.to_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(Refusal::text(400, "invalid withDecryption value")),
                }
            }
            // The name as sent, but on one line: it may be `%0A`.
            other => {
                return Err(Refusal::text(
                    400,
                    format!("unknown parameter: {}", one_line(other)),
                ));
            }
        }
    }
    if parsed.name.is_empty() {
        return Err(Refusal::text(400, "missing parameter name"));
    }
    if parsed
        .version
        .as_deref()
        .is_some_and(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Refusal::text(400, "invalid version value"));
    }
    if parsed.version.is_some() && parsed.label.is_some() {
        return Err(Refusal::text(
            400,
            "version and label cannot be given together",
        ));
    }
    Ok(parsed)
}

/// What a request asked for, in Parameter Store's selector syntax (audit, `Selector`).
fn selector_suffix(query: &Query) -> Option<String> {
    query
        .version
        .as_deref()
        .or(query.label.as_deref())
        .map(|s| format!(":{s}"))
}

/// The parameter name in a name or an ARN (`arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME`
/// is the name `/NAME`, as hierarchical names are written).
fn name_of(id: &str) -> String {
    match id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":parameter/"))
    {
        Some((_, name)) if name.starts_with('/') => name.to_owned(),
        Some((_, name)) => format!("/{name}"),
        None => id.to_owned(),
    }
}

/// Answers a GetParameter request, with its audit record.
pub async fn get_parameter(api: &Api, query: Query, peer: &Peer) -> Result<String, Refusal> {
    let described = format!(
        "{}{}",
        query.name,
        selector_suffix(&query).unwrap_or_default()
    );
    let result = match checked(&query) {
        Ok(selector) => answer(api, query, selector, peer).await,
        Err(invalid) => {
            audit(
                peer,
                &described,
                Decision::Invalid,
                None,
                false,
                Some(&invalid.body),
            );
            return Err(invalid);
        }
    };
    let (version, reason) = match &result {
        Ok((_, version)) => (Some(version.as_str()), None),
        Err(r) => (None, Some(r.body.as_str())),
    };
    let decision = if matches!(&result, Err(r) if r.status == hyper::StatusCode::FORBIDDEN) {
        Decision::Denied
    } else {
        Decision::Allowed
    };
    audit(peer, &described, decision, version, false, reason);
    result.map(|(body, _)| body)
}

/// The selector a request names, checked as the mount checks its file names: nothing
/// invalid reaches the network.
fn checked(query: &Query) -> Result<Selector, Refusal> {
    let name = name_of(&query.name);
    let checked = match selector_suffix(query) {
        Some(suffix) => Selector::of_parameter(&name, &suffix[1..]),
        None => secretsfs_core::selector::validate_parameter_name(&name)
            .map(|()| Selector::whole(name.as_str()))
            .map_err(Error::invalid_selector),
    };
    checked.map_err(|e| Refusal::aws(400, "ValidationException", Some(e.message())))
}

async fn answer(
    api: &Api,
    query: Query,
    selector: Selector,
    peer: &Peer,
) -> Result<(String, String), Refusal> {
    let name = name_of(&query.name);
    if let Peer::Unix(caller) = peer {
        authorize(api, caller, &name).await?;
    }
    let Some(engines) = &api.parameters else {
        return Err(refusal_for(&Error::new(
            ErrorKind::Config,
            "Parameter Store is not available here",
        )));
    };
    let engine = engines.engine(query.with_decryption).await.map_err(|e| {
        tracing::warn!(target: "secretsfs::http::agent::parameter", error = %e, "Parameter Store client");
        refusal_for(&e)
    })?;
    let version = match (&selector.version_id, &selector.version_stage) {
        (None, None) => VersionRef::current(),
        _ => selector.version_ref(),
    };
    // The id as asked (a name or an ARN); the service resolves it.
    let served = engine
        .secret_value(&query.name, &version, false)
        .await
        .map_err(|e| refusal_for(&e))?;
    if let Peer::Unix(caller) = peer {
        // An ARN or a name without its '/' may name a parameter the first check did not.
        authorize(api, caller, &served.value.name).await?;
    }
    let mut parameter: ParameterAnswer = serde_json::from_slice(served.value.payload.as_bytes())
        .map_err(|_| {
            refusal_for(&Error::new(
                ErrorKind::Internal,
                "a cached parameter is not an answer",
            ))
        })?;
    // The service says which selector it applied; only when one was asked.
    parameter.selector = selector_suffix(&query);
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Out<'a> {
        parameter: &'a ParameterAnswer,
        result_metadata: serde_json::Map<String, serde_json::Value>,
    }
    let body = serde_json::to_string(&Out {
        parameter: &parameter,
        result_metadata: serde_json::Map::new(),
    })
    .unwrap_or_default();
    Ok((body, served.value.version_id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_the_extensions() {
        let q = parse_query(Some("name=%2Fa%2Fb&version=3")).unwrap();
        assert_eq!(q.name, "/a/b");
        assert_eq!(q.version.as_deref(), Some("3"));
        assert!(!q.with_decryption);
        let q = parse_query(Some("name=/a&label=prod&withDecryption=true")).unwrap();
        assert_eq!(q.label.as_deref(), Some("prod"));
        assert!(q.with_decryption);
        for bad in [
            "name=/a&version=3&label=prod",
            "version=3",
            "name=/a&withDecryption=maybe",
            "name=/a&other=1",
            "name=/a&version=x",
        ] {
            assert_eq!(parse_query(Some(bad)).unwrap_err().status, 400, "{bad}");
        }
    }

    /// Found by the fuzzer (http target): the name of an unknown parameter was answered as
    /// sent, a newline included.
    #[test]
    fn an_unknown_parameter_with_a_newline_is_named_on_one_line() {
        let refusal = parse_query(Some("n%0Ax%07=1&name=/a")).unwrap_err();
        assert_eq!(refusal.body, r"unknown parameter: n\nx\u{7}");
    }

    #[test]
    fn an_arn_names_its_parameter() {
        assert_eq!(
            name_of("arn:aws:ssm:us-east-1:123456789012:parameter/app/db"),
            "/app/db"
        );
        assert_eq!(name_of("/app/db"), "/app/db");
    }
}
