//! A Mount request's parameters, read as the AWS provider reads them and in its order, so that
//! the first problem a class has is the one it names (docs/research/aws-csi-provider.md,
//! sections 2.2 and 3.2). The objects themselves are [`crate::spec`]'s.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::spec::SpecError;

/// The volume context's keys that the kubelet fills in (`podInfoOnMount`).
pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
pub const TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";

/// The audience of the token IRSA trades with STS, and of the one the Pod Identity Agent takes.
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The pod's service account token for one audience, as the kubelet hands it over. Never
/// printed: `Debug` leaves the token out.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ServiceAccountToken {
    #[serde(default)]
    pub token: String,
    #[serde(default, rename = "expirationTimestamp")]
    pub expiration: String,
}

impl fmt::Debug for ServiceAccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountToken")
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// Which address of the EKS Pod Identity Agent to ask. Anything unknown is `Auto`, as in the
/// AWS provider, whose `auto` is the IPv4 address in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    Auto,
    Ipv4,
    Ipv6,
}

/// One Mount request's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountParams {
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub service_account: String,
    /// The pod's tokens by audience; `None` when the request carries none (a CSIDriver without
    /// `tokenRequests`), which only the node's own identity may serve.
    pub tokens: Option<HashMap<String, ServiceAccountToken>>,
    /// The class's `roleArn`, in place of the service account's annotation (IRSA only).
    pub role_arn: Option<String>,
    /// The class's `region`; absent, the provider finds it itself (its own environment, then
    /// the node's `topology.kubernetes.io/region` label).
    pub region: Option<String>,
    pub failover_region: Option<String>,
    pub path_translation: Option<char>,
    pub use_pod_identity: bool,
    pub preferred_address_type: AddressType,
    /// The `objects` YAML, for [`crate::spec::parse_objects`] once the regions are known.
    pub objects: String,
    /// The mode of a file whose object names none (`permission`, 0644 from the driver).
    pub default_mode: u32,
}

fn refuse<T>(message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(message.into()))
}

impl MountParams {
    /// Reads the request's `target_path`, `attributes` and `permission`.
    pub fn parse(target_path: &str, attributes: &str, permission: &str) -> Result<Self, SpecError> {
        Self::of_attributes(target_path, read_attributes(attributes), permission)
    }

    /// [`MountParams::parse`] with the attributes read already ([`read_attributes`]): the
    /// provider reads them once, and names the pod from them before anything is checked.
    pub fn of_attributes(
        target_path: &str,
        attributes: Result<HashMap<String, String>, SpecError>,
        permission: &str,
    ) -> Result<Self, SpecError> {
        if target_path.is_empty() {
            return refuse("Missing mount path");
        }
        let attributes = attributes?;
        let get = |key: &str| attributes.get(key).cloned().unwrap_or_default();
        let tokens = tokens(&get(TOKENS)).map_err(|why| SpecError(token_error(&why)))?;
        let default_mode: u32 = serde_json::from_str(permission)
            .map_err(|e| SpecError(format!("failed to unmarshal file permission, error: {e}")))?;
        let some = |s: String| Some(s).filter(|s| !s.is_empty());
        let use_pod_identity = match get("usePodIdentity").as_str() {
            "" => false,
            v => parse_bool(v).ok_or_else(|| {
                SpecError(format!(
                    "failed to parse usePodIdentity value, error: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ))
            })?,
        };
        let preferred_address_type = match get("preferredAddressType").to_lowercase().as_str() {
            "ipv4" => AddressType::Ipv4,
            "ipv6" => AddressType::Ipv6,
            _ => AddressType::Auto,
        };
        Ok(MountParams {
            pod_namespace: get(POD_NAMESPACE),
            pod_name: get(POD_NAME),
            pod_uid: get(POD_UID),
            service_account: get(SERVICE_ACCOUNT),
            tokens,
            role_arn: some(get("roleArn")),
            region: some(get("region")),
            failover_region: some(get("failoverRegion")),
            path_translation: crate::spec::path_translation(Some(&get("pathTranslation")))?,
            use_pod_identity,
            preferred_address_type,
            objects: get("objects"),
            default_mode,
        })
    }

    /// The regions to read in: `primary` (the class's, or the one found for it), then the
    /// failover region, which must differ.
    pub fn regions(&self, primary: &str) -> Result<Vec<String>, SpecError> {
        // Each region costs an engine per identity: only what can be a region gets one.
        for region in std::iter::once(primary).chain(self.failover_region.as_deref()) {
            if !is_region(region) {
                return refuse(format!(
                    "{region:?} is not an AWS region (like us-east-1 or us-gov-west-1)"
                ));
            }
        }
        let mut regions = vec![primary.to_owned()];
        if let Some(failover) = &self.failover_region {
            if failover == primary {
                return refuse(format!(
                    "{primary}: failover region cannot be the same as the primary region"
                ));
            }
            regions.push(failover.clone());
        }
        Ok(regions)
    }

    /// The audience of the token the pod's identity needs: the Pod Identity Agent's with
    /// `usePodIdentity`, STS's (IRSA) otherwise.
    pub fn identity_audience(&self) -> &'static str {
        if self.use_pod_identity {
            POD_IDENTITY_AUDIENCE
        } else {
            IRSA_AUDIENCE
        }
    }

    /// The token of the pod's identity: for the Pod Identity Agent with `usePodIdentity`, for
    /// STS (IRSA) otherwise.
    pub fn identity_token(&self) -> Result<&str, SpecError> {
        let Some(tokens) = &self.tokens else {
            return Err(SpecError(token_error(NO_TOKENS)));
        };
        let (audience, method) = if self.use_pod_identity {
            (POD_IDENTITY_AUDIENCE, "Pod Identity")
        } else {
            (IRSA_AUDIENCE, "IRSA")
        };
        let failed = |why: String| SpecError(format!("{method} token extraction failed: {why}"));
        match tokens.get(audience) {
            None => Err(failed(format!(
                "token for audience {audience:?} not found - ensure tokenRequests includes this audience in CSIDriver"
            ))),
            Some(t) if t.token.is_empty() => {
                Err(failed(format!("token for audience {audience:?} is empty")))
            }
            Some(t) => Ok(&t.token),
        }
    }
}

const NO_TOKENS: &str =
    "serviceAccount.tokens not provided - ensure tokenRequests is configured in CSIDriver";

fn token_error(why: &str) -> String {
    format!("CSI token error: {why} - ensure tokenRequests is configured in CSIDriver spec")
}

/// The tokens the kubelet passed, by audience, if it passed any.
fn tokens(text: &str) -> Result<Option<HashMap<String, ServiceAccountToken>>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    // The parser's message quotes no input: a token must not reach a pod's events.
    serde_json::from_str(text).map(Some).map_err(|e| {
        format!(
            "failed to parse serviceAccount.tokens: not a map of audience to token (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// The request's attributes: the JSON map of strings the driver sends.
pub fn read_attributes(text: &str) -> Result<HashMap<String, String>, SpecError> {
    // The attributes hold the pod's tokens: the message gives where, never what.
    serde_json::from_str(text).map_err(|e| {
        SpecError(format!(
            "failed to unmarshal attributes, error: not a map of strings (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// The pod's namespace and name, for the log line of a request refused before it is read
/// whole: from the attributes read, else, where they are not a map of strings, as far as the
/// text can be read.
pub fn pod_of(
    attributes: &Result<HashMap<String, String>, SpecError>,
    text: &str,
) -> (String, String) {
    if let Ok(map) = attributes {
        let field = |key: &str| map.get(key).cloned().unwrap_or_default();
        return (field(POD_NAMESPACE), field(POD_NAME));
    }
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let field = |key: &str| value[key].as_str().unwrap_or("").to_owned();
    (field(POD_NAMESPACE), field(POD_NAME))
}

/// Whether `region` has a region's shape: letters in dash-separated words, then a number
/// (`us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-northwest-1`).
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    region.len() <= 32
        && words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
