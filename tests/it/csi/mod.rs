//! `secretsfs csi-provider` as the Secrets Store CSI Driver meets it: a gRPC client over the
//! Unix socket building Mount requests as the driver's nodeserver.go does, moto behind a
//! recording proxy for STS, Secrets Manager and Parameter Store, a fake Kubernetes API and a
//! fake EKS Pod Identity Agent.

mod bench;
mod identity;
mod manifests;
mod mount;
mod socket;
mod storm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use secretsfs::csi::proto::csi_driver_provider_client::CsiDriverProviderClient;
use secretsfs::csi::proto::{MountRequest, MountResponse};
use tonic::transport::{Channel, Endpoint};

use crate::support::cli::{SECRETSFS, without_developer_settings};
use crate::support::counting_proxy::CountingProxy;
use crate::support::fake_kube::FakeKube;
use crate::support::jwt;
use crate::support::moto::Moto;

pub const ROLE_A: &str = "arn:aws:iam::123456789012:role/shop-web";
pub const ROLE_B: &str = "arn:aws:iam::123456789012:role/shop-batch";
/// Refused by the proxy, as STS refuses a role whose trust policy does not name the caller.
pub const ROLE_DENIED: &str = "arn:aws:iam::123456789012:role/denied";
pub const REGION: &str = "us-east-1";
pub const OTHER_REGION: &str = "us-west-2";

/// A running provider, killed (by its own pid) when dropped.
pub struct Provider {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Provider {
    /// `secretsfs csi-provider --socket DIR/secretsfs.sock ARGS` with AWS_ENDPOINT_URL at
    /// `endpoint` (every service: STS, Secrets Manager, SSM); waits until the socket answers.
    pub async fn start(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Provider {
        Provider::start_at(None, endpoint, args, env).await
    }

    /// Like [`Provider::start`], on `socket` when given.
    pub async fn start_at(
        socket: Option<&Path>,
        endpoint: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Provider {
        let dir = tempfile::tempdir().unwrap();
        let socket = socket.map_or_else(
            || dir.path().join("providers/secretsfs.sock"),
            Path::to_owned,
        );
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = tokio::process::Command::new(SECRETSFS);
        without_developer_settings(&mut cmd);
        cmd.args([
            "--log-level",
            "info,secretsfs=debug",
            "csi-provider",
            "--socket",
        ])
        .arg(&socket)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "node-key")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("SECRETSFS_CONFIG", "/dev/null")
        .env("AWS_ENDPOINT_URL", endpoint)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
        let child = cmd.spawn().unwrap();
        let mut provider = Provider { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&provider.socket).is_err() {
            if let Ok(Some(status)) = provider.child.try_wait() {
                panic!(
                    "csi-provider exited ({status}) before listening; stderr:\n{}",
                    provider.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "csi-provider did not listen; stderr:\n{}",
                provider.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        provider
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> CsiDriverProviderClient<Channel> {
        connect(&self.socket).await
    }

    /// SIGTERM (by its own pid); the exit code.
    pub async fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("csi-provider stops within 20 s of SIGTERM")
            .unwrap()
            .code()
    }
}

/// A client of the provider API over `socket`, as the driver dials it (`unix:` path,
/// authority localhost, plaintext).
pub async fn connect(socket: &Path) -> CsiDriverProviderClient<Channel> {
    let socket = socket.to_owned();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connecting to the provider's socket");
    // The driver's default --max-call-recv-msg-size.
    CsiDriverProviderClient::new(channel).max_decoding_message_size(4 << 20)
}

/// A pod as the kubelet describes it to the driver.
#[derive(Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    /// (audience, token) pairs for `csi.storage.k8s.io/serviceAccount.tokens`; none leaves
    /// the key out, as a CSIDriver without tokenRequests does.
    pub tokens: Vec<(String, String)>,
}

impl Pod {
    /// A pod of `namespace/service_account` with valid tokens for both AWS audiences.
    pub fn new(namespace: &str, name: &str, service_account: &str) -> Pod {
        let tokens = ["sts.amazonaws.com", "pods.eks.amazonaws.com"]
            .iter()
            .map(|aud| {
                (
                    aud.to_string(),
                    jwt::service_account_token(namespace, service_account, aud, 3600),
                )
            })
            .collect();
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            service_account: service_account.into(),
            tokens,
        }
    }

    /// The attributes the driver sends: the class's parameters, the volume context over them.
    pub fn attributes(&self, parameters: &[(&str, &str)]) -> String {
        let mut map: BTreeMap<String, String> = parameters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("secretProviderClass".into(), "aws-secrets".into());
        map.insert("csi.storage.k8s.io/ephemeral".into(), "true".into());
        map.insert("csi.storage.k8s.io/pod.name".into(), self.name.clone());
        map.insert(
            "csi.storage.k8s.io/pod.namespace".into(),
            self.namespace.clone(),
        );
        map.insert(
            "csi.storage.k8s.io/pod.uid".into(),
            format!("uid-{}", self.name),
        );
        map.insert(
            "csi.storage.k8s.io/serviceAccount.name".into(),
            self.service_account.clone(),
        );
        if !self.tokens.is_empty() {
            let pairs: Vec<(&str, &str)> = self
                .tokens
                .iter()
                .map(|(a, t)| (a.as_str(), t.as_str()))
                .collect();
            map.insert(
                "csi.storage.k8s.io/serviceAccount.tokens".into(),
                jwt::tokens_attribute(&pairs),
            );
        }
        serde_json::to_string(&map).unwrap()
    }

    pub fn request(&self, parameters: &[(&str, &str)]) -> MountRequest {
        MountRequest {
            attributes: self.attributes(parameters),
            secrets: "null".into(),
            target_path: format!(
                "/var/lib/kubelet/pods/uid-{}/volumes/kubernetes.io~csi/secrets/mount",
                self.name
            ),
            permission: "420".into(),
            current_object_version: Vec::new(),
        }
    }
}

pub async fn mount(
    client: &mut CsiDriverProviderClient<Channel>,
    pod: &Pod,
    parameters: &[(&str, &str)],
) -> MountResponse {
    client
        .mount(pod.request(parameters))
        .await
        .expect("Mount answers (a refusal is error.code, not a gRPC error)")
        .into_inner()
}

/// The answer's files: path -> (mode, contents).
pub fn files(response: &MountResponse) -> BTreeMap<String, (i32, Vec<u8>)> {
    response
        .files
        .iter()
        .map(|f| (f.path.clone(), (f.mode, f.contents.clone())))
        .collect()
}

/// The answer's versions: id -> version.
pub fn versions(response: &MountResponse) -> BTreeMap<String, String> {
    response
        .object_version
        .iter()
        .map(|v| (v.id.clone(), v.version.clone()))
        .collect()
}

/// The refusal's code, or "" for an answer.
pub fn code(response: &MountResponse) -> &str {
    response.error.as_ref().map_or("", |e| e.code.as_str())
}

/// moto, a recording proxy in front of it, and a Kubernetes API with two service accounts of
/// two roles (`shop/web` -> ROLE_A, `shop/batch` -> ROLE_B), one whose role is refused
/// (`shop/intruder`), one without a role (`shop/plain`), and the pods' node in REGION.
pub struct World {
    pub moto: Moto,
    pub proxy: CountingProxy,
    pub kube: FakeKube,
}

impl World {
    pub fn new() -> World {
        let moto = Moto::start();
        let proxy = CountingProxy::start(&moto.endpoint_url());
        let kube = FakeKube::start();
        kube.add_service_account("shop", "web", Some(ROLE_A));
        kube.add_service_account("shop", "batch", Some(ROLE_B));
        kube.add_service_account("shop", "intruder", Some(ROLE_DENIED));
        kube.add_service_account("shop", "plain", None);
        kube.add_node("node-1", Some(REGION));
        World { moto, proxy, kube }
    }

    /// A provider on this world (`--kube-api` the fake), with `args`.
    pub async fn provider(&self, args: &[&str]) -> Provider {
        let kube = self.kube.url();
        let mut all = vec!["--kube-api", kube.as_str()];
        all.extend(args);
        Provider::start(&self.proxy.endpoint_url(), &all, &[]).await
    }

    /// Secrets Manager calls that read values (GetSecretValue and BatchGetSecretValue).
    pub fn value_calls(&self) -> usize {
        self.proxy.calls("GetSecretValue") + self.proxy.calls("BatchGetSecretValue")
    }

    pub async fn sm(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new("x", "x", None, None, "moto-test"))
            .endpoint_url(self.moto.endpoint_url())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }
}
