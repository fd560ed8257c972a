//! The Lambda Extensions API, as its reference describes it
//! (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html): register,
//! the next event, and the two error reports. Plain HTTP/1.1 to `AWS_LAMBDA_RUNTIME_API`.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};

const VERSION: &str = "2020-01-01";
const NAME_HEADER: &str = "Lambda-Extension-Name";
const ID_HEADER: &str = "Lambda-Extension-Identifier";
const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";
/// The largest answer read: an event is a few hundred bytes.
const MAX_ANSWER: usize = 1 << 20;

/// One event of `/event/next`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub event_type: String,
    /// When the event's time runs out, in milliseconds since the epoch.
    #[serde(default)]
    pub deadline_ms: u64,
    #[serde(default)]
    pub shutdown_reason: Option<String>,
}

pub struct ExtensionsApi {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A registered extension: what every later request names.
pub struct Registered {
    pub id: String,
}

impl ExtensionsApi {
    /// The API at `runtime_api` (`AWS_LAMBDA_RUNTIME_API`, `HOST:PORT`).
    pub fn new(runtime_api: &str) -> ExtensionsApi {
        ExtensionsApi {
            base: format!("http://{runtime_api}/{VERSION}/extension"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        deadline: Option<Duration>,
    ) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes)> {
        let failed = |why: String| {
            Error::new(
                ErrorKind::Unavailable,
                format!("Lambda Extensions API {path}: {why}"),
            )
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        match deadline {
            Some(deadline) => tokio::time::timeout(deadline, call)
                .await
                .map_err(|_| failed(format!("no answer within {} s", deadline.as_secs())))?,
            None => call.await,
        }
    }

    /// Registers `name` (the executable's file name, as Lambda requires) for INVOKE and
    /// SHUTDOWN.
    pub async fn register(&self, name: &str) -> Result<Registered> {
        let body = Bytes::from_static(br#"{"events":["INVOKE","SHUTDOWN"]}"#);
        let (status, headers, _) = self
            .call(
                Method::POST,
                "/register",
                &[(NAME_HEADER, name), ("content-type", "application/json")],
                body,
                Some(Duration::from_secs(10)),
            )
            .await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("Lambda Extensions API /register answered {status}"),
            ));
        }
        let id = headers
            .get(ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("Lambda Extensions API /register answered no {ID_HEADER}"),
                )
            })?;
        Ok(Registered { id: id.to_owned() })
    }

    /// Waits for the next event; as long as Lambda takes (the environment may be frozen
    /// meanwhile).
    pub async fn next(&self, registered: &Registered) -> Result<Event> {
        let (status, _, body) = self
            .call(
                Method::GET,
                "/event/next",
                &[(ID_HEADER, &registered.id)],
                Bytes::new(),
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("Lambda Extensions API /event/next answered {status}"),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("Lambda Extensions API /event/next: not an event: {e}"),
            )
        })
    }

    /// Reports a failure: `init/error` before the first event, `exit/error` after it. The
    /// error type is `Category.Reason`; the message says what failed, never a value.
    pub async fn report(
        &self,
        registered: &Registered,
        phase: Phase,
        error_type: &str,
        message: &str,
    ) -> Result<()> {
        let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
        let path = match phase {
            Phase::Init => "/init/error",
            Phase::Running => "/exit/error",
        };
        let (status, _, _) = self
            .call(
                Method::POST,
                path,
                &[
                    (ID_HEADER, &registered.id),
                    (ERROR_TYPE_HEADER, error_type),
                    ("content-type", "application/json"),
                ],
                Bytes::from(body.to_string()),
                Some(Duration::from_secs(5)),
            )
            .await?;
        if !status.is_success() {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("Lambda Extensions API {path} answered {status}"),
            ));
        }
        Ok(())
    }
}

/// Which error report a failure gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Running,
}
