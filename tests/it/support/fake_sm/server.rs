//! The HTTP side, on the fake's own runtime: the accept loop, and for each
//! request reading the target and body, planning it, then waiting out its
//! latency and holds before answering (or dropping the connection, or
//! resetting it mid-body).

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;

use super::Op;
use super::state::{Outcome, Shared};
use super::wire::{ApiError, UNKNOWN_OPERATION, error_response, json_response, raw_response};

const TARGET_PREFIX: &str = "secretsmanager.";

pub(super) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("fake Secrets Manager: listener");
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Typically out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = Arc::clone(&shared);
                // A second handle on the socket, to reset it mid-body; it closes with the
                // service, when the connection ends.
                let Ok(socket) = stream.as_fd().try_clone_to_owned() else {
                    continue;
                };
                let socket = Arc::new(socket);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        handle(Arc::clone(&shared), Arc::clone(&socket), request)
                    });
                    // Errors here are clients going away and deliberate drops.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Returned by the service to make hyper close the connection without
/// writing a response.
#[derive(Debug)]
struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose by the fake")
    }
}

impl std::error::Error for DropConnection {}

type Body = BoxBody<Bytes, std::io::Error>;

fn whole(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// A 200 that announces all of `bytes`, sends the first half, then resets the connection:
/// SO_LINGER 0 makes the close that follows the body's error an RST. The pause lets hyper
/// flush the half first, since a reset discards whatever is still unsent.
fn reset_mid_body(socket: Arc<OwnedFd>, bytes: Vec<u8>) -> Response<Body> {
    let length = bytes.len();
    let half = Bytes::from(bytes).slice(..length / 2);
    let reset = async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = socket2::SockRef::from(&*socket).set_linger(Some(Duration::ZERO));
        Err(std::io::Error::other(
            "reset mid-body on purpose by the fake",
        ))
    };
    let frames = futures::stream::once(async move { Ok(Frame::data(half)) })
        .chain(futures::stream::once(reset));
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/x-amz-json-1.1")
        .header(CONTENT_LENGTH, length)
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("status and headers are valid")
}

async fn handle(
    shared: Arc<Shared>,
    socket: Arc<OwnedFd>,
    request: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let header = |name: HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let user_agent = header(USER_AGENT).unwrap_or_default();
    let target = header(HeaderName::from_static("x-amz-target"));
    let is_api_call = request.method() == Method::POST && request.uri().path() == "/";
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    shared.lock().user_agents.push(user_agent);

    let op = target
        .as_deref()
        .and_then(|target| target.strip_prefix(TARGET_PREFIX))
        .and_then(Op::from_name)
        .filter(|_| is_api_call);
    let Some(op) = op else {
        let what = target.as_deref().unwrap_or("(no X-Amz-Target)");
        return Ok(whole(error_response(&ApiError::new(
            UNKNOWN_OPERATION,
            format!("The fake does not implement {what}."),
        ))));
    };
    let parsed = if body.is_empty() {
        Some(json!({}))
    } else {
        serde_json::from_slice(&body).ok()
    };
    let plan = shared.lock().admit(op, parsed);

    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    for hold in &plan.holds {
        hold.wait().await;
    }
    match plan.outcome {
        Outcome::Drop => Err(DropConnection),
        Outcome::Answer(Ok(value)) => Ok(whole(json_response(StatusCode::OK, &value, None))),
        Outcome::Answer(Err(error)) => Ok(whole(error_response(&error))),
        Outcome::Raw(status, body) => Ok(whole(raw_response(status, body))),
        Outcome::ResetMidBody(bytes) => Ok(reset_mid_body(socket, bytes)),
    }
}
