//! The one HTTP client shape the provider needs for the Kubernetes API and the Pod Identity
//! Agent: GET, a bounded answer, a deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// What an answer may weigh: a service account, a pod or a node object, or credentials.
const MAX_ANSWER: usize = 4 << 20;

/// A client for `http://` and for `https://` with `roots` as its trust anchors.
pub fn client(roots: rustls::RootCertStore) -> Result<HttpClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// GETs `uri`: its status and body, or why there is none. The reason names the host, never a
/// header (one carries a token).
pub async fn get(
    client: &HttpClient,
    uri: &str,
    headers: &[(&str, &str)],
    deadline: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let answer = async {
        let response = client.request(request).await.map_err(|e| {
            use std::error::Error as _;
            match e.source() {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(deadline, answer)
        .await
        .map_err(|_| format!("no answer within {} s", deadline.as_secs()))?
}
