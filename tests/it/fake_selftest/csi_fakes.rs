//! The CSI provider's fakes over plain HTTP: the Kubernetes API server, the Pod Identity Agent,
//! the kubelet's tokens, and the counting proxy's refusal of AssumeRoleWithWebIdentity. Tokens
//! and credentials are compared, never printed.

use std::net::SocketAddr;

use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::counting_proxy::{CountingProxy, REFUSED_ROLE_SUFFIX};
use crate::support::fake_kube::{FakeKube, REGION_LABEL, ROLE_ARN_ANNOTATION};
use crate::support::fake_pod_identity::{
    ACCOUNT_ID, FakePodIdentityAgent, SECRET_ACCESS_KEY, SESSION_TOKEN,
};
use crate::support::http::Conn;
use crate::support::jwt::{ISSUER, now_secs, rfc3339, service_account_token, tokens_attribute};

/// The address in `http://ADDR[/path]`.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    rest.split('/').next().unwrap().parse().expect("an address")
}

#[tokio::test]
async fn fake_kube_answers_as_the_api_server() {
    let kube = FakeKube::start();
    let role = "arn:aws:iam::123456789012:role/app";
    kube.add_service_account("apps", "app", Some(role));
    kube.add_service_account("apps", "plain", None);
    kube.add_pod("apps", "app-0", "node-a");
    kube.add_node("node-a", Some("eu-west-1"));
    kube.add_node("node-b", None);
    let mut conn = Conn::tcp(addr_of(&kube.url())).await;
    let bearer = [("Authorization", "Bearer not-a-real-token")];

    let r = conn
        .get("/api/v1/namespaces/apps/serviceaccounts/app", &bearer)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sa = r.json();
    assert_eq!(sa["kind"], "ServiceAccount");
    assert_eq!(sa["apiVersion"], "v1");
    assert_eq!(sa["metadata"]["name"], "app");
    assert_eq!(sa["metadata"]["namespace"], "apps");
    assert_eq!(sa["metadata"]["annotations"][ROLE_ARN_ANNOTATION], role);
    // The uid a token of this service account names.
    let token = service_account_token("apps", "app", "sts.amazonaws.com", 600);
    let claims = payload(&token);
    assert_eq!(
        sa["metadata"]["uid"],
        claims["kubernetes.io"]["serviceaccount"]["uid"]
    );

    let r = conn
        .get("/api/v1/namespaces/apps/serviceaccounts/plain", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["metadata"].get("annotations").is_none());

    let r = conn
        .get("/api/v1/namespaces/apps/pods/app-0", &bearer)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pod = r.json();
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["namespace"], "apps");
    assert_eq!(pod["spec"]["nodeName"], "node-a");

    let r = conn.get("/api/v1/nodes/node-a", &bearer).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let node = r.json();
    assert_eq!(node["kind"], "Node");
    assert!(
        node["metadata"].get("namespace").is_none(),
        "nodes are cluster-wide"
    );
    assert_eq!(node["metadata"]["labels"][REGION_LABEL], "eu-west-1");
    let r = conn.get("/api/v1/nodes/node-b", &bearer).await;
    assert!(r.json()["metadata"]["labels"].get(REGION_LABEL).is_none());

    // Not held: a Status, as the API server words it.
    for (path, message) in [
        (
            "/api/v1/namespaces/apps/serviceaccounts/x",
            "serviceaccounts \"x\" not found",
        ),
        (
            "/api/v1/namespaces/other/pods/app-0",
            "pods \"app-0\" not found",
        ),
        ("/api/v1/nodes/node-c", "nodes \"node-c\" not found"),
        (
            "/apis/apps/v1/deployments",
            "the server could not find the requested resource",
        ),
    ] {
        let r = conn.get(path, &bearer).await;
        assert_eq!(r.status, 404, "{path}");
        let status = r.json();
        assert_eq!(status["kind"], "Status", "{path}");
        assert_eq!(status["status"], "Failure", "{path}");
        assert_eq!(status["reason"], "NotFound", "{path}");
        assert_eq!(status["code"], 404, "{path}");
        assert_eq!(status["message"], message, "{path}");
    }

    kube.set_failing(true);
    let r = conn.get("/api/v1/nodes/node-a", &bearer).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["reason"], "InternalError");
    kube.set_failing(false);
    let r = conn
        .get("/api/v1/nodes/node-a?resourceVersion=0", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let requests = kube.requests();
    assert_eq!(requests.len(), 11);
    assert_eq!(requests[0], "/api/v1/namespaces/apps/serviceaccounts/app");
    assert_eq!(requests[1], "/api/v1/namespaces/apps/serviceaccounts/plain");
    assert_eq!(
        requests[10], "/api/v1/nodes/node-a",
        "the query is not kept"
    );
    let authorized = kube.authorized();
    assert_eq!(authorized.len(), 11);
    assert!(authorized[0] && !authorized[1] && authorized[9] && !authorized[10]);
}

#[tokio::test]
async fn fake_pod_identity_agent_hands_out_credentials_for_allowed_tokens() {
    let agent = FakePodIdentityAgent::start();
    assert!(agent.url().ends_with("/v1/credentials"));
    let token = service_account_token("apps", "app", "pods.eks.amazonaws.com", 3600);
    agent.allow(&token, "ASIAPODIDENTITY0001");
    let mut conn = Conn::tcp(addr_of(&agent.url())).await;

    let r = conn
        .get("/v1/credentials", &[("Authorization", token.as_str())])
        .await;
    assert_eq!(r.status, 200);
    let credentials = r.json();
    assert_eq!(credentials["AccessKeyId"], "ASIAPODIDENTITY0001");
    assert!(credentials["SecretAccessKey"] == SECRET_ACCESS_KEY);
    assert!(credentials["Token"] == SESSION_TOKEN);
    assert_eq!(credentials["AccountId"], ACCOUNT_ID);
    let expiration = credentials["Expiration"].as_str().expect("Expiration");
    assert!(
        expiration.ends_with('Z') && expiration.len() == 20,
        "{expiration}"
    );
    let expires = DateTime::from_str(expiration, DateTimeFormat::DateTime)
        .expect("RFC 3339")
        .secs();
    assert!((expires - (now_secs() + 3600)).abs() <= 5, "{expiration}");

    let r = conn.get("/v1/credentials", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "InvalidTokenException");

    let other = service_account_token("apps", "other", "pods.eks.amazonaws.com", 3600);
    let r = conn
        .get("/v1/credentials", &[("Authorization", other.as_str())])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "AccessDeniedException");

    // "Bearer" is not how the agent takes its token.
    let bearer = format!("Bearer {token}");
    let r = conn
        .get("/v1/credentials", &[("Authorization", bearer.as_str())])
        .await;
    assert_eq!(r.status, 403);

    let r = conn
        .get("/v2/credentials", &[("Authorization", token.as_str())])
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        agent.calls(),
        4,
        "credential requests, whatever their answer"
    );
}

/// The JSON of a token's payload.
fn payload(token: &str) -> Value {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "a JWT has three segments");
    let bytes = URL_SAFE_NO_PAD.decode(segments[1]).expect("base64url");
    serde_json::from_slice(&bytes).expect("a JSON payload")
}

#[test]
fn tokens_look_like_the_kubelets() {
    let before = now_secs();
    let token = service_account_token("apps", "app", "sts.amazonaws.com", 600);
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3);
    assert!(segments.iter().all(|s| !s.is_empty() && !s.contains('=')));
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "RS256", "kid": "test"}));
    let claims = payload(&token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:apps:app");
    assert_eq!(claims["aud"], json!(["sts.amazonaws.com"]));
    let iat = claims["iat"].as_i64().unwrap();
    assert!(iat >= before && iat <= now_secs());
    assert_eq!(claims["nbf"], iat);
    assert_eq!(claims["exp"], iat + 600);
    assert_eq!(claims["kubernetes.io"]["namespace"], "apps");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "app");
    assert!(claims["kubernetes.io"]["serviceaccount"]["uid"].is_string());

    let other = service_account_token("apps", "app", "pods.eks.amazonaws.com", -60);
    let attribute: Value = serde_json::from_str(&tokens_attribute(&[
        ("sts.amazonaws.com", &token),
        ("pods.eks.amazonaws.com", &other),
    ]))
    .unwrap();
    let entries = attribute.as_object().unwrap();
    assert_eq!(entries.len(), 2);
    let sts = &attribute["sts.amazonaws.com"];
    assert!(sts["token"] == token.as_str());
    assert_eq!(sts["expirationTimestamp"], rfc3339(iat + 600));
    let pods = &attribute["pods.eks.amazonaws.com"];
    assert!(pods["token"] == other.as_str());
    let expired = payload(&other)["exp"].as_i64().unwrap();
    assert_eq!(pods["expirationTimestamp"], rfc3339(expired));
}

#[tokio::test]
async fn counting_proxy_refuses_web_identity_of_denied_roles() {
    // Refusals are answered by the proxy itself: the upstream is never reached.
    let proxy = CountingProxy::start("http://127.0.0.1:1");
    let mut conn = Conn::tcp(addr_of(&proxy.endpoint_url())).await;
    let denied = format!("arn:aws:iam::123456789012:role{REFUSED_ROLE_SUFFIX}");
    let arn: String = form_urlencoded::byte_serialize(denied.as_bytes()).collect();
    for (action, extra, message) in [
        (
            "AssumeRoleWithWebIdentity",
            "&RoleSessionName=s&WebIdentityToken=not-a-real-token",
            "sts:AssumeRoleWithWebIdentity",
        ),
        ("AssumeRole", "&RoleSessionName=s", "sts:AssumeRole<"),
    ] {
        let body = format!("Action={action}&Version=2011-06-15&RoleArn={arn}{extra}");
        let request = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = conn
            .send_raw(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(r.status, 403, "{action}");
        let text = r.text();
        assert!(
            text.contains("<Code>AccessDenied</Code>"),
            "{action}: {text}"
        );
        assert!(text.contains(message), "{action}: {text}");
    }
    assert_eq!(proxy.calls("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(proxy.calls("AssumeRole"), 1);
    assert_eq!(proxy.total(), 2);
    assert_eq!(proxy.ops(), ["AssumeRoleWithWebIdentity", "AssumeRole"]);
}
