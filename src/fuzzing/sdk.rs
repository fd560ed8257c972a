//! The SDK-answer target: the fuzzer's bytes are the HTTP answer of Secrets Manager, served by
//! a hyper server on 127.0.0.1 in this process to the real aws-sdk-secretsmanager client of
//! the `aws` source, whose answer (or error) the source converts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use super::{check_message, strings_under};
use crate::selector::VersionRef;
use crate::source::SecretSource;
use crate::source::aws::{AwsOptions, AwsSource, shared_config};

/// The statuses an answer is given: success, the client errors Secrets Manager answers, and
/// server errors a proxy or the service may.
const STATUSES: [u16; 8] = [200, 200, 200, 400, 403, 404, 500, 503];

struct World {
    runtime: tokio::runtime::Runtime,
    source: AwsSource,
    /// What the server answers next: a status and a body.
    answer: Arc<Mutex<(u16, Bytes)>>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let answer = Arc::new(Mutex::new((200, Bytes::new())));
        let source = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port on 127.0.0.1");
            let port = listener.local_addr().expect("its address").port();
            tokio::spawn(serve(listener, answer.clone()));
            let options = AwsOptions {
                region: Some("us-east-1".into()),
                endpoint_url: Some(format!("http://127.0.0.1:{port}")),
                timeout: Some(Duration::from_secs(10)),
                credentials: Some(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        aws_credential_types::Credentials::for_tests(),
                    ),
                ),
                ..AwsOptions::default()
            };
            let shared = shared_config(&options).await.expect("the SDK config");
            // A retry repeats the same answer after a back-off sleep: seconds per input, and
            // nothing new about how an answer is read.
            let shared = shared
                .into_builder()
                .retry_config(RetryConfig::disabled())
                .build();
            AwsSource::from_sdk_config(&shared)
        });
        World {
            runtime,
            source,
            answer,
        }
    })
}

async fn serve(listener: tokio::net::TcpListener, answer: Arc<Mutex<(u16, Bytes)>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        let service = service_fn(move |_request| {
            let (status, body) = answer.lock().clone();
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs `call` on the source while the server answers `status` and `body`.
pub(super) fn answered<F, T>(
    status: u16,
    body: &[u8],
    call: impl FnOnce(&'static AwsSource) -> F,
) -> T
where
    F: std::future::Future<Output = T>,
{
    // One call at a time (tests run on several threads): the answer is the server's only one.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock();
    let world = world();
    *world.answer.lock() = (status, Bytes::copy_from_slice(body));
    world.runtime.block_on(call(&world.source))
}

/// The input: an operation byte (GetSecretValue, DescribeSecret, ListSecrets,
/// BatchGetSecretValue), a status byte, then the body. The source answers or fails with an
/// error of one line; a success that could not be read never quotes a secret value
/// (`SecretString`, `SecretBinary`) in its error.
pub fn sdk_answer(data: &[u8]) {
    let [op, status, body @ ..] = data else {
        return;
    };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let failure = answered(status, body, |source| async move {
        match op % 4 {
            0 => source
                .get_secret_value("app/db", &VersionRef::current())
                .await
                .map(drop)
                .err(),
            1 => source.describe_secret("app/db").await.err(),
            2 => source.list_secrets(Some("app/")).await.err(),
            _ => source
                .batch_get_secret_value(&["app/db".into(), "app/api".into()])
                .await
                .map(|items| {
                    for (_, item) in items {
                        if let Err(e) = item {
                            check_message("a batch item's error", e.message(), &[], &[]);
                        }
                    }
                })
                .err(),
        }
    });
    let Some(err) = failure else {
        return;
    };
    // An error answer's own message is the service's to give, and is passed on; a success
    // holds values.
    let (values, public) = match (status, serde_json::from_slice(body)) {
        (200, Ok(json)) => strings_under(&json, &["SecretString", "SecretBinary"]),
        _ => (Vec::new(), Vec::new()),
    };
    check_message("the source's error", &err.to_string(), &values, &public);
    check_message(
        "the source's error (Debug)",
        &format!("{err:?}"),
        &values,
        &public,
    );
}
