//! One Mount request, start to end: the parameters, the region, the objects, the pod's
//! identity, the values, the answer. Every refusal answers `error.code` and leaves one log line
//! naming the pod, the object (where there is one), the code and the cause.

use std::collections::HashMap;
use std::sync::Arc;

use secretsfs_core::cache::CacheConfig;
use secretsfs_core::source::aws::AwsOptions;

use crate::failure::{self, Failure};
use crate::identity::{Identities, IdentitiesConfig};
use crate::kube::KubeApi;
use crate::proto::{self, MountRequest, MountResponse};
use crate::request::MountParams;
use crate::spec::{self, SpecError};

/// The driver's default `--max-call-recv-msg-size`: a larger answer would fail there with a
/// message that names nothing.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Above this, the driver warns that syncing the files to a Kubernetes Secret may fail.
const SECRET_SYNC_LIMIT: usize = 1 << 20;

pub struct ProviderConfig {
    /// Endpoint, timeout and FIPS settings; no region, no credentials.
    pub aws: AwsOptions,
    /// The region of a class that names none (`--region`, `AWS_REGION`); else the node's.
    pub default_region: Option<String>,
    pub kube_api: Option<String>,
    pub pod_identity_endpoint: Option<String>,
    pub allow_node_identity: bool,
    pub cache: CacheConfig,
    pub max_response_bytes: usize,
}

pub struct Provider {
    identities: Identities,
    kube: Arc<KubeApi>,
    default_region: Option<String>,
    max_response_bytes: usize,
}

/// The pod a request is for, as the log names it (`namespace/name`).
struct Pod {
    namespace: String,
    name: String,
}

impl std::fmt::Display for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Provider {
    pub fn new(config: ProviderConfig) -> Result<Provider, String> {
        let kube = Arc::new(KubeApi::new(config.kube_api.as_deref())?);
        let identities = Identities::new(
            IdentitiesConfig {
                base: config.aws,
                cache: config.cache,
                allow_node_identity: config.allow_node_identity,
                pod_identity_endpoint: config.pod_identity_endpoint,
            },
            kube.clone(),
        )?;
        Ok(Provider {
            identities,
            kube,
            default_region: config.default_region,
            max_response_bytes: config.max_response_bytes,
        })
    }

    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    pub async fn mount(&self, request: &MountRequest) -> MountResponse {
        // Read once; the pod named before anything is checked, so that even a refused
        // class's line says whose.
        let attributes = crate::request::read_attributes(&request.attributes);
        let (namespace, name) = crate::request::pod_of(&attributes, &request.attributes);
        let pod = Pod { namespace, name };
        match self.try_mount(request, attributes, &pod).await {
            Ok(response) => response,
            Err(failure) => {
                tracing::warn!(target: "secretsfs::csi",
                    pod = %pod,
                    object = %failure.object.as_deref().unwrap_or("-"),
                    code = %failure.code,
                    cause = %failure.cause,
                    "mount refused");
                MountResponse {
                    object_version: Vec::new(),
                    error: Some(proto::Error {
                        code: failure.code.into_owned(),
                    }),
                    files: Vec::new(),
                }
            }
        }
    }

    async fn try_mount(
        &self,
        request: &MountRequest,
        attributes: Result<HashMap<String, String>, SpecError>,
        pod: &Pod,
    ) -> Result<MountResponse, Failure> {
        let params =
            MountParams::of_attributes(&request.target_path, attributes, &request.permission)
                .map_err(Failure::class)?;
        let primary = self.region(&params).await?;
        let regions = params.regions(&primary).map_err(Failure::class)?;
        let objects = spec::parse_objects(&params.objects, params.path_translation, &regions)
            .map_err(Failure::class)?;
        if objects.is_empty() {
            return Err(Failure::new(
                failure::NO_OBJECTS,
                "the SecretProviderClass names no objects",
            ));
        }
        let identity = self.identities.resolve(&params, &regions).await?;
        let fetched = crate::fetch::fetch(
            &self.identities,
            &identity,
            &objects,
            &regions,
            params.default_mode,
        )
        .await?;
        let response = MountResponse {
            object_version: fetched.versions,
            error: None,
            files: fetched.files,
        };
        // What the driver's limit applies to: the message as encoded.
        let total = prost::Message::encoded_len(&response);
        if total > self.max_response_bytes {
            return Err(Failure::new(
                failure::TOO_LARGE,
                format!(
                    "the answer holds {total} bytes, over the {} the driver takes (its --max-call-recv-msg-size; this provider's --max-response-bytes)",
                    self.max_response_bytes
                ),
            ));
        }
        if total > SECRET_SYNC_LIMIT {
            tracing::warn!(target: "secretsfs::csi", pod = %pod, bytes = total,
                "the answer holds more than 1 MiB: syncing its files to a Kubernetes Secret may fail");
        }
        tracing::debug!(target: "secretsfs::csi", pod = %pod,
            identity = %identity.key, files = response.files.len(), "mounted");
        Ok(response)
    }

    /// The class's region, else the provider's, else the label of the pod's node.
    async fn region(&self, params: &MountParams) -> Result<String, Failure> {
        if let Some(region) = params.region.as_ref().or(self.default_region.as_ref()) {
            return Ok(region.clone());
        }
        let (namespace, name) = (&params.pod_namespace, &params.pod_name);
        match self.kube.pod_region(namespace, name).await {
            Ok(Some(region)) => Ok(region),
            Ok(None) => Err(Failure::new(
                failure::NO_REGION,
                "failed to retrieve region from node. error Region not found",
            )),
            Err(why) => Err(Failure::new(
                failure::KUBERNETES_API,
                format!("failed to retrieve region from node. error {why}"),
            )),
        }
    }
}
