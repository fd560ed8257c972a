//! A Mount request's parameters, in the AWS provider's order and words.

use super::*;

const TOKEN: &str = "eyJ-token-value-5b7e";

fn attributes(extra: &[(&str, &str)]) -> String {
    let tokens = format!(
        r#"{{"{IRSA_AUDIENCE}":{{"token":"{TOKEN}","expirationTimestamp":"2026-12-08T01:00:00Z"}}}}"#
    );
    let mut map: HashMap<&str, String> = HashMap::from([
        (POD_NAMESPACE, "shop".to_owned()),
        (POD_NAME, "web-0".to_owned()),
        (POD_UID, "0b6f".to_owned()),
        (SERVICE_ACCOUNT, "web".to_owned()),
        (TOKENS, tokens),
        (
            "objects",
            "- objectName: x\n  objectType: secretsmanager\n".to_owned(),
        ),
    ]);
    for (k, v) in extra {
        map.insert(k, v.to_string());
    }
    serde_json::to_string(&map).unwrap()
}

fn refused(target: &str, attributes: &str, permission: &str) -> String {
    MountParams::parse(target, attributes, permission)
        .unwrap_err()
        .0
}

#[test]
fn a_request_as_the_driver_builds_it() {
    let p = MountParams::parse(
        "/var/lib/kubelet/pods/0b6f/volumes/x/mount",
        &attributes(&[]),
        "420",
    )
    .unwrap();
    assert_eq!(
        (
            p.pod_namespace.as_str(),
            p.pod_name.as_str(),
            p.service_account.as_str()
        ),
        ("shop", "web-0", "web")
    );
    assert_eq!(p.default_mode, 0o644);
    assert_eq!((p.region.as_deref(), p.path_translation), (None, Some('_')));
    assert!(!p.use_pod_identity);
    assert_eq!(p.preferred_address_type, AddressType::Auto);
    assert_eq!(p.identity_token().unwrap(), TOKEN);
    assert_eq!(p.regions("us-east-1").unwrap(), ["us-east-1"]);
    assert!(
        !format!("{p:?}").contains(TOKEN),
        "Debug never shows a token"
    );
}

#[test]
fn the_first_problem_in_the_aws_provider_s_order_is_the_one_named() {
    let good = attributes(&[]);
    assert_eq!(refused("", &good, "420"), "Missing mount path");
    let bad_json = refused("/t", "{\"a\": 1}", "420");
    assert!(
        bad_json.starts_with("failed to unmarshal attributes, error: "),
        "{bad_json}"
    );
    // No tokens at all is not refused while reading: the node's own identity may serve it
    // (--allow-node-identity); the pod's identity cannot.
    let no_tokens = attributes(&[(TOKENS, "")]);
    let params = MountParams::parse("/t", &no_tokens, "420").unwrap();
    assert_eq!(params.tokens, None);
    assert_eq!(
        params.identity_token().unwrap_err().0,
        "CSI token error: serviceAccount.tokens not provided - ensure tokenRequests is \
         configured in CSIDriver - ensure tokenRequests is configured in CSIDriver spec"
    );
    let broken_tokens = attributes(&[(TOKENS, "{\"sts.amazonaws.com\": \"eyJ-secret\"}")]);
    let err = refused("/t", &broken_tokens, "420");
    assert!(
        err.starts_with("CSI token error: failed to parse serviceAccount.tokens"),
        "{err}"
    );
    assert!(
        !err.contains("eyJ-secret"),
        "the message quotes no token: {err}"
    );
    assert!(
        refused("/t", &good, "\"x\"").starts_with("failed to unmarshal file permission, error: ")
    );
    assert_eq!(
        refused("/t", &attributes(&[("usePodIdentity", "yes")]), "420"),
        "failed to parse usePodIdentity value, error: strconv.ParseBool: parsing \"yes\": invalid syntax"
    );
    assert_eq!(
        refused("/t", &attributes(&[("pathTranslation", "--")]), "420"),
        "pathTranslation must be either 'False' or a single character string"
    );
}

#[test]
fn the_identity_s_token_is_the_one_for_its_audience() {
    let pod_identity = MountParams::parse(
        "/t",
        &attributes(&[("usePodIdentity", "True"), ("preferredAddressType", "IPv6")]),
        "420",
    )
    .unwrap();
    assert!(pod_identity.use_pod_identity);
    assert_eq!(pod_identity.preferred_address_type, AddressType::Ipv6);
    assert_eq!(
        pod_identity.identity_token().unwrap_err().0,
        "Pod Identity token extraction failed: token for audience \"pods.eks.amazonaws.com\" \
         not found - ensure tokenRequests includes this audience in CSIDriver"
    );
    let empty = attributes(&[(TOKENS, r#"{"sts.amazonaws.com":{"token":""}}"#)]);
    let irsa = MountParams::parse("/t", &empty, "420").unwrap();
    assert_eq!(
        irsa.identity_token().unwrap_err().0,
        "IRSA token extraction failed: token for audience \"sts.amazonaws.com\" is empty"
    );
    let odd = MountParams::parse(
        "/t",
        &attributes(&[("preferredAddressType", "ipv5")]),
        "420",
    );
    assert_eq!(odd.unwrap().preferred_address_type, AddressType::Auto);
}

#[test]
fn a_failover_region_must_differ_from_the_primary() {
    let p =
        MountParams::parse("/t", &attributes(&[("failoverRegion", "us-west-2")]), "420").unwrap();
    assert_eq!(p.regions("us-east-1").unwrap(), ["us-east-1", "us-west-2"]);
    assert_eq!(
        p.regions("us-west-2").unwrap_err().0,
        "us-west-2: failover region cannot be the same as the primary region"
    );
}

#[test]
fn only_what_can_be_a_region_is_one() {
    let p = MountParams::parse("/t", &attributes(&[("failoverRegion", "mars")]), "420").unwrap();
    assert_eq!(
        p.regions("us-east-1").unwrap_err().0,
        "\"mars\" is not an AWS region (like us-east-1 or us-gov-west-1)"
    );
    let p = MountParams::parse("/t", &attributes(&[]), "420").unwrap();
    for region in [
        "us-gov-west-1",
        "cn-northwest-1",
        "eu-central-2",
        "ap-southeast-5",
    ] {
        assert!(p.regions(region).is_ok(), "{region}");
    }
    for region in [
        "",
        "us-east",
        "US-EAST-1",
        "us_east_1",
        "us-east-1a",
        "../x-1",
    ] {
        assert!(p.regions(region).is_err(), "{region}");
    }
}
