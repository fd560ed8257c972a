//! packaging/kubernetes/csi/: the provider's DaemonSet and the example class and pod validate
//! (the built-in kinds strictly against the API schemas, the SecretProviderClass against what
//! the provider reads, the pod against Pod Security `restricted`), and validation can fail.

use crate::support::kubernetes::validate;

const CSI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kubernetes/csi");
fn manifest(name: &str) -> String {
    std::fs::read_to_string(format!("{CSI}/{name}")).unwrap()
}

#[test]
fn the_provider_s_manifests_validate_and_ask_for_no_privilege() {
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(CSI)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert_eq!(files.len(), 5);
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let (ok, text) = validate(&refs);
    assert!(ok, "{text}");

    let provider = manifest("provider.yaml");
    // What the DaemonSet says, not what its comments say it does without.
    let spec: String = provider
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for needed in [
        "- csi-provider",
        "path: /var/run/secrets-store-csi-providers",
        "privileged: false",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "resources: [\"serviceaccounts\"]",
    ] {
        assert!(spec.contains(needed), "provider.yaml lacks {needed}");
    }
    for refused in [
        "/dev/fuse",
        "hostNetwork: true",
        "hostPID: true",
        "/var/lib/kubelet",
    ] {
        assert!(!spec.contains(refused), "provider.yaml has {refused}");
    }
    assert_eq!(spec.matches("hostPath:").count(), 1);
    let driver = manifest("csidriver.yaml");
    for audience in ["sts.amazonaws.com", "pods.eks.amazonaws.com"] {
        assert!(driver.contains(audience), "csidriver.yaml lacks {audience}");
    }
    assert!(manifest("secretproviderclass.yaml").contains("provider: secretsfs"));
    assert!(manifest("pod.yaml").contains("pod-security.kubernetes.io/enforce: restricted"));
}

#[test]
fn a_class_for_another_provider_or_a_pod_beyond_restricted_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("secretproviderclass.yaml");
    std::fs::write(
        &class,
        manifest("secretproviderclass.yaml").replacen(
            "\n  provider: secretsfs\n",
            "\n  provider: aws\n",
            1,
        ),
    )
    .unwrap();
    let (ok, text) = validate(&[&class]);
    assert!(!ok, "a class for provider aws passed:\n{text}");
    assert!(text.contains("not 'secretsfs'"), "{text}");

    let pod_text = manifest("pod.yaml");
    assert!(pod_text.contains("allowPrivilegeEscalation: false"));
    let pod = dir.path().join("pod.yaml");
    std::fs::write(
        &pod,
        pod_text.replacen(
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
            1,
        ),
    )
    .unwrap();
    std::fs::copy(format!("{CSI}/secretproviderclass.yaml"), &class).unwrap();
    let (ok, text) = validate(&[&pod, &class]);
    assert!(!ok, "a pod beyond restricted passed:\n{text}");
    assert!(
        text.contains("allowPrivilegeEscalation: must be false"),
        "{text}"
    );
}
