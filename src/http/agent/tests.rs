use std::time::{Duration, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::*;
use crate::error::Upstream;

fn text(status: u16, body: &str) -> Refusal {
    Refusal {
        status: StatusCode::from_u16(status).unwrap(),
        body: body.into(),
        json: false,
    }
}

#[test]
fn query_parameters_as_the_agent_parses_them() {
    let q = parse_query(
        Some("secretId=prod%2Fdb&versionStage=AWSPREVIOUS&refreshNow=TRUE"),
        true,
    )
    .unwrap();
    assert_eq!(q.secret_id, "prod/db");
    assert_eq!(q.version_stage.as_deref(), Some("AWSPREVIOUS"));
    assert!(q.refresh_now);
    let q = parse_query(Some("secretId=a&secretId=b&refreshNow=0"), true).unwrap();
    assert_eq!(q.secret_id, "b", "the last duplicate wins");
    assert!(!q.refresh_now);
    assert_eq!(
        parse_query(Some("secretId=a&refreshNow=yes"), true),
        Err(text(400, "invalid refreshNow value"))
    );
    assert_eq!(
        parse_query(Some("foo=1"), true),
        Err(text(400, "unknown parameter: foo"))
    );
    assert_eq!(
        parse_query(None, true),
        Err(text(400, "missing parameter secretId"))
    );
    assert_eq!(
        parse_query(Some("versionStage=x"), true),
        Err(text(400, "missing parameter secretId"))
    );
    assert_eq!(
        parse_query(Some("secretId=y"), false),
        Err(text(400, "unknown parameter: secretId"))
    );
    assert_eq!(
        parse_query(Some("versionId=v&versionStage=s"), false)
            .unwrap()
            .version_id
            .as_deref(),
        Some("v")
    );
}

fn upstream(code: &str, status: Option<u16>, message: Option<&str>) -> Error {
    Error::upstream(
        ErrorKind::Unavailable,
        "x",
        Upstream {
            code: code.into(),
            status,
            message: message.map(str::to_owned),
        },
    )
}

#[test]
fn failures_map_as_in_the_agent_with_escaped_messages() {
    let r = refusal_for(&upstream(
        "AccessDeniedException",
        Some(400),
        Some(r#"no "access""#),
    ));
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        r#"{"__type":"AccessDeniedException","message":"no \"access\""}"#
    );
    let r = refusal_for(&upstream("InternalServiceError", Some(500), Some("")));
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, r#"{"__type":"InternalServiceError"}"#)
    );
    let r = refusal_for(&upstream("TimeoutError", None, None));
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (504, r#"{"__type":"TimeoutError","message":"Timeout"}"#)
    );
    let r = refusal_for(&upstream("ConnectionError", None, None));
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (
            502,
            r#"{"__type":"ConnectionError","message":"Read Error"}"#
        )
    );
    let r = refusal_for(&upstream("InternalFailure", None, None));
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, r#"{"__type":"InternalFailure"}"#)
    );
    let r = refusal_for(&Error::not_found("secret x not found"));
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.body.contains("ResourceNotFoundException"));
}

#[test]
fn arn_ids_are_judged_by_their_secret_name() {
    assert_eq!(name_of("prod/db"), "prod/db");
    assert_eq!(
        name_of("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"),
        "prod/db"
    );
    assert_eq!(
        name_of("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db"),
        "prod/db"
    );
    assert_eq!(
        name_of("arn:aws:secretsmanager:us-east-1:123456789012:secret:a-b-c"),
        "a-b-c"
    );
}

fn value(payload: Payload, created_ms: Option<u64>) -> SecretValue {
    SecretValue {
        arn: "arn:x".into(),
        name: "n".into(),
        version_id: String::new(),
        stages: vec!["AWSCURRENT".into()],
        created: created_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        payload,
    }
}

#[test]
fn the_success_body_keeps_the_agents_field_order_and_formats() {
    let body = success_body(&value(
        Payload::String(Zeroizing::new("s".into())),
        Some(1_569_534_789_046),
    ));
    assert_eq!(
        body,
        r#"{"ARN":"arn:x","Name":"n","VersionId":null,"SecretString":"s","VersionStages":["AWSCURRENT"],"CreatedDate":"1569534789.046"}"#
    );
    let body = success_body(&value(
        Payload::Binary(Zeroizing::new(vec![0, 255])),
        Some(1_700_000_000_000),
    ));
    assert!(body.contains(r#""SecretBinary":"AP8=""#), "{body}");
    assert!(!body.contains("SecretString"));
    assert!(body.ends_with(r#""CreatedDate":"1700000000"}"#), "{body}");
    let body = success_body(&value(Payload::String(Zeroizing::new("s".into())), None));
    assert!(body.ends_with(r#""CreatedDate":null}"#), "{body}");
}
