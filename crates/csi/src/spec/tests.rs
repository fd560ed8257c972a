//! The AWS provider's reading of `objects`, case by case, with its messages
//! (docs/research/aws-csi-provider.md, section 3.4).

use super::*;

fn regions(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn parse(yaml: &str) -> Result<Vec<ObjectSpec>, SpecError> {
    parse_objects(yaml, Some('_'), &regions(&["us-east-1"]))
}

fn refused(yaml: &str) -> String {
    parse(yaml).unwrap_err().0
}

#[test]
fn a_class_written_for_the_aws_provider_reads_the_same() {
    let specs = parse(
        r#"
- objectName: "prod/db"
  objectType: "secretsmanager"
  jmesPath:
    - path: username
      objectAlias: dbuser
    - path: password
      objectAlias: dbpass
      filePermission: "0400"
- objectName: "/app/flag"
  objectType: "ssmparameter"
  objectVersion: 3
- objectName: "arn:aws:secretsmanager:us-east-1:123456789012:secret:api-AbCdEf"
  objectAlias: api
  filePermission: "0440"
"#,
    )
    .unwrap();
    assert_eq!(specs.len(), 3);
    assert_eq!(specs[0].object_type, ObjectType::SecretsManager);
    assert_eq!(specs[0].file_name, "prod_db");
    assert_eq!(specs[0].jmes_path[0].file_name, "dbuser");
    assert_eq!(
        specs[0].jmes_path[0].mode, None,
        "the request's default mode"
    );
    assert_eq!(specs[0].jmes_path[1].mode, Some(0o400));
    assert_eq!(specs[1].object_type, ObjectType::ParameterStore);
    assert_eq!(specs[1].file_name, "_app_flag");
    assert_eq!(specs[1].version.as_deref(), Some("3"), "a number is text");
    assert_eq!(
        specs[2].object_type,
        ObjectType::SecretsManager,
        "from the ARN"
    );
    assert_eq!(
        (specs[2].file_name.as_str(), specs[2].mode),
        ("api", Some(0o440))
    );
}

#[test]
fn keys_match_in_any_case_and_unknown_keys_are_ignored() {
    let specs = parse("- OBJECTNAME: x\n  objecttype: secretsmanager\n  colour: blue\n").unwrap();
    assert_eq!(specs[0].name, "x");
    assert_eq!(specs[0].object_type, ObjectType::SecretsManager);
}

#[test]
fn path_translation_is_a_character_or_false() {
    assert_eq!(path_translation(None), Ok(Some('_')));
    assert_eq!(path_translation(Some("")), Ok(Some('_')));
    assert_eq!(path_translation(Some("-")), Ok(Some('-')));
    assert_eq!(path_translation(Some("FaLsE")), Ok(None));
    let err = path_translation(Some("ab")).unwrap_err();
    assert_eq!(
        err.0,
        "pathTranslation must be either 'False' or a single character string"
    );
    let off = parse_objects(
        "- objectName: /a/b\n  objectType: ssmparameter\n",
        None,
        &regions(&["r"]),
    )
    .unwrap();
    assert_eq!(
        off[0].file_name, "a/b",
        "leading slashes dropped, inner ones kept"
    );
}

#[test]
fn each_object_check_has_the_aws_provider_s_message() {
    let cases = [
        (
            "- objectType: secretsmanager\n",
            "Object name must be specified".to_owned(),
        ),
        (
            "- objectName: x\n",
            "Must use objectType when a full ARN is not specified: x".to_owned(),
        ),
        (
            "- objectName: x\n  objectType: ssm\n",
            "Invalid objectType: ssm".to_owned(),
        ),
        (
            "- objectName: x\n  objectType: vault\n",
            "Invalid objectType: vault".to_owned(),
        ),
        (
            "- objectName: 'arn:aws:secretsmanager'\n",
            "Invalid ARN format in object name: arn:aws:secretsmanager".to_owned(),
        ),
        (
            "- objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:x'\n",
            "ARN region must match region us-east-1: arn:aws:secretsmanager:eu-west-1:1:secret:x"
                .to_owned(),
        ),
        (
            "- objectName: 'arn:aws:s3:us-east-1:1:bucket'\n",
            "Invalid service in ARN: arn:aws:s3:us-east-1:1:bucket".to_owned(),
        ),
        (
            "- objectName: 'arn:aws:ssm:us-east-1:1:parameter/x'\n  objectType: secretsmanager\n",
            "objectType does not match ARN: arn:aws:ssm:us-east-1:1:parameter/x".to_owned(),
        ),
        (
            "- objectName: p\n  objectType: ssmparameter\n  objectVersion: '1'\n  objectVersionLabel: l\n",
            "ssm parameters can not specify both objectVersion and objectVersionLabel: p"
                .to_owned(),
        ),
        (
            "- objectName: x\n  objectType: secretsmanager\n  filePermission: 0644\n",
            "Invalid File Permission: 644".to_owned(),
        ),
        (
            "- objectName: x\n  objectType: secretsmanager\n  filePermission: '0800'\n",
            "Invalid File Permission: 0800".to_owned(),
        ),
        (
            "- objectName: x\n  objectType: secretsmanager\n  jmesPath:\n    - objectAlias: a\n",
            "Path must be specified for JMES object".to_owned(),
        ),
        (
            "- objectName: x\n  objectType: secretsmanager\n  jmesPath:\n    - path: a\n",
            "Object alias must be specified for JMES object".to_owned(),
        ),
        (
            "- \n",
            "Empty descriptor entry in SecretProviderClass".to_owned(),
        ),
    ];
    for (yaml, message) in cases {
        assert_eq!(refused(yaml), message, "{yaml}");
    }
}

#[test]
fn a_name_that_climbs_out_of_the_mount_is_refused_without_translation() {
    let err = parse_objects(
        "- objectName: x\n  objectType: secretsmanager\n  objectAlias: a/../../etc\n",
        None,
        &regions(&["r"]),
    )
    .unwrap_err();
    assert_eq!(err.0, "path can not contain ../: a/../../etc");
    // Translated, no slash is left to climb, but the driver refuses a name starting with
    // `..`: refused here, before anything is fetched.
    let translated = parse("- objectName: x\n  objectType: secretsmanager\n  objectAlias: ../x\n");
    assert_eq!(
        translated.unwrap_err().0,
        "invalid filepath: \".._x\": a path cannot start with '..'"
    );
}

#[test]
fn failover_objects_need_an_alias_a_second_region_and_the_same_version() {
    let two = regions(&["us-east-1", "us-west-2"]);
    let good = "- objectName: x\n  objectType: secretsmanager\n  objectAlias: x\n  \
                failoverObject:\n    objectName: 'arn:aws:secretsmanager:us-west-2:1:secret:x'\n";
    let specs = parse_objects(good, Some('_'), &two).unwrap();
    let failover = specs[0].failover.as_ref().unwrap();
    assert_eq!(failover.name, "arn:aws:secretsmanager:us-west-2:1:secret:x");

    let no_alias = "- objectName: x\n  objectType: secretsmanager\n  \
                    failoverObject:\n    objectName: y\n";
    assert_eq!(
        parse_objects(no_alias, Some('_'), &two).unwrap_err().0,
        "object alias must be specified for objects with failover entries: x"
    );
    assert_eq!(
        parse_objects(good, Some('_'), &regions(&["us-east-1"]))
            .unwrap_err()
            .0,
        "failover object allowed only when failover region is defined: x"
    );
    let wrong_region = "- objectName: x\n  objectType: secretsmanager\n  objectAlias: x\n  \
                        failoverObject:\n    objectName: 'arn:aws:secretsmanager:us-east-1:1:secret:x'\n";
    assert_eq!(
        parse_objects(wrong_region, Some('_'), &two).unwrap_err().0,
        "ARN region must match region us-west-2: arn:aws:secretsmanager:us-east-1:1:secret:x"
    );
    // Exact equality, as the AWS provider's code has it: a version on one side only differs.
    let versions = "- objectName: x\n  objectType: secretsmanager\n  objectAlias: x\n  \
                    objectVersion: v1\n  failoverObject:\n    objectName: y\n";
    assert_eq!(
        parse_objects(versions, Some('_'), &two).unwrap_err().0,
        "object versions must match between primary and failover regions: x"
    );
}

#[test]
fn two_objects_that_would_write_one_file_are_refused() {
    let cases = [
        (
            "- {objectName: x, objectType: secretsmanager}\n- {objectName: x, objectType: secretsmanager}\n",
            "found descriptor with duplicate object name x, no object alias, and no version label",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a}\n\
             - {objectName: x, objectType: secretsmanager, objectAlias: a}\n",
            "found descriptor with duplicate object name x, duplicate object alias a, and no version label",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectVersionLabel: l}\n\
             - {objectName: x, objectType: secretsmanager, objectVersionLabel: l}\n",
            "found descriptor with duplicate object name x, no object alias, and duplicate version label l",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a}\n\
             - {objectName: y, objectType: secretsmanager, objectAlias: a}\n",
            "found duplicate object alias a",
        ),
        (
            "- {objectName: x, objectType: secretsmanager, objectAlias: a}\n\
             - {objectName: y, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: a}]}\n",
            "Name already in use for objectAlias: found duplicate object alias a in JMES path entry p",
        ),
    ];
    for (yaml, message) in cases {
        assert_eq!(refused(yaml), message, "{yaml}");
    }
    // The same name twice is fine when the files differ.
    parse(
        "- {objectName: x, objectType: secretsmanager, objectAlias: a}\n\
         - {objectName: x, objectType: secretsmanager, objectAlias: b}\n",
    )
    .unwrap();
}

#[test]
fn what_is_not_a_list_of_maps_is_a_load_error() {
    assert!(parse("").unwrap().is_empty(), "no objects");
    let not_a_list = refused("objectName: x\n");
    assert!(
        not_a_list.starts_with("Failed to load SecretProviderClass: "),
        "{not_a_list}"
    );
    let bad_yaml = refused("- objectName: [x\n");
    assert!(
        bad_yaml.starts_with("Failed to load SecretProviderClass: "),
        "{bad_yaml}"
    );
    let nested = refused("- objectName: {a: b}\n  objectType: secretsmanager\n");
    assert_eq!(
        nested,
        "Failed to load SecretProviderClass: objectName must be a string"
    );
}

#[test]
fn file_names_the_driver_would_not_write_are_refused_before_any_fetch() {
    let regions = ["us-east-1".to_owned()];
    let refused = |objects: &str| parse_objects(objects, None, &regions).unwrap_err().0;
    let object = |name: &str| format!("- objectName: {name}\n  objectType: secretsmanager\n");
    assert_eq!(
        refused(&object("a//b")),
        "invalid filepath: \"a//b\": the driver writes only clean paths (no //, /./ or trailing /)"
    );
    assert!(refused(&object("a/./b")).starts_with("invalid filepath: \"a/./b\""));
    assert!(refused(&object("a/")).starts_with("invalid filepath: \"a/\""));
    assert!(refused(&object("..")).contains("cannot start with '..'"));
    assert!(refused(&object("a/../b")).contains("can not contain ../"));
    assert!(refused(&object("a/..")).contains("can not contain ../"));
    assert!(refused(&object(&"x".repeat(256))).contains("at most 255"));
    let jmes = "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - path: k\n      objectAlias: x//y\n";
    assert!(refused(jmes).starts_with("invalid filepath: \"x//y\""));
    // Leading slashes go (as the AWS provider trims them); inner ones make directories.
    let specs = parse_objects(&object("/a/b"), None, &regions).unwrap();
    assert_eq!(specs[0].file_name, "a/b");
}
