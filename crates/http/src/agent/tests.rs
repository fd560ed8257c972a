use std::time::{Duration, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::*;
use secretsfs_core::error::ErrorKind;
use secretsfs_core::error::Upstream;

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

/// Found by the fuzzer (http target), on the Parameter Store route; the secrets routes
/// answered the same way.
#[test]
fn an_unknown_parameter_with_a_newline_is_named_on_one_line() {
    assert_eq!(
        parse_query(Some("secretId=a&x%0D%0Ay=1"), true),
        Err(text(400, r"unknown parameter: x\r\ny"))
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
        answer: Default::default(),
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

#[test]
fn role_arn_is_a_parameter_of_both_routes_checked_for_its_shape() {
    let arn = "arn:aws:iam::123456789012:role/reader";
    let q = parse_query(Some(&format!("secretId=db&roleArn={arn}")), true).unwrap();
    assert_eq!(q.role_arn.as_deref(), Some(arn));
    let encoded = "arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Freader";
    let q = parse_query(Some(&format!("roleArn={encoded}")), false).unwrap();
    assert_eq!(q.role_arn.as_deref(), Some(arn));
    let invalid = || {
        text(
            400,
            "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>",
        )
    };
    for bad in [
        "not-a-valid-arn",
        "",
        "arn:aws:iam::123456789012:user/reader",
    ] {
        assert_eq!(
            parse_query(Some(&format!("secretId=db&roleArn={bad}")), true),
            Err(invalid()),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_query(Some("secretId=db&rolearn=x"), true),
        Err(text(400, "unknown parameter: rolearn")),
        "the name is case-sensitive, as in the agent"
    );
}

mod roles {
    use std::sync::Arc;

    use futures::FutureExt;

    use super::super::*;
    use crate::{Api, HttpSettings};
    use secretsfs_core::cache::CacheConfig;
    use secretsfs_core::engine::roles::{Connect, Roles};
    use secretsfs_core::error::ErrorKind;
    use secretsfs_core::policy::{self, Defaults, Policy, SystemDirectory};
    use secretsfs_core::source::DynSource;
    use secretsfs_core::source::memory::MemorySource;

    fn api(max_roles: Option<usize>) -> Api {
        let source = Arc::new(MemorySource::new());
        source.put("db", "base value");
        let engine = Arc::new(Engine::new(source, CacheConfig::default()));
        let defaults = Defaults {
            uid: 0,
            gid: 0,
            file_mode: policy::DEFAULT_FILE_MODE,
            dir_mode: policy::DEFAULT_DIR_MODE,
        };
        let policy = policy::shared(Policy::new(&[], defaults, &SystemDirectory).unwrap());
        let settings = HttpSettings {
            tcp: None,
            socket: None,
            max_conn: 10,
            header_timeout: std::time::Duration::from_secs(5),
            request_timeout: std::time::Duration::from_secs(5),
            path_prefix: "/v1/".into(),
            token_headers: vec!["X-Aws-Parameters-Secrets-Token".into()],
        };
        let api = Api::new(engine.clone(), policy, None, &settings).unwrap();
        let Some(max) = max_roles else {
            return api;
        };
        let connect: Connect = Arc::new(|role: String| {
            async move {
                if role.ends_with("/denied") {
                    return Err(Error::new(ErrorKind::AccessDenied, "AccessDenied"));
                }
                let source = Arc::new(MemorySource::new());
                source.put("db", &format!("value as {role}"));
                Ok(source as DynSource)
            }
            .boxed()
        });
        api.with_roles(Arc::new(Roles::new(engine, connect, max)))
    }

    fn query(role: Option<&str>) -> Query {
        Query {
            secret_id: "db".into(),
            role_arn: role.map(|r| format!("arn:aws:iam::123456789012:role/{r}")),
            ..Query::default()
        }
    }

    fn secret_string(body: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["SecretString"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_version_is_rendered_once_and_its_answer_shared() {
        let api = api(None);
        let first = get_secret(&api, query(None), &Peer::Tcp).await.unwrap();
        let second = get_secret(&api, query(None), &Peer::Tcp).await.unwrap();
        assert_eq!(secret_string(&first), "base value");
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same buffer, not a copy"
        );
    }

    #[tokio::test]
    async fn each_role_answers_its_own_value_and_refusals_are_the_agents() {
        let api = api(Some(2));
        let base = get_secret(&api, query(None), &Peer::Tcp).await.unwrap();
        assert_eq!(secret_string(&base), "base value");
        for role in ["a", "b"] {
            let body = get_secret(&api, query(Some(role)), &Peer::Tcp)
                .await
                .unwrap();
            assert_eq!(
                secret_string(&body),
                format!("value as arn:aws:iam::123456789012:role/{role}")
            );
        }
        let past = get_secret(&api, query(Some("c")), &Peer::Tcp)
            .await
            .unwrap_err();
        assert_eq!(past.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            past.body,
            r#"{"__type":"MaxRolesExceeded","message":"The maximum number of assumed roles (2) has been reached. Unable to assume the following role to create a client: arn:aws:iam::123456789012:role/c"}"#
        );
        assert!(past.json);
    }

    #[tokio::test]
    async fn a_role_that_cannot_be_assumed_is_403_and_without_roles_400() {
        let api = api(Some(2));
        let denied = get_secret(&api, query(Some("denied")), &Peer::Tcp)
            .await
            .unwrap_err();
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
        assert_eq!(
            denied.body,
            r#"{"__type":"AccessDeniedException","message":"Failed to create caching client from role: arn:aws:iam::123456789012:role/denied"}"#
        );
        let without = api_without_roles().await;
        let refused = get_secret(&without, query(Some("a")), &Peer::Tcp)
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.body.contains("InvalidParameterException"),
            "{}",
            refused.body
        );
    }

    async fn api_without_roles() -> Api {
        api(None)
    }
}
