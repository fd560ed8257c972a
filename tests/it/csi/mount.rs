//! What a Mount answers: every parameter of the AWS provider's classes, jmesPath, Parameter
//! Store, failover, a bad class, a total over the driver's limit, and Version.

use secretsfs::csi::proto::VersionRequest;

use super::*;
use crate::support::moto::{create_string, put_parameter};

const SECURE: aws_sdk_ssm::types::ParameterType = aws_sdk_ssm::types::ParameterType::SecureString;

const DB: &str = r#"{"username":"app","password":"pw-1","port":5432}"#;

#[tokio::test]
async fn the_aws_provider_s_class_mounts_with_its_files_modes_and_versions() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    let db = create_string(&sm, "prod/db", DB).await;
    let api = create_string(&sm, "prod/api-key", "key-1").await;
    let ssm = world.moto.ssm_client().await;
    put_parameter(&ssm, "/prod/feature", "on", SECURE).await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let objects = format!(
        r#"
- objectName: prod/db
  objectType: secretsmanager
  filePermission: "0440"
  jmesPath:
    - path: username
      objectAlias: db-user
    - path: password
      objectAlias: db-password
      filePermission: "0400"
- objectName: "{}"
  objectAlias: api
- objectName: /prod/feature
  objectType: ssmparameter
"#,
        api.arn
    );
    let pod = Pod::new("shop", "web-1", "web");
    let answer = mount(
        &mut client,
        &pod,
        &[("objects", &objects), ("region", REGION)],
    )
    .await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    let files = files(&answer);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["_prod_feature", "api", "db-password", "db-user", "prod_db"]
    );
    assert_eq!(files["prod_db"], (0o440, DB.as_bytes().to_vec()));
    assert_eq!(files["db-user"], (0o440, b"app".to_vec()));
    assert_eq!(files["db-password"], (0o400, b"pw-1".to_vec()));
    assert_eq!(files["api"], (0o644, b"key-1".to_vec()));
    assert_eq!(files["_prod_feature"], (0o644, b"on".to_vec()));
    let versions = versions(&answer);
    assert_eq!(versions["prod_db"], db.version_id);
    assert_eq!(versions["db-user"], db.version_id);
    assert_eq!(versions["api"], api.version_id);
    assert_eq!(versions["_prod_feature"], "1");
    // One AssumeRoleWithWebIdentity for the pod's role; the values in one batch.
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(world.proxy.calls("BatchGetSecretValue"), 1);
    assert_eq!(world.proxy.calls("GetSecretValue"), 0);
    assert_eq!(world.proxy.calls("GetParameter"), 1);
}

#[tokio::test]
async fn versions_labels_path_translation_and_nested_paths_follow_the_class() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    let first = create_string(&sm, "app/token", "t-1").await;
    let second = crate::support::moto::put_string(&sm, "app/token", "t-2").await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let objects = format!(
        r#"
- objectName: app/token
  objectType: secretsmanager
  objectAlias: current
- objectName: app/token
  objectType: secretsmanager
  objectAlias: previous
  objectVersionLabel: AWSPREVIOUS
- objectName: app/token
  objectType: secretsmanager
  objectAlias: pinned
  objectVersion: "{}"
- objectName: app/token
  objectType: secretsmanager
"#,
        first.version_id
    );
    let pod = Pod::new("shop", "web-1", "web");
    let answer = mount(
        &mut client,
        &pod,
        &[
            ("objects", &objects),
            ("region", REGION),
            ("pathTranslation", "False"),
        ],
    )
    .await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    let files = files(&answer);
    assert_eq!(files["current"].1, b"t-2");
    assert_eq!(files["previous"].1, b"t-1");
    assert_eq!(files["pinned"].1, b"t-1");
    // Translation off: the name's `/` stays, a nested path the driver writes.
    assert_eq!(files["app/token"].1, b"t-2");
    let versions = versions(&answer);
    assert_eq!(versions["current"], second);
    assert_eq!(versions["previous"], first.version_id);
    assert_eq!(versions["pinned"], first.version_id);

    let translated = mount(
        &mut client,
        &pod,
        &[
            (
                "objects",
                "- objectName: app/token\n  objectType: secretsmanager\n",
            ),
            ("region", REGION),
            ("pathTranslation", "-"),
        ],
    )
    .await;
    assert_eq!(files_of(&translated), ["app-token"]);
}

fn files_of(answer: &MountResponse) -> Vec<String> {
    files(answer).into_keys().collect()
}

#[tokio::test]
async fn a_bad_class_is_refused_with_its_code_and_the_aws_provider_s_words_in_the_log() {
    let world = World::new();
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let pod = Pod::new("shop", "web-1", "web");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        (
            &[
                ("objects", "- objectName: a\n  objectType: vault\n"),
                ("region", REGION),
            ],
            "InvalidSecretProviderClass",
            "Invalid objectType: vault",
        ),
        (
            &[
                (
                    "objects",
                    "- objectName: a\n  objectType: secretsmanager\n  filePermission: 0644\n",
                ),
                ("region", REGION),
            ],
            "InvalidSecretProviderClass",
            "Invalid File Permission",
        ),
        (
            &[
                ("objects", "- objectName: a\n  objectType: secretsmanager\n"),
                ("region", REGION),
                ("pathTranslation", "--"),
            ],
            "InvalidSecretProviderClass",
            "pathTranslation must be either 'False' or a single character string",
        ),
        (
            &[
                (
                    "objects",
                    "- objectName: a\n  objectType: secretsmanager\n  failoverObject:\n    objectName: b\n",
                ),
                ("region", REGION),
                ("failoverRegion", OTHER_REGION),
            ],
            "InvalidSecretProviderClass",
            "object alias must be specified for objects with failover entries",
        ),
        (
            &[
                ("objects", "- objectName: a\n  objectType: secretsmanager\n"),
                ("region", REGION),
                ("failoverRegion", REGION),
            ],
            "InvalidSecretProviderClass",
            "failover region cannot be the same as the primary region",
        ),
        (
            &[("objects", ""), ("region", REGION)],
            "NoObjects",
            "names no objects",
        ),
    ];
    for (parameters, expected_code, words) in cases {
        let answer = mount(&mut client, &pod, parameters).await;
        assert_eq!(code(&answer), expected_code, "{parameters:?}");
        assert!(answer.files.is_empty() && answer.object_version.is_empty());
        let log = provider.stderr();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("mount refused"))
            .unwrap_or_else(|| panic!("no log line for {parameters:?}:\n{log}"));
        assert!(line.contains(words), "{words:?} not in {line}");
        assert!(line.contains("shop/web-1"), "the pod is named: {line}");
    }
    // Nothing was asked of AWS for a class that cannot be served.
    assert_eq!(world.proxy.total(), 0, "{:?}", world.proxy.ops());
}

#[tokio::test]
async fn a_missing_secret_and_a_bad_jmes_path_are_refused_with_their_codes_and_no_value() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    create_string(&sm, "prod/db", DB).await;
    create_string(&sm, "prod/plain", "not-json-value").await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let pod = Pod::new("shop", "web-1", "web");
    let cases = [
        (
            "- objectName: prod/missing\n  objectType: secretsmanager\n",
            "ResourceNotFoundException",
            "prod_missing",
        ),
        (
            "- objectName: prod/db\n  objectType: secretsmanager\n  jmesPath:\n    - path: port\n      objectAlias: port\n",
            "JmesPathResultNotString",
            "port",
        ),
        (
            "- objectName: prod/db\n  objectType: secretsmanager\n  jmesPath:\n    - path: nothing\n      objectAlias: nomatch\n",
            "JmesPathNoMatch",
            "nomatch",
        ),
        (
            "- objectName: prod/plain\n  objectType: secretsmanager\n  jmesPath:\n    - path: a\n      objectAlias: a\n",
            "JmesPathValueNotJson",
            "a",
        ),
    ];
    for (objects, expected_code, object) in cases {
        let answer = mount(
            &mut client,
            &pod,
            &[("objects", objects), ("region", REGION)],
        )
        .await;
        assert_eq!(code(&answer), expected_code, "{}", provider.stderr());
        let log = provider.stderr();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("mount refused"))
            .unwrap();
        assert!(line.contains(&format!("object={object}")), "{line}");
    }
    let log = provider.stderr();
    for value in ["pw-1", "not-json-value", "5432"] {
        assert!(!log.contains(value), "a value reached the log");
    }
}

#[tokio::test]
async fn the_failover_region_answers_when_the_primary_is_down() {
    let world = World::new();
    create_string(&world.sm(REGION).await, "prod/db", "primary").await;
    let replica = create_string(&world.sm(OTHER_REGION).await, "prod/db-replica", "replica").await;
    let provider = world.provider(&["--timeout", "5"]).await;
    let mut client = provider.client().await;
    let objects = "- objectName: prod/db\n  objectType: secretsmanager\n  objectAlias: db\n  failoverObject:\n    objectName: prod/db-replica\n";
    let parameters = [
        ("objects", objects),
        ("region", REGION),
        ("failoverRegion", OTHER_REGION),
    ];
    let pod = Pod::new("shop", "web-1", "web");
    let healthy = mount(&mut client, &pod, &parameters).await;
    assert_eq!(files(&healthy)["db"].1, b"primary");
    // While the primary answers, the failover region is not asked.
    assert!(
        !world
            .proxy
            .regions("GetSecretValue")
            .contains(&OTHER_REGION.to_owned())
    );

    world.proxy.fail_region(REGION);
    let other = Pod::new("shop", "batch-1", "batch");
    let failed_over = mount(&mut client, &other, &parameters).await;
    assert_eq!(code(&failed_over), "", "{}", provider.stderr());
    assert_eq!(files(&failed_over)["db"].1, b"replica");
    assert_eq!(versions(&failed_over)["db"], replica.version_id);
    assert!(provider.stderr().contains("reading in the failover region"));
}

#[tokio::test]
async fn answers_over_the_driver_s_4_mib_are_refused_with_response_too_large() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    let big = "x".repeat(65_000);
    let mut objects = String::new();
    for i in 0..65 {
        sm.create_secret()
            .name(format!("bulk/{i:02}"))
            .secret_string(&big)
            .send()
            .await
            .unwrap();
        objects.push_str(&format!(
            "- objectName: bulk/{i:02}\n  objectType: secretsmanager\n"
        ));
    }
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let pod = Pod::new("shop", "web-1", "web");
    let answer = mount(
        &mut client,
        &pod,
        &[("objects", &objects), ("region", REGION)],
    )
    .await;
    assert_eq!(code(&answer), "ResponseTooLarge");
    assert!(
        provider
            .stderr()
            .contains("over the 4194304 the driver takes")
    );

    // Under the limit but over 1 MiB: served, with the driver's warning in the log.
    let some: String = objects.lines().take(2 * 20).collect::<Vec<_>>().join("\n");
    let answer = mount(&mut client, &pod, &[("objects", &some), ("region", REGION)]).await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    assert_eq!(answer.files.len(), 20);
    assert!(
        provider
            .stderr()
            .contains("syncing its files to a Kubernetes Secret may fail")
    );

    // The limit is the encoded message's: two files of 65,000 bytes, named `bulk_00` and
    // `bulk_01`, weigh 130,014 bytes of names and contents, but more as an answer (their
    // versions, ids, modes and framing): a limit between the two refuses it.
    let limited = world.provider(&["--max-response-bytes", "130050"]).await;
    let mut client = limited.client().await;
    let two: String = objects.lines().take(4).collect::<Vec<_>>().join("\n");
    let answer = mount(&mut client, &pod, &[("objects", &two), ("region", REGION)]).await;
    assert_eq!(code(&answer), "ResponseTooLarge", "{}", limited.stderr());
}

#[tokio::test]
async fn version_names_the_runtime() {
    let world = World::new();
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let version = client
        .version(VersionRequest {
            version: "v1alpha1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.version, "v1alpha1");
    assert_eq!(version.runtime_name, "secretsfs");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn parameters_by_name_arn_version_and_label_and_failover_without_a_failover_object() {
    let world = World::new();
    let ssm = world.moto.ssm_client().await;
    for value in ["v1", "v2"] {
        put_parameter(&ssm, "/prod/flag", value, SECURE).await;
    }
    ssm.label_parameter_version()
        .name("/prod/flag")
        .parameter_version(1)
        .labels("stable")
        .send()
        .await
        .unwrap();
    create_string(&world.sm(OTHER_REGION).await, "prod/db", "replica").await;
    let provider = world.provider(&["--timeout", "5"]).await;
    let mut client = provider.client().await;
    let objects = "
- objectName: /prod/flag
  objectType: ssmparameter
  objectAlias: latest
- objectName: arn:aws:ssm:us-east-1:123456789012:parameter/prod/flag
  objectAlias: by-arn
- objectName: /prod/flag
  objectType: ssmparameter
  objectAlias: first
  objectVersion: \"1\"
- objectName: /prod/flag
  objectType: ssmparameter
  objectAlias: stable
  objectVersionLabel: stable
";
    let pod = Pod::new("shop", "web-1", "web");
    let answer = mount(
        &mut client,
        &pod,
        &[("objects", objects), ("region", REGION)],
    )
    .await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    let files = files(&answer);
    assert_eq!(files["latest"].1, b"v2");
    assert_eq!(files["by-arn"].1, b"v2");
    assert_eq!(files["first"].1, b"v1");
    assert_eq!(files["stable"].1, b"v1");
    let versions = versions(&answer);
    assert_eq!(
        [
            &versions["latest"],
            &versions["by-arn"],
            &versions["first"],
            &versions["stable"]
        ],
        ["2", "2", "1", "1"]
    );

    // failoverRegion alone: the same name in the second region, when the first is down.
    world.proxy.fail_region(REGION);
    let failover = [
        (
            "objects",
            "- objectName: prod/db\n  objectType: secretsmanager\n",
        ),
        ("region", REGION),
        ("failoverRegion", OTHER_REGION),
    ];
    let answer = mount(&mut client, &pod, &failover).await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    assert_eq!(files_of(&answer), ["prod_db"]);
    assert_eq!(crate::csi::files(&answer)["prod_db"].1, b"replica");
}
