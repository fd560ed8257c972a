//! The moto tier through HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use super::serve;
use crate::support::cli::{aws_args, strs};
use crate::support::http;
use crate::support::moto::Moto;

/// The moto tier through HTTP: stages, a custom label and version ids as moto holds them.
#[tokio::test]
async fn http_serves_exactly_what_moto_holds() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let name = "http/moto/db";
    let label = "CUSTOMLABEL";
    let created = sm
        .create_secret()
        .name(name)
        .secret_string(r#"{"v":1}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", DisplayErrorContext(&e)));
    let v1 = created.version_id().unwrap().to_owned();
    for value in [r#"{"v":2}"#, r#"{"v":3}"#] {
        sm.put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("putting into {name}: {}", DisplayErrorContext(&e)));
    }
    sm.update_secret_version_stage()
        .secret_id(name)
        .version_stage(label)
        .move_to_version_id(&v1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("labelling {name}: {}", DisplayErrorContext(&e)));

    let served = serve(&strs(&aws_args(&moto.endpoint_url())), &[]).await;
    let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
        (format!("/secretsmanager/get?secretId={name}"), None, None),
        (format!("/v1/{name}"), None, None),
        (
            format!("/v1/{name}?versionStage=AWSCURRENT"),
            Some("AWSCURRENT"),
            None,
        ),
        (
            format!("/v1/{name}?versionStage=AWSPREVIOUS"),
            Some("AWSPREVIOUS"),
            None,
        ),
        (
            format!("/secretsmanager/get?secretId={name}&versionStage={label}"),
            Some(label),
            None,
        ),
        (
            format!("/v1/{name}?versionId={v1}"),
            None,
            Some(v1.as_str()),
        ),
    ];
    let mut failures = Vec::new();
    let mut seen_values = std::collections::BTreeSet::new();
    for (target, stage, version_id) in &cases {
        let held = sm
            .get_secret_value()
            .secret_id(name)
            .set_version_stage(stage.map(str::to_owned))
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading {target} from moto: {}", DisplayErrorContext(&e)));
        let r = http::get(served.addr, target).await;
        if r.status != 200 {
            failures.push(format!("{target}: status {} {}", r.status, r.describe()));
            continue;
        }
        let json = r.json();
        let stages: Vec<&str> = json["VersionStages"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let created = held
            .created_date()
            .map(|d| SystemTime::try_from(*d).unwrap())
            .map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64()
                    .to_string()
            });
        let mut wrong = Vec::new();
        if json["SecretString"].as_str() != held.secret_string() {
            wrong.push("SecretString");
        }
        if json["VersionId"].as_str() != held.version_id() {
            wrong.push("VersionId");
        }
        if stages != held.version_stages() {
            wrong.push("VersionStages");
        }
        if json["Name"].as_str() != held.name() || json["ARN"].as_str() != held.arn() {
            wrong.push("Name or ARN");
        }
        if json["CreatedDate"].as_str() != created.as_deref() {
            wrong.push("CreatedDate");
        }
        if !wrong.is_empty() {
            failures.push(format!("{target}: {wrong:?} differ from moto's"));
        }
        seen_values.insert(held.secret_string().unwrap_or_default().to_owned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        seen_values.len(),
        3,
        "the stages select three different versions"
    );
}
