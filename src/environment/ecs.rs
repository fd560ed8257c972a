//! An ECS task definition's `secrets`, read as ECS reads them, so the list moves over
//! unchanged: `[{"name": "DB_PASSWORD", "valueFrom": "..."}]`, alone, as `{"secrets": [...]}`,
//! or in a task definition's one container that has secrets.
//!
//! A `valueFrom` is, as in ECS:
//! - a Secrets Manager ARN, optionally followed by `:json-key:version-stage:version-id` (the
//!   selector grammar's order, so it is read as a selector);
//! - a Parameter Store ARN (`arn:...:ssm:REGION:ACCOUNT:parameter/NAME`), asked for by ARN;
//! - anything else: a parameter's name, in the task's region.

use serde::Deserialize;

use super::{Entry, From, check_name};
use crate::error::{Error, Result};
use crate::selector::Selector;

#[derive(Deserialize)]
struct Secret {
    name: String,
    #[serde(rename = "valueFrom")]
    value_from: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Document {
    List(Vec<Secret>),
    Secrets {
        secrets: Vec<Secret>,
    },
    TaskDefinition {
        #[serde(rename = "containerDefinitions")]
        containers: Vec<Container>,
    },
}

#[derive(Deserialize)]
struct Container {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secrets: Vec<Secret>,
}

pub fn entries(text: &str, whence: &str) -> Result<Vec<Entry>> {
    // The parser's message names a line and a column, never the text.
    let document: Document = serde_json::from_str(text).map_err(|e| {
        Error::config(format!(
            "{whence}: not an ECS secrets list nor a task definition (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let secrets = match document {
        Document::List(secrets) | Document::Secrets { secrets } => secrets,
        Document::TaskDefinition { containers } => {
            let mut with_secrets = containers.into_iter().filter(|c| !c.secrets.is_empty());
            match (with_secrets.next(), with_secrets.next()) {
                (Some(one), None) => one.secrets,
                (None, _) => Vec::new(),
                (Some(first), Some(second)) => {
                    return Err(Error::config(format!(
                        "{whence}: containers {:?} and {:?} both have secrets: give one container's list",
                        first.name, second.name
                    )));
                }
            }
        }
    };
    secrets
        .into_iter()
        .map(|secret| {
            check_name(&secret.name, whence)?;
            entry(secret, whence)
        })
        .collect()
}

fn entry(secret: Secret, whence: &str) -> Result<Entry> {
    let invalid =
        |why: String| Error::invalid_selector(format!("{whence}: {}: {why}", secret.name));
    let value_from = secret.value_from.as_str();
    let (from, selector) = match arn_service(value_from) {
        Some("secretsmanager") => (
            From::SecretsManager,
            Selector::parse(value_from).map_err(|e| invalid(e.message().to_owned()))?,
        ),
        Some("ssm") => {
            if !value_from.contains(":parameter/") {
                return Err(invalid(format!("{value_from:?} is not a parameter's ARN")));
            }
            (From::ParameterStore, Selector::whole(value_from))
        }
        Some(other) => {
            return Err(invalid(format!(
                "an ARN of {other}: ECS takes Secrets Manager and Parameter Store ARNs"
            )));
        }
        None => {
            crate::selector::validate_parameter_name(value_from).map_err(invalid)?;
            (From::ParameterStore, Selector::whole(value_from))
        }
    };
    Ok(Entry {
        name: secret.name,
        from,
        selector,
    })
}

/// The service of an ARN (`arn:PARTITION:SERVICE:...`).
fn arn_service(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("arn:")?;
    rest.split(':').nth(1)
}
