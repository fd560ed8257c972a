//! `secretsfs csi-provider`: the Secrets Store CSI Driver's provider, in the foreground.
//!
//! Its life is shorter than the other front ends' ([`super::run`]): no source is built at
//! start (each pod brings its identity), no config to re-read and no hooks; it answers until
//! SIGTERM or SIGINT, then removes its socket.

use std::sync::Arc;

use secretsfs_csi::provider::{Provider, ProviderConfig};

use crate::cli::CsiProviderArgs;
use crate::daemon::StopSignals;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;
use crate::source::aws::AwsOptions;

pub async fn run(args: &CsiProviderArgs, settings: Settings) -> Result<()> {
    let mut stop = StopSignals::install()?;
    // The region of a class without one, as the AWS provider finds it: its own environment
    // first, the pod's node after.
    let default_region = settings
        .aws
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()));
    let aws = AwsOptions {
        region: None,
        role_arn: None,
        ..settings.aws.clone()
    };
    let provider = Provider::new(ProviderConfig {
        aws,
        default_region,
        kube_api: args.kube_api.clone(),
        pod_identity_endpoint: args.pod_identity_endpoint.clone(),
        allow_node_identity: args.allow_node_identity,
        cache: settings.cache,
        max_response_bytes: args.max_response_bytes,
    })
    .map_err(Error::config)?;
    let socket = &args.socket;
    let listener = secretsfs_csi::server::bind(socket).await.map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("--socket {}: {e}", socket.display()),
        )
    })?;
    if args.allow_node_identity {
        tracing::warn!(target: "secretsfs::csi",
            "--allow-node-identity: pods without a service account token read with this provider's own credentials");
    }
    tracing::info!(target: "secretsfs::csi", socket = %socket.display(),
        version = env!("CARGO_PKG_VERSION"), "csi provider listening");
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let signals = tokio::spawn(async move {
        let signal = stop.next().await;
        let _ = stopped_tx.send(());
        signal
    });
    let provider = Arc::new(provider);
    secretsfs_csi::server::serve(listener, socket, provider.clone(), async {
        let _ = stopped_rx.await;
    })
    .await
    .map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("the provider's gRPC server: {e}"),
        )
    })?;
    let signal = signals.await.unwrap_or("a stop");
    let calls = provider.identities().stats().snapshot();
    tracing::info!(target: "secretsfs::csi", signal, upstream_calls = calls.upstream_calls.total(),
        "csi provider stopped");
    Ok(())
}
