//! What the provider asks the Kubernetes API, with its own service account: a pod's service
//! account (the IRSA role annotation), and the pod's node (its region label) when neither the
//! class nor the provider's environment names a region. RBAC: get serviceaccounts, pods,
//! nodes (packaging/kubernetes/csi/provider.yaml).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::client::{self, HttpClient};

/// The service account annotation IRSA reads the role from.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";
/// The node label the region is read from.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEADLINE: Duration = Duration::from_secs(10);

pub struct KubeApi {
    base: String,
    client: HttpClient,
    /// Read at every call: the kubelet rotates the projected token.
    token_file: Option<PathBuf>,
}

impl KubeApi {
    /// The API at `url`, else the cluster's own (`KUBERNETES_SERVICE_HOST` and `_PORT`); the
    /// provider pod's service account token and CA are used where they exist.
    pub fn new(url: Option<&str>) -> Result<KubeApi, String> {
        Self::with_account_dir(url, Path::new(SERVICE_ACCOUNT_DIR))
    }

    fn with_account_dir(url: Option<&str>, dir: &Path) -> Result<KubeApi, String> {
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    "not in a cluster (KUBERNETES_SERVICE_HOST is unset): pass --kube-api URL"
                        .to_owned()
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        let ca = dir.join("ca.crt");
        if ca.exists() {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            for cert in
                CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        let token_file = Some(dir.join("token")).filter(|t| t.exists());
        Ok(KubeApi {
            base,
            client: client::client(roots)?,
            token_file,
        })
    }

    /// An object, `None` where the API answers 404.
    async fn object(&self, path: &str) -> Result<Option<Value>, String> {
        // The provider's own token goes over TLS only.
        let token = match &self.token_file {
            Some(file) if self.base.starts_with("https://") => Some(
                tokio::fs::read_to_string(file)
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        };
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("accept", "application/json")];
        if let Some(value) = &authorization {
            headers.push(("authorization", value));
        }
        let (status, body) = client::get(
            &self.client,
            &format!("{}{path}", self.base),
            &headers,
            DEADLINE,
        )
        .await
        .map_err(|why| format!("GET {path}: {why}"))?;
        if status == hyper::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("GET {path}: {status}, and not JSON"))?;
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("no message");
            return Err(format!("GET {path}: {status}: {message}"));
        }
        Ok(Some(value))
    }

    /// The role of a service account (`eks.amazonaws.com/role-arn`); an error when the account
    /// does not exist.
    pub async fn service_account_role(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, String> {
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}");
        let account = self
            .object(&path)
            .await?
            .ok_or_else(|| format!("service account {namespace}/{name} not found"))?;
        Ok(account["metadata"]["annotations"][ROLE_ANNOTATION]
            .as_str()
            .filter(|role| !role.is_empty())
            .map(str::to_owned))
    }

    /// The region of the node a pod runs on (its `topology.kubernetes.io/region` label).
    pub async fn pod_region(&self, namespace: &str, pod: &str) -> Result<Option<String>, String> {
        let pod_path = format!("/api/v1/namespaces/{namespace}/pods/{pod}");
        let pod_object = self
            .object(&pod_path)
            .await?
            .ok_or_else(|| format!("pod {namespace}/{pod} not found"))?;
        let Some(node) = pod_object["spec"]["nodeName"].as_str() else {
            return Err(format!("pod {namespace}/{pod} has no node"));
        };
        let node_object = self
            .object(&format!("/api/v1/nodes/{node}"))
            .await?
            .ok_or_else(|| format!("node {node} not found"))?;
        Ok(node_object["metadata"]["labels"][REGION_LABEL]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_cluster_without_a_url_says_what_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            let err = KubeApi::with_account_dir(None, dir.path()).err().unwrap();
            assert!(err.contains("--kube-api"), "{err}");
        }
        let api = KubeApi::with_account_dir(Some("http://127.0.0.1:1/"), dir.path()).unwrap();
        assert_eq!(api.base, "http://127.0.0.1:1");
        assert!(api.token_file.is_none());
    }
}
