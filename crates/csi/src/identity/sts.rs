//! IRSA: the pod's token for `sts.amazonaws.com` traded for its role's credentials with
//! AssumeRoleWithWebIdentity, through the SDK, at the primary region's STS.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use secretsfs_core::source::aws::{AwsOptions, shared_config};

use crate::failure::{self, Failure};

pub struct Sts {
    base: AwsOptions,
    clients: tokio::sync::Mutex<HashMap<String, aws_sdk_sts::Client>>,
}

impl Sts {
    /// STS at `base`'s settings (timeout, FIPS), at the SDK's own endpoint variables.
    pub fn new(base: AwsOptions) -> Sts {
        Sts {
            base,
            clients: Default::default(),
        }
    }

    async fn client(&self, region: &str) -> Result<aws_sdk_sts::Client, Failure> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(region) {
            return Ok(client.clone());
        }
        // `--endpoint-url` is Secrets Manager's: STS's comes from the SDK's own variables
        // (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`), read by the loader.
        let options = AwsOptions {
            region: Some(region.to_owned()),
            role_arn: None,
            endpoint_url: None,
            ..self.base.clone()
        };
        let config = shared_config(&options)
            .await
            .map_err(|e| Failure::new(failure::STS_UNAVAILABLE, e.message().to_owned()))?;
        let client = aws_sdk_sts::Client::new(&config);
        clients.insert(region.to_owned(), client.clone());
        Ok(client)
    }

    /// `role_arn`'s credentials for the holder of `token`: STS checks the token's signature,
    /// and the role's trust policy decides whether this service account may assume it.
    pub async fn assume(
        &self,
        region: &str,
        role_arn: &str,
        token: &str,
        session_name: &str,
    ) -> Result<Credentials, Failure> {
        let client = self.client(region).await?;
        let answer = client
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .web_identity_token(token)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(err) => {
                let cause = format!(
                    "AssumeRoleWithWebIdentity of {role_arn}: {}",
                    DisplayErrorContext(&err)
                );
                return Err(match err.code() {
                    Some(code) => Failure::coded(code.to_owned(), cause),
                    None => Failure::new(failure::STS_UNAVAILABLE, cause),
                });
            }
        };
        let Some(c) = output.credentials else {
            return Err(Failure::new(
                failure::STS_UNAVAILABLE,
                format!("AssumeRoleWithWebIdentity of {role_arn} answered no credentials"),
            ));
        };
        let expiry = SystemTime::try_from(c.expiration).ok();
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            expiry,
            "secretsfs-csi-irsa",
        ))
    }
}

/// A session name that tells CloudTrail which service account assumed the role: `NS.SA`,
/// cut to STS's 64 characters of `[\w+=,.@-]`.
pub fn session_name(namespace: &str, service_account: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    let name: String = format!("{namespace}.{service_account}")
        .chars()
        .map(|c| if allowed(c) { c } else { '-' })
        .take(64)
        .collect();
    if name.len() < 2 {
        "secretsfs-csi".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_session_name_names_the_service_account_within_sts_rules() {
        assert_eq!(super::session_name("shop", "web"), "shop.web");
        assert_eq!(super::session_name("a", &"b".repeat(100)).len(), 64);
        assert_eq!(super::session_name("", ""), "secretsfs-csi");
    }
}
