//! A republish storm: every pod of a node republishing within the TTL costs no call, and
//! gets the same bytes and versions; after a rotation, the next republish past the TTL has the
//! new value.

use super::*;
use crate::support::moto::{create_string, put_string};

#[tokio::test]
async fn a_republish_storm_within_the_ttl_costs_no_upstream_call() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    let mut objects = String::new();
    for i in 0..10 {
        create_string(&sm, &format!("app/s{i}"), &format!("value-{i}")).await;
        objects.push_str(&format!(
            "- objectName: app/s{i}\n  objectType: secretsmanager\n"
        ));
    }
    // A TTL the storm cannot outlast on a loaded machine: refresh ahead would count.
    let provider = world.provider(&["--ttl", "120"]).await;
    let parameters = [("objects", objects.as_str()), ("region", REGION)];
    let pods: Vec<Pod> = (0..20)
        .map(|i| {
            let account = ["web", "batch"][i % 2];
            Pod::new("shop", &format!("{account}-{i}"), account)
        })
        .collect();
    let first: Vec<MountResponse> = {
        let mut client = provider.client().await;
        let mut answers = Vec::new();
        for pod in &pods {
            answers.push(mount(&mut client, pod, &parameters).await);
        }
        answers
    };
    let after_first = world.proxy.total();
    // Two roles: one AssumeRoleWithWebIdentity each... and one per service account's first
    // pod only; ten values in one batch per role.
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), 2);
    assert_eq!(world.proxy.calls("BatchGetSecretValue"), 2);
    // The storm: every pod republishes five times, 8 at a time.
    let mut storm = Vec::new();
    for round in 0..5 {
        for chunk in pods.chunks(8) {
            let mut tasks = Vec::new();
            for pod in chunk {
                let socket = provider.socket.clone();
                let pod = pod.clone();
                let parameters: Vec<(String, String)> = parameters
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                tasks.push(tokio::spawn(async move {
                    let mut client = connect(&socket).await;
                    let p: Vec<(&str, &str)> = parameters
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    mount(&mut client, &pod, &p).await
                }));
            }
            for task in tasks {
                storm.push((round, task.await.unwrap()));
            }
        }
    }
    assert_eq!(world.proxy.total(), after_first, "{:?}", world.proxy.ops());
    for (i, (_, answer)) in storm.iter().enumerate() {
        let pod = i % pods.len();
        assert_eq!(code(answer), "");
        assert_eq!(files(answer), files(&first[pod]));
        assert_eq!(versions(answer), versions(&first[pod]));
    }
}

#[tokio::test]
async fn after_a_rotation_every_pod_s_republish_past_the_ttl_has_the_new_value() {
    let world = World::new();
    let sm = world.sm(REGION).await;
    create_string(&sm, "app/s3", "value-3").await;
    let parameters = [
        (
            "objects",
            "- objectName: app/s3\n  objectType: secretsmanager\n",
        ),
        ("region", REGION),
    ];
    let provider = world.provider(&["--ttl", "2"]).await;
    let mut client = provider.client().await;
    let pods: Vec<Pod> = (0..6)
        .map(|i| {
            let account = ["web", "batch"][i % 2];
            Pod::new("shop", &format!("{account}-{i}"), account)
        })
        .collect();
    for pod in &pods {
        let answer = mount(&mut client, pod, &parameters).await;
        assert_eq!(files(&answer)["app_s3"].1, b"value-3");
    }
    let rotated = put_string(&sm, "app/s3", "value-3-rotated").await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    for pod in &pods {
        let answer = mount(&mut client, pod, &parameters).await;
        assert_eq!(files(&answer)["app_s3"].1, b"value-3-rotated");
        assert_eq!(versions(&answer)["app_s3"], rotated);
    }
}
