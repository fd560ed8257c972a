use super::*;

#[test]
fn an_assignment_names_a_variable_and_a_selector() {
    let entry = parse_assignment("DB_PASSWORD=prod/db:password", "--env").unwrap();
    assert_eq!(entry.name, "DB_PASSWORD");
    assert_eq!(entry.from, From::Configured);
    assert_eq!(entry.selector.secret_id, "prod/db");
    assert_eq!(entry.selector.json_key.as_deref(), Some("password"));
    let staged = parse_assignment("OLD=prod/db::AWSPREVIOUS", "--env").unwrap();
    assert_eq!(
        staged.selector.version_stage.as_deref(),
        Some("AWSPREVIOUS")
    );
}

#[test]
fn bad_names_globs_and_shapes_are_refused_with_where() {
    let err = |text: &str| {
        parse_assignment(text, "--env")
            .unwrap_err()
            .message()
            .to_owned()
    };
    assert!(err("prod/db").contains("is not NAME=SELECTOR"));
    assert!(err("1X=prod/db").contains("invalid variable name \"1X\""));
    assert!(err("A-B=prod/db").contains("invalid variable name"));
    assert!(err("=prod/db").contains("invalid variable name \"\""));
    assert!(err("CERTS=certs/*").contains("no glob"));
    assert!(err("X=prod/db:a:b:c:d").starts_with("--env: X: invalid selector"));
}

#[test]
fn a_name_given_twice_is_refused() {
    let twice = ["A=x".to_owned(), "A=y".to_owned()];
    let err = entries(&twice, &[] as &[&str]).unwrap_err();
    assert_eq!(err.message(), "the variable A is given twice");
}

#[test]
fn an_env_file_holds_assignments_or_an_ecs_list() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("env");
    std::fs::write(
        &lines,
        "# the database\nDB=prod/db:password\n\nAPI=prod/api\n",
    )
    .unwrap();
    let read = entries(&[], &[&lines]).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].name, "API");

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "DB=prod/db\nnot an assignment\n").unwrap();
    let err = entries(&[], &[&bad]).unwrap_err();
    assert!(err.message().contains(", line 2: "), "{}", err.message());

    let ecs = dir.path().join("task.json");
    std::fs::write(
        &ecs,
        r#"{"containerDefinitions": [
            {"name": "sidecar"},
            {"name": "app", "secrets": [
                {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf:password::"},
                {"name": "OLD", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf::AWSPREVIOUS:"},
                {"name": "FEATURE", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/prod/feature"},
                {"name": "PLAIN", "valueFrom": "/prod/plain"}
            ]}
        ]}"#,
    )
    .unwrap();
    let read = entries(&[], &[&ecs]).unwrap();
    let froms: Vec<From> = read.iter().map(|e| e.from).collect();
    assert_eq!(
        froms,
        [
            From::SecretsManager,
            From::SecretsManager,
            From::ParameterStore,
            From::ParameterStore
        ]
    );
    assert_eq!(
        read[0].selector.secret_id,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf"
    );
    assert_eq!(read[0].selector.json_key.as_deref(), Some("password"));
    assert_eq!(
        read[1].selector.version_stage.as_deref(),
        Some("AWSPREVIOUS")
    );
    assert_eq!(
        read[2].selector.secret_id,
        "arn:aws:ssm:us-east-1:123456789012:parameter/prod/feature"
    );
    assert_eq!(read[3].selector.secret_id, "/prod/plain");
}

#[test]
fn an_ecs_list_with_another_service_or_two_containers_is_refused() {
    let refused = |json: &str| ecs::entries(json, "f").unwrap_err().message().to_owned();
    assert!(
        refused(r#"[{"name": "K", "valueFrom": "arn:aws:kms:us-east-1:1:key/x"}]"#)
            .contains("an ARN of kms")
    );
    assert!(
        refused(r#"{"containerDefinitions": [{"name": "a", "secrets": [{"name": "A", "valueFrom": "x"}]}, {"name": "b", "secrets": [{"name": "B", "valueFrom": "y"}]}]}"#)
            .contains("\"a\" and \"b\" both have secrets")
    );
    assert!(refused("[{\"name\": 1}]").starts_with("f: not an ECS secrets list"));
}
