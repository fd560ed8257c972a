//! End-to-end tier: the `secretsfs` binary reading from moto, compared byte
//! for byte with what moto returns to the AWS SDK.
//!
//! Failure messages name selectors, never values: test values are dummies,
//! but the habit is what keeps real ones out of logs.

use std::process::Output;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::primitives::Blob;

use crate::support::cli;
use crate::support::moto::{Moto, create_string, put_string};
use crate::support::mount::Mounted;

const EXIT_NOT_FOUND: i32 = 66;

const JSON_V1: &str = r#"{"user":"admin","password":"p@ss:w/rd"}"#;
const JSON_V2: &str = r#"{"user":"admin","password":"s3cond:p@ss/2"}"#;
const JSON_V3: &str = r#"{"user":"admin","password":"th1rd:p@ss/3"}"#;
const PLAIN: &str = "just a string: with colons and / slashes";
const SLASHED: &str = "postgres://app:pw@db/prod";
/// Not UTF-8, and with a NUL and a newline, so any text handling shows.
const BINARY: &[u8] = &[0x00, 0xff, 0xfe, b'\n', 0x80, b'x', 0xc3];
const CUSTOM_LABEL: &str = "CUSTOMLABEL";

#[tokio::test]
async fn get_prints_exactly_what_moto_holds() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let prefix = "get_prints_exactly_what_moto_holds";

    // Three versions so that AWSCURRENT, AWSPREVIOUS and the custom label
    // each select a different value.
    let json = format!("{prefix}-json");
    let v1 = create_string(&sm, &json, JSON_V1).await.version_id;
    put_string(&sm, &json, JSON_V2).await;
    put_string(&sm, &json, JSON_V3).await;
    sm.update_secret_version_stage()
        .secret_id(&json)
        .version_stage(CUSTOM_LABEL)
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("labelling {json}: {}", DisplayErrorContext(&e)));

    let plain = format!("{prefix}-plain");
    create_string(&sm, &plain, PLAIN).await;

    let binary = format!("{prefix}-binary");
    sm.create_secret()
        .name(&binary)
        .secret_binary(Blob::new(BINARY))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {binary}: {}", DisplayErrorContext(&e)));

    let slashed = format!("prod/{prefix}/db");
    let slashed_arn = create_string(&sm, &slashed, SLASHED).await.arn;

    // Guards against a vacuous pass: the comparisons below are only meaningful
    // if moto really moved the stages as AWS does.
    let current = held(&sm, &json, Version::Current).await;
    let previous = held(&sm, &json, Version::Stage("AWSPREVIOUS")).await;
    let custom = held(&sm, &json, Version::Stage(CUSTOM_LABEL)).await;
    assert!(
        current == JSON_V3.as_bytes(),
        "moto: AWSCURRENT of {json} is not the last put"
    );
    assert!(
        previous == JSON_V2.as_bytes(),
        "moto: AWSPREVIOUS of {json} is not the second put"
    );
    assert!(
        custom == JSON_V1.as_bytes(),
        "moto: {CUSTOM_LABEL} of {json} is not the first version"
    );

    let binary_value = held(&sm, &binary, Version::Current).await;
    assert!(
        binary_value == BINARY,
        "moto: {binary} does not hold the bytes it was created with"
    );

    let cases = vec![
        (json.clone(), current.clone()),
        (format!("{json}:password"), json_key(&current, "password")),
        (format!("{json}:user"), json_key(&current, "user")),
        (format!("{json}::AWSPREVIOUS"), previous.clone()),
        (format!("{json}::{CUSTOM_LABEL}"), custom),
        (
            format!("{json}:::{v1}"),
            held(&sm, &json, Version::Id(&v1)).await,
        ),
        (
            format!("{json}:password:AWSPREVIOUS"),
            json_key(&previous, "password"),
        ),
        (plain.clone(), held(&sm, &plain, Version::Current).await),
        (binary.clone(), binary_value),
        (slashed.clone(), held(&sm, &slashed, Version::Current).await),
        (
            slashed_arn.clone(),
            held(&sm, &slashed_arn, Version::Current).await,
        ),
    ];

    let mut failures = Vec::new();
    for (selector, expected) in &cases {
        let out = secretsfs_get(&moto, selector).await;
        if out.status.code() != Some(0) {
            failures.push(format!(
                "get {selector}: {}, stderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ));
        } else if out.stdout != *expected {
            failures.push(format!("value of {selector} differs"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} selectors failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn get_of_missing_secret_exits_66_with_one_line() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let prefix = "get_of_missing_secret_exits_66_with_one_line";
    // A neighbour exists so the lookup is not trivially against an empty store.
    create_string(&sm, &format!("{prefix}-present"), PLAIN).await;
    let selector = format!("{prefix}-absent");

    let out = secretsfs_get(&moto, &selector).await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_not_found(&out, &selector);
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1 && !stderr.trim().is_empty(),
        "get {selector}: stderr is not exactly one line: {stderr:?}"
    );
}

#[tokio::test]
async fn get_of_missing_json_key_exits_66_without_leaking_the_secret() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let json = "get_of_missing_json_key_exits_66_without_leaking_the_secret-json";
    create_string(&sm, json, JSON_V1).await;
    let selector = format!("{json}:no-such-key");

    let out = secretsfs_get(&moto, &selector).await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    // Checked first because the assertions below show stderr.
    let leaks = stderr.contains("p@ss:w/rd");
    assert!(!leaks, "get {selector}: stderr contains the secret value");
    assert_not_found(&out, &selector);
}

enum Version<'a> {
    Current,
    Stage(&'a str),
    Id(&'a str),
}

/// The value as moto hands it to the SDK: the reference the CLI must match.
async fn held(sm: &Client, id: &str, version: Version<'_>) -> Vec<u8> {
    let request = sm.get_secret_value().secret_id(id);
    let request = match version {
        Version::Current => request,
        Version::Stage(stage) => request.version_stage(stage),
        Version::Id(version_id) => request.version_id(version_id),
    };
    let out = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading {id} from moto: {}", DisplayErrorContext(&e)));
    match (out.secret_string(), out.secret_binary()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(blob)) => blob.as_ref().to_vec(),
        (None, None) => panic!("moto returned neither a string nor a binary for {id}"),
    }
}

/// A JSON string member as its raw text, the way `name:key` prints it.
fn json_key(document: &[u8], key: &str) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(document)
        .unwrap_or_else(|_| panic!("test secret is not JSON (key {key})"));
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("test secret has no string member {key}"))
        .as_bytes()
        .to_vec()
}

async fn secretsfs_get(moto: &Moto, selector: &str) -> Output {
    cli::get_from(&moto.endpoint_url(), selector).await
}

/// `get SELECTOR` exited 66 (not found) and wrote nothing to stdout.
fn assert_not_found(out: &Output, selector: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(EXIT_NOT_FOUND),
        "get {selector}, stderr: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "get {selector} wrote {} bytes to stdout",
        out.stdout.len()
    );
}

/// The mount against moto: the same stages, rotation and custom label, read as files.
#[tokio::test]
async fn the_mount_serves_exactly_what_moto_holds() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let json = "mounted/db";
    let v1 = create_string(&sm, json, JSON_V1).await.version_id;
    put_string(&sm, json, JSON_V2).await;
    sm.update_secret_version_stage()
        .secret_id(json)
        .version_stage(CUSTOM_LABEL)
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("labelling {json}: {}", DisplayErrorContext(&e)));
    create_string(&sm, "mounted/team/plain", PLAIN).await;
    sm.create_secret()
        .name("mounted/binary")
        .secret_binary(Blob::new(BINARY))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the binary secret: {}", DisplayErrorContext(&e)));
    create_string(&sm, "elsewhere", "not under the prefix").await;

    let mut global = cli::aws_args(&moto.endpoint_url());
    global.extend(["--ttl".to_owned(), "1".to_owned()]);
    let m = Mounted::start(&cli::strs(&global), &["--prefix", "mounted"]).await;

    let current = held(&sm, json, Version::Current).await;
    let cases = vec![
        ("db".to_owned(), current.clone()),
        ("db:password".to_owned(), json_key(&current, "password")),
        (
            "db::AWSPREVIOUS".to_owned(),
            held(&sm, json, Version::Stage("AWSPREVIOUS")).await,
        ),
        (
            format!("db::{CUSTOM_LABEL}"),
            held(&sm, json, Version::Stage(CUSTOM_LABEL)).await,
        ),
        (
            format!("db:::{v1}"),
            held(&sm, json, Version::Id(&v1)).await,
        ),
        ("team/plain".to_owned(), PLAIN.as_bytes().to_vec()),
        ("binary".to_owned(), BINARY.to_vec()),
    ];
    for (path, expected) in &cases {
        let read = std::fs::read(m.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(read == *expected, "value of {path} differs");
        assert_eq!(
            std::fs::metadata(m.path(path)).unwrap().len(),
            expected.len() as u64
        );
    }
    let listed: std::collections::BTreeSet<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, ["binary", "db", "team"].map(str::to_owned).into());

    // A rotation is visible once the TTL has passed.
    put_string(&sm, json, JSON_V3).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let rotated = std::fs::read(m.path("db:password")).unwrap();
    assert!(
        rotated == json_key(JSON_V3.as_bytes(), "password"),
        "rotation not visible"
    );
}

/// A rotation to a value of the same length, within the same second of CreatedDate (moto keeps
/// whole seconds), is seen within the TTL in both read paths.
#[tokio::test]
async fn a_same_length_rotation_through_moto_is_seen_in_both_read_paths() {
    let moto = Moto::start();
    let sm = moto.client().await;
    create_string(&sm, "same/length", r#"{"password":"aaaa-1111"}"#).await;
    let endpoint = moto.endpoint_url();
    let global = cli::aws_args(&endpoint);
    let mut global: Vec<&str> = global.iter().map(String::as_str).collect();
    global.extend(["--ttl", "1"]);
    let kernel_cached = Mounted::start(&global, &[]).await;
    let direct = Mounted::start(&global, &["--no-kernel-cache"]).await;
    for m in [&kernel_cached, &direct] {
        let read = std::fs::read(m.path("same/length:password")).unwrap();
        assert!(read == b"aaaa-1111", "first value");
    }
    put_string(&sm, "same/length", r#"{"password":"bbbb-2222"}"#).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for m in [&kernel_cached, &direct] {
        let read = std::fs::read(m.path("same/length:password")).unwrap();
        assert!(read == b"bbbb-2222", "same-length rotation not visible");
    }
}

/// A directory of 250 secrets in moto: `ls -l` costs one BatchGetSecretValue per 20 of them and
/// no GetSecretValue, whatever the cache's size.
#[tokio::test]
async fn ls_l_of_a_large_moto_directory_fetches_in_batches() {
    let moto = Moto::start();
    let sm = moto.client().await;
    for i in 0..250 {
        create_string(&sm, &format!("large/s{i:03}"), "v").await;
    }
    let mut global = cli::aws_args(&moto.endpoint_url());
    global.extend(["--cache-size".into(), "200".into()]);
    let mut m = Mounted::start(&cli::strs(&global), &[]).await;
    assert_eq!(crate::mount::files_shown_by_ls("-l", &m.path("large")), 250);
    m.stop();
    let calls = &m.final_stats()["upstream_calls"];
    let batches = calls["batch_get_secret_value"].as_u64().unwrap();
    assert!((13..=16).contains(&batches), "{calls}");
    assert_eq!(calls["get_secret_value"], 0, "{calls}");
}
