//! Self-tests of the fake Secrets Manager, driven through the real SDK client
//! so that the fake is known to speak the protocol the SDK expects; and of the
//! CSI provider's fakes (`csi_fakes`), driven by a plain HTTP client.
//!
//! Assertions on secret values never print them: test values are dummies,
//! but the habit is what keeps real ones out of logs.

mod csi_fakes;
mod faults;
mod harness;
mod listing;
mod malformed;
mod operations;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Credentials;

use crate::support::fake_sm::FakeSecretsManager;

/// Generous: only reached when something is broken, and CI machines are slow.
const DEADLINE: Duration = Duration::from_secs(10);

async fn client(fake: &FakeSecretsManager) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(fake.endpoint_url())
        .credentials_provider(Credentials::new("x", "x", None, None, "test"))
        // Every fault must reach the test exactly once.
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    Client::new(&config)
}
