//! A fake of Lambda's Extensions API (register, event/next, init/error, exit/error) on its own
//! thread and runtime: the test pushes the events `/event/next` answers, and reads what the
//! extension registered and reported. `/event/next` waits for the next pushed event, as
//! Lambda's long poll does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::local_server::LocalServer;

pub const EXTENSION_ID: &str = "3f1b0d4e-ext-test";

#[derive(Default)]
struct State {
    /// `Lambda-Extension-Name` and body of each register call.
    registered: Vec<(String, String)>,
    /// Whether the probed port accepted a connection at each `/event/next`.
    listening_at_next: Vec<bool>,
    /// (path, `Lambda-Extension-Function-Error-Type`, body) of each error report.
    reports: Vec<(String, String, String)>,
    /// Requests that named no or another extension id.
    unidentified: usize,
    fail_next: bool,
    probe_port: Option<u16>,
}

pub struct FakeLambda {
    server: LocalServer,
    state: Arc<Mutex<State>>,
    events: mpsc::UnboundedSender<String>,
}

impl FakeLambda {
    pub fn start() -> FakeLambda {
        let state: Arc<Mutex<State>> = Arc::default();
        let (events, receiver) = mpsc::unbounded_channel::<String>();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let shared = state.clone();
        let server = LocalServer::serve("fake lambda", move |request| {
            answer(shared.clone(), receiver.clone(), request)
        });
        FakeLambda {
            server,
            state,
            events,
        }
    }

    /// `AWS_LAMBDA_RUNTIME_API`'s value.
    pub fn runtime_api(&self) -> String {
        self.server.addr().to_string()
    }

    /// At each `/event/next`, notes whether `port` on 127.0.0.1 accepts a connection.
    pub fn probe_at_next(&self, port: u16) {
        self.state.lock().unwrap().probe_port = Some(port);
    }

    pub fn invoke(&self) {
        let deadline = now_ms() + 3000;
        let _ = self.events.send(format!(
            r#"{{"eventType":"INVOKE","deadlineMs":{deadline},"requestId":"req-1","invokedFunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:f","tracing":{{"type":"X-Amzn-Trace-Id","value":"Root=1-0"}}}}"#
        ));
    }

    pub fn shutdown(&self) {
        let deadline = now_ms() + 2000;
        let _ = self.events.send(format!(
            r#"{{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":{deadline}}}"#
        ));
    }

    /// The next `/event/next` is answered 500.
    pub fn fail_next(&self) {
        self.state.lock().unwrap().fail_next = true;
    }

    pub fn registered(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().registered.clone()
    }

    pub fn listening_at_next(&self) -> Vec<bool> {
        self.state.lock().unwrap().listening_at_next.clone()
    }

    pub fn reports(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().reports.clone()
    }

    pub fn unidentified(&self) -> usize {
        self.state.lock().unwrap().unidentified
    }

    /// Waits until `/event/next` has been asked `n` times (20 s at most).
    pub async fn wait_for_next(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.listening_at_next().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the extension did not ask for event {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

async fn answer(
    state: Arc<Mutex<State>>,
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, "{}"),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = parts.uri.path().to_owned();
    let text = String::from_utf8_lossy(&body).into_owned();
    if path == "/2020-01-01/extension/register" && parts.method == hyper::Method::POST {
        state
            .lock()
            .unwrap()
            .registered
            .push((header("lambda-extension-name"), text));
        let mut response = reply(
            StatusCode::OK,
            r#"{"functionName":"f","functionVersion":"$LATEST","handler":"index.handler"}"#,
        );
        response
            .headers_mut()
            .insert("Lambda-Extension-Identifier", EXTENSION_ID.parse().unwrap());
        return response;
    }
    if header("lambda-extension-identifier") != EXTENSION_ID {
        state.lock().unwrap().unidentified += 1;
        return reply(
            StatusCode::FORBIDDEN,
            r#"{"errorMessage":"unknown extension"}"#,
        );
    }
    match path.as_str() {
        "/2020-01-01/extension/event/next" => {
            let (port, fail) = {
                let mut state = state.lock().unwrap();
                (state.probe_port, std::mem::take(&mut state.fail_next))
            };
            let listening =
                port.is_some_and(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            state.lock().unwrap().listening_at_next.push(listening);
            if fail {
                return reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"errorMessage":"injected"}"#,
                );
            }
            let event = receiver.lock().await.recv().await.unwrap_or_default();
            reply(StatusCode::OK, &event)
        }
        "/2020-01-01/extension/init/error" | "/2020-01-01/extension/exit/error" => {
            state.lock().unwrap().reports.push((
                path.clone(),
                header("lambda-extension-function-error-type"),
                text,
            ));
            reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => reply(StatusCode::NOT_FOUND, "{}"),
    }
}
