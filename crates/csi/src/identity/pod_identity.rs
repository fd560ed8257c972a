//! EKS Pod Identity: the pod's token for `pods.eks.amazonaws.com` handed to the node's Pod
//! Identity Agent, which answers the credentials of the role associated with the pod's
//! service account (ECS's container credentials format).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use serde::Deserialize;

use crate::client::{self, HttpClient};
use crate::failure::{self, Failure};
use crate::request::AddressType;

pub const IPV4_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";
pub const IPV6_ENDPOINT: &str = "http://[fd00:ec2::23]/v1/credentials";
const DEADLINE: Duration = Duration::from_secs(5);

pub struct PodIdentityAgent {
    /// `--pod-identity-endpoint`, in place of the address `preferredAddressType` picks.
    endpoint: Option<String>,
    client: HttpClient,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

impl PodIdentityAgent {
    pub fn new(endpoint: Option<String>) -> Result<PodIdentityAgent, String> {
        Ok(PodIdentityAgent {
            endpoint,
            client: client::client(rustls::RootCertStore::empty())?,
        })
    }

    fn endpoint(&self, address: AddressType) -> &str {
        match (&self.endpoint, address) {
            (Some(endpoint), _) => endpoint,
            // As the AWS provider: auto is the IPv4 address.
            (None, AddressType::Auto | AddressType::Ipv4) => IPV4_ENDPOINT,
            (None, AddressType::Ipv6) => IPV6_ENDPOINT,
        }
    }

    pub async fn credentials(
        &self,
        address: AddressType,
        token: &str,
    ) -> Result<Credentials, Failure> {
        let endpoint = self.endpoint(address);
        let headers = [("authorization", token), ("accept", "application/json")];
        let (status, body) = client::get(&self.client, endpoint, &headers, DEADLINE)
            .await
            .map_err(|why| {
                Failure::new(
                    failure::POD_IDENTITY_AGENT,
                    format!("Pod Identity Agent {endpoint}: {why}"),
                )
            })?;
        if !status.is_success() {
            // The agent's refusal is JSON with a code and a message; neither holds the token.
            let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = refusal["message"].as_str().unwrap_or("no message");
            let cause = format!("Pod Identity Agent {endpoint}: {status}: {message}");
            return Err(match refusal["code"].as_str() {
                Some(code) if !code.is_empty() && code.len() <= 64 => {
                    Failure::coded(code.to_owned(), cause)
                }
                _ => Failure::new(failure::POD_IDENTITY_AGENT, cause),
            });
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
            Failure::new(
                failure::POD_IDENTITY_AGENT,
                format!("Pod Identity Agent {endpoint}: the answer is not credentials"),
            )
        })?;
        let expiry = aws_smithy_types::DateTime::from_str(
            &answer.expiration,
            aws_smithy_types::date_time::Format::DateTime,
        )
        .ok()
        .and_then(|at| SystemTime::try_from(at).ok())
        .ok_or_else(|| {
            Failure::new(
                failure::POD_IDENTITY_AGENT,
                format!("Pod Identity Agent {endpoint}: the credentials' expiration is not a date"),
            )
        })?;
        Ok(Credentials::new(
            answer.access_key_id,
            answer.secret_access_key,
            Some(answer.token),
            Some(expiry),
            "secretsfs-csi-pod-identity",
        ))
    }
}
