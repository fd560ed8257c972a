//! Per-pod identity: IRSA (the service account's role, or the class's roleArn), EKS Pod
//! Identity, the node's own only when allowed; one cache per identity, never shared, and never
//! served to a pod whose own token was not accepted for it.

use super::*;
use crate::support::fake_pod_identity::FakePodIdentityAgent;
use crate::support::moto::create_string;

const ONE: &str = "- objectName: prod/db\n  objectType: secretsmanager\n";

async fn world_with_db() -> World {
    let world = World::new();
    create_string(&world.sm(REGION).await, "prod/db", "db-value").await;
    world
}

#[tokio::test]
async fn two_roles_never_share_a_value_and_each_reads_with_its_own_credentials() {
    let world = world_with_db().await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let parameters = [("objects", ONE), ("region", REGION)];
    let web = mount(&mut client, &Pod::new("shop", "web-1", "web"), &parameters).await;
    assert_eq!(code(&web), "", "{}", provider.stderr());
    assert_eq!(world.value_calls(), 1);
    let batch = mount(
        &mut client,
        &Pod::new("shop", "batch-1", "batch"),
        &parameters,
    )
    .await;
    assert_eq!(code(&batch), "");
    // The second role's pod is not answered from the first role's cache.
    assert_eq!(world.value_calls(), 2);
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), 2);
    let keys = world.proxy.key_ids("GetSecretValue");
    assert_eq!(keys.len(), 2);
    // Compared, never printed (access key ids).
    assert!(
        keys[0] != keys[1],
        "each role's call is signed with its own credentials"
    );
    assert!(
        !keys.contains(&"node-key".to_owned()),
        "no call is made with the provider's own credentials"
    );
    // Each role's pods share its cache from now on: no call for either.
    mount(&mut client, &Pod::new("shop", "web-2", "web"), &parameters).await;
    mount(
        &mut client,
        &Pod::new("shop", "batch-2", "batch"),
        &parameters,
    )
    .await;
    assert_eq!(world.value_calls(), 2);
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_not_served_from_a_cache_another_pod_filled() {
    let world = world_with_db().await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let parameters = [("objects", ONE), ("region", REGION)];
    let web = mount(&mut client, &Pod::new("shop", "web-1", "web"), &parameters).await;
    assert_eq!(code(&web), "");
    assert_eq!(world.value_calls(), 1);
    // ROLE_A's cache is full; this pod's class names ROLE_A, but STS refuses the role to its
    // service account (the proxy refuses every role to `intruder`'s token).
    let with_role = [("objects", ONE), ("region", REGION), ("roleArn", ROLE_A)];
    let intruder = Pod::new("shop", "intruder-1", "intruder");
    let refused = mount(&mut client, &intruder, &with_role).await;
    assert_eq!(code(&refused), "AccessDenied", "{}", provider.stderr());
    assert!(refused.files.is_empty() && refused.object_version.is_empty());
    // Its annotation's role is refused too; nothing was read for it.
    let refused = mount(&mut client, &intruder, &parameters).await;
    assert_eq!(code(&refused), "AccessDenied");
    assert_eq!(world.value_calls(), 1);
    // A pod may name a role in the class, but STS must accept its token for it: asking for
    // ROLE_A, whose cache is full, goes to STS for this service account first.
    let borrow = [("objects", ONE), ("region", REGION), ("roleArn", ROLE_A)];
    let before = world.proxy.calls("AssumeRoleWithWebIdentity");
    let answer = mount(&mut client, &Pod::new("shop", "batch-1", "batch"), &borrow).await;
    assert_eq!(code(&answer), "");
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), before + 1);
    let log = provider.stderr();
    let line = log.lines().find(|l| l.contains("mount refused")).unwrap();
    assert!(
        line.contains("shop/intruder-1") && line.contains(ROLE_A),
        "{line}"
    );
}

#[tokio::test]
async fn a_token_of_another_audience_or_account_or_none_is_refused_before_any_call() {
    let world = world_with_db().await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let parameters = [("objects", ONE), ("region", REGION)];

    let mut other_audience = Pod::new("shop", "web-1", "web");
    other_audience.tokens = vec![(
        "sts.amazonaws.com".into(),
        jwt::service_account_token("shop", "web", "vault", 3600),
    )];
    let answer = mount(&mut client, &other_audience, &parameters).await;
    assert_eq!(code(&answer), "InvalidServiceAccountToken");

    let mut other_account = Pod::new("shop", "web-1", "web");
    other_account.tokens = vec![(
        "sts.amazonaws.com".into(),
        jwt::service_account_token("shop", "batch", "sts.amazonaws.com", 3600),
    )];
    let answer = mount(&mut client, &other_account, &parameters).await;
    assert_eq!(code(&answer), "InvalidServiceAccountToken");

    let mut expired = Pod::new("shop", "web-1", "web");
    expired.tokens = vec![(
        "sts.amazonaws.com".into(),
        jwt::service_account_token("shop", "web", "sts.amazonaws.com", -60),
    )];
    assert_eq!(
        code(&mount(&mut client, &expired, &parameters).await),
        "InvalidServiceAccountToken"
    );

    let mut without_sts = Pod::new("shop", "web-1", "web");
    without_sts
        .tokens
        .retain(|(aud, _)| aud != "sts.amazonaws.com");
    assert_eq!(
        code(&mount(&mut client, &without_sts, &parameters).await),
        "MissingServiceAccountToken"
    );

    let mut no_tokens = Pod::new("shop", "web-1", "web");
    no_tokens.tokens.clear();
    assert_eq!(
        code(&mount(&mut client, &no_tokens, &parameters).await),
        "MissingServiceAccountToken"
    );

    assert_eq!(world.proxy.total(), 0, "{:?}", world.proxy.ops());
    let log = provider.stderr();
    assert!(
        log.contains("the token is not for audience sts.amazonaws.com"),
        "{log}"
    );
    assert!(
        log.contains("ensure tokenRequests is configured in CSIDriver"),
        "{log}"
    );
    for pod in [other_audience, other_account, expired, without_sts] {
        for (_, token) in pod.tokens {
            for part in token.split('.') {
                assert!(!log.contains(part), "a token reached the log");
            }
        }
    }
}

#[tokio::test]
async fn the_node_s_identity_serves_a_pod_without_tokens_only_when_allowed() {
    let world = world_with_db().await;
    let provider = world.provider(&["--allow-node-identity"]).await;
    let mut client = provider.client().await;
    let mut pod = Pod::new("shop", "legacy-1", "default");
    pod.tokens.clear();
    let answer = mount(&mut client, &pod, &[("objects", ONE), ("region", REGION)]).await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    assert!(world.proxy.key_ids("GetSecretValue") == ["node-key"]);
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), 0);
    // A pod with tokens still reads as itself.
    let web = mount(
        &mut client,
        &Pod::new("shop", "web-1", "web"),
        &[("objects", ONE), ("region", REGION)],
    )
    .await;
    assert_eq!(code(&web), "");
    assert_eq!(world.value_calls(), 2);
    assert!(provider.stderr().contains("--allow-node-identity"));
}

#[tokio::test]
async fn a_service_account_without_a_role_is_refused_and_the_class_s_role_arn_is_used() {
    let world = world_with_db().await;
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let pod = Pod::new("shop", "plain-1", "plain");
    let answer = mount(&mut client, &pod, &[("objects", ONE), ("region", REGION)]).await;
    assert_eq!(code(&answer), "NoRoleForServiceAccount");
    assert!(
        provider.stderr().contains(
            "An IAM role must be associated with service account plain (namespace: shop)"
        )
    );
    let answer = mount(
        &mut client,
        &pod,
        &[("objects", ONE), ("region", REGION), ("roleArn", ROLE_B)],
    )
    .await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    let answer = mount(
        &mut client,
        &pod,
        &[
            ("objects", ONE),
            ("region", REGION),
            ("roleArn", "not-a-role"),
        ],
    )
    .await;
    assert_eq!(code(&answer), "InvalidSecretProviderClass");
    let missing = Pod::new("shop", "ghost-1", "ghost");
    assert_eq!(
        code(
            &mount(
                &mut client,
                &missing,
                &[("objects", ONE), ("region", REGION)]
            )
            .await
        ),
        "KubernetesApiError"
    );
}

#[tokio::test]
async fn the_region_comes_from_the_pod_s_node_when_the_class_has_none() {
    let world = world_with_db().await;
    world.kube.add_pod("shop", "web-1", "node-1");
    world.kube.add_node("node-2", None);
    world.kube.add_pod("shop", "web-2", "node-2");
    let provider = world.provider(&[]).await;
    let mut client = provider.client().await;
    let answer = mount(
        &mut client,
        &Pod::new("shop", "web-1", "web"),
        &[("objects", ONE)],
    )
    .await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    assert_eq!(world.proxy.regions("GetSecretValue"), [REGION]);
    let answer = mount(
        &mut client,
        &Pod::new("shop", "web-2", "web"),
        &[("objects", ONE)],
    )
    .await;
    assert_eq!(code(&answer), "RegionNotFound");
    // The provider's own region (AWS_REGION) comes before the node's.
    let own = Provider::start(
        &world.proxy.endpoint_url(),
        &["--kube-api", &world.kube.url()],
        &[("AWS_REGION", OTHER_REGION)],
    )
    .await;
    let mut own_client = own.client().await;
    let answer = mount(
        &mut own_client,
        &Pod::new("shop", "web-1", "web"),
        &[("objects", ONE)],
    )
    .await;
    assert_eq!(
        code(&answer),
        "ResourceNotFoundException",
        "read in {OTHER_REGION}, where it is not"
    );
}

#[tokio::test]
async fn pod_identity_reads_with_the_agent_s_credentials_once_per_service_account() {
    let world = world_with_db().await;
    let agent = FakePodIdentityAgent::start();
    let web = Pod::new("shop", "web-1", "web");
    let web_token = &web
        .tokens
        .iter()
        .find(|(a, _)| a == "pods.eks.amazonaws.com")
        .unwrap()
        .1;
    agent.allow(web_token, "AKIDWEB");
    let web_2 = Pod::new("shop", "web-2", "web");
    let web_2_token = &web_2
        .tokens
        .iter()
        .find(|(a, _)| a == "pods.eks.amazonaws.com")
        .unwrap()
        .1;
    agent.allow(web_2_token, "AKIDWEB");
    let url = agent.url();
    let provider = world.provider(&["--pod-identity-endpoint", &url]).await;
    let mut client = provider.client().await;
    let parameters = [
        ("objects", ONE),
        ("region", REGION),
        ("usePodIdentity", "true"),
    ];
    let answer = mount(&mut client, &web, &parameters).await;
    assert_eq!(code(&answer), "", "{}", provider.stderr());
    assert!(world.proxy.key_ids("GetSecretValue") == ["AKIDWEB"]);
    // Another pod of the same service account: its token is checked here (account,
    // audience, expiry), the agent's acceptance of the account is remembered until the
    // credentials near their expiry, and the value comes from the cache.
    let answer = mount(&mut client, &web_2, &parameters).await;
    assert_eq!(code(&answer), "");
    let again = mount(&mut client, &web_2, &parameters).await;
    assert_eq!(code(&again), "");
    assert_eq!(agent.calls(), 1);
    assert_eq!(world.value_calls(), 1);
    // A token the agent refuses: its code, and nothing from the cache.
    let stranger = Pod::new("shop", "batch-1", "batch");
    let answer = mount(&mut client, &stranger, &parameters).await;
    assert_eq!(code(&answer), "AccessDeniedException");
    assert_eq!(world.proxy.calls("AssumeRoleWithWebIdentity"), 0);
}
