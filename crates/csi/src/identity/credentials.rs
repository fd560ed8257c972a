//! An identity's credentials as its engines' clients see them: the latest that STS or the Pod
//! Identity Agent gave for one of its pods, replaced at each acceptance.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};

/// Clones share the credentials: the identity keeps one to replace them, each client another.
#[derive(Debug, Clone)]
pub struct IdentityCredentials {
    /// Names the identity in the error a client gets once they have expired.
    identity: Arc<str>,
    current: Arc<parking_lot::RwLock<Option<Credentials>>>,
}

impl IdentityCredentials {
    pub fn new(identity: String) -> IdentityCredentials {
        IdentityCredentials {
            identity: identity.into(),
            current: Default::default(),
        }
    }

    pub fn replace(&self, credentials: Credentials) {
        *self.current.write() = Some(credentials);
    }

    fn current(&self) -> provider::Result {
        match &*self.current.read() {
            Some(c) if c.expiry().is_none_or(|at| at > SystemTime::now()) => Ok(c.clone()),
            // Only a pod's token renews them: the provider holds none of its own.
            _ => Err(CredentialsError::not_loaded(format!(
                "the credentials of {} have expired; the next mount of one of its pods renews them",
                self.identity
            ))),
        }
    }
}

impl ProvideCredentials for IdentityCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::ready(self.current())
    }
}
