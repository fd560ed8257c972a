//! Operations over many secrets: ListSecrets pagination and name filters,
//! and BatchGetSecretValue by ids and by filters.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::client;
use crate::support::fake_sm::{FakeSecretsManager, Op, SecretData};

fn name_filter(values: &[&str]) -> Filter {
    Filter::builder()
        .key(FilterNameStringType::Name)
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build()
}

async fn list_names(client: &Client, filter: Filter) -> Vec<String> {
    let pages: Vec<_> = client
        .list_secrets()
        .filters(filter)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("ListSecrets");
    pages
        .iter()
        .flat_map(|page| page.secret_list())
        .filter_map(|entry| entry.name().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn list_secrets_paginates() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.set_list_page_size(2);
    for i in (0..5).rev() {
        fake.put_string(&format!("page/{i}"), "value");
    }

    let pages: Vec<_> = client
        .list_secrets()
        .max_results(100)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("ListSecrets");
    let sizes: Vec<usize> = pages.iter().map(|p| p.secret_list().len()).collect();
    assert_eq!(sizes, [2, 2, 1], "the configured page size caps MaxResults");
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.secret_list())
        .filter_map(|entry| entry.name())
        .collect();
    assert_eq!(names, ["page/0", "page/1", "page/2", "page/3", "page/4"]);
    let entry = &pages[0].secret_list()[0];
    assert_eq!(entry.arn(), Some(fake.arn("page/0").as_str()));
    let stages = entry
        .secret_versions_to_stages()
        .expect("SecretVersionsToStages");
    assert_eq!(
        stages.values().collect::<Vec<_>>(),
        [&["AWSCURRENT".to_owned()]]
    );
    assert!(entry.created_date().is_some() && entry.last_changed_date().is_some());

    assert_eq!(fake.calls(Op::ListSecrets), 3);
    let tokens: Vec<bool> = fake
        .requests()
        .iter()
        .filter(|(op, _)| *op == Op::ListSecrets)
        .map(|(_, body)| body["NextToken"].is_string())
        .collect();
    assert_eq!(tokens, [false, true, true]);

    let pages: Vec<_> = client
        .list_secrets()
        .into_paginator()
        .page_size(1)
        .send()
        .try_collect()
        .await
        .expect("ListSecrets MaxResults=1");
    assert_eq!(pages.len(), 5, "MaxResults below the page size wins");

    let err = client
        .list_secrets()
        .next_token("not-a-token")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Some("InvalidNextTokenException"));
}

#[tokio::test]
async fn list_secrets_name_filter() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    for name in ["app/one", "app/two", "App/three", "application", "other"] {
        fake.put_string(name, "value");
    }

    assert_eq!(
        list_names(&client, name_filter(&["app/"])).await,
        ["app/one", "app/two"]
    );
    assert_eq!(
        list_names(&client, name_filter(&["app"])).await,
        ["app/one", "app/two", "application"],
        "a prefix, matched case-sensitively"
    );
    assert_eq!(
        list_names(&client, name_filter(&["!app"])).await,
        ["App/three", "other"],
        "! negates"
    );
    assert_eq!(
        list_names(&client, name_filter(&["app/t", "oth"])).await,
        ["app/two", "other"],
        "values are alternatives"
    );

    let err = client
        .list_secrets()
        .filters(
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values("x")
                .build(),
        )
        .send()
        .await
        .expect_err("unsupported filter");
    assert_eq!(err.code(), Some("InvalidParameterException"));
}

#[tokio::test]
async fn batch_get_reports_missing_ids() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    let a = fake.put_string("batch/a", "value-a");
    fake.put_version(
        "batch/b",
        "b-version",
        &["AWSCURRENT"],
        SecretData::Binary(vec![7; 3]),
    );
    fake.put_version(
        "batch/c",
        "c-version",
        &["AWSPENDING"],
        SecretData::String("c".to_owned()),
    );

    let out = client
        .batch_get_secret_value()
        .secret_id_list("batch/a")
        .secret_id_list(fake.arn("batch/b"))
        .secret_id_list("batch/missing")
        .send()
        .await
        .expect("BatchGetSecretValue");
    let values = out.secret_values();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].name(), Some("batch/a"));
    assert_eq!(values[0].version_id(), Some(a.as_str()));
    assert_eq!(values[0].version_stages(), ["AWSCURRENT"]);
    assert!(values[0].secret_string() == Some("value-a"));
    assert!(values[0].created_date().is_some());
    assert_eq!(values[1].arn(), Some(fake.arn("batch/b").as_str()));
    assert!(values[1].secret_binary().map(|b| b.as_ref()) == Some(&[7u8; 3][..]));
    let errors = out.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].secret_id(), Some("batch/missing"));
    assert_eq!(errors[0].error_code(), Some("ResourceNotFoundException"));

    let too_many = (0..21).map(|i| format!("batch/{i}")).collect();
    let err = client
        .batch_get_secret_value()
        .set_secret_id_list(Some(too_many))
        .send()
        .await
        .expect_err("more than 20 ids");
    assert_eq!(err.code(), Some("InvalidParameterException"));

    // With filters, secrets without AWSCURRENT are reported, not skipped.
    let pages: Vec<_> = client
        .batch_get_secret_value()
        .filters(name_filter(&["batch/"]))
        .into_paginator()
        .page_size(2)
        .send()
        .try_collect()
        .await
        .expect("BatchGetSecretValue with filters");
    assert_eq!(pages.len(), 2);
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.secret_values())
        .filter_map(|v| v.name())
        .collect();
    assert_eq!(names, ["batch/a", "batch/b"]);
    let errors: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.errors())
        .filter_map(|e| e.secret_id())
        .collect();
    assert_eq!(errors, ["batch/c"]);
}

#[tokio::test]
async fn batch_by_ids_pages_by_the_list_page_size() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.set_list_page_size(2);
    for i in 0..5 {
        fake.put_string(&format!("ids/{i}"), "value");
    }
    let ids = ["ids/3", "ids/missing", "ids/0", "ids/4", "ids/1"].map(str::to_owned);

    let pages: Vec<_> = client
        .batch_get_secret_value()
        .set_secret_id_list(Some(ids.to_vec()))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .expect("BatchGetSecretValue by ids");
    let answered: Vec<usize> = pages
        .iter()
        .map(|p| p.secret_values().len() + p.errors().len())
        .collect();
    assert_eq!(answered, [2, 2, 1], "ids in the order asked, two a page");
    let names: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.secret_values())
        .filter_map(|v| v.name())
        .collect();
    assert_eq!(names, ["ids/3", "ids/0", "ids/4", "ids/1"]);
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 3);

    let err = client
        .batch_get_secret_value()
        .set_secret_id_list(Some(ids.to_vec()))
        .next_token("not-a-token")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), Some("InvalidNextTokenException"));
}
