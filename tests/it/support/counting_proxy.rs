//! A recording HTTP proxy in front of moto: it forwards every request unchanged and notes its
//! operation (Secrets Manager's `X-Amz-Target`, STS's `Action=`) and the access key id that
//! signed it, so that a test can count AssumeRole calls and see which credentials each
//! Secrets Manager call was made with (moto itself shows neither).
//!
//! It runs on its own thread and runtime, so it answers whatever the test does with its own
//! (blocking reads of a mount included). Access key ids are compared, never printed. It
//! refuses AssumeRole and AssumeRoleWithWebIdentity of roles named `.../denied` (see
//! [`REFUSED_ROLE_SUFFIX`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// AssumeRole or AssumeRoleWithWebIdentity of a role whose ARN ends so is refused here, as STS
/// refuses a role whose trust policy does not name the caller (moto grants every one).
pub const REFUSED_ROLE_SUFFIX: &str = "/denied";

/// AssumeRoleWithWebIdentity with the token of a service account of this name is refused
/// whatever the role, as a trust policy that names other service accounts refuses it.
pub const REFUSED_ACCOUNT: &str = "intruder";

/// The operations refused for a role named so, each with STS's message.
const REFUSABLE: [(&str, &str); 2] = [
    (
        "AssumeRole",
        "User is not authorized to perform: sts:AssumeRole",
    ),
    (
        "AssumeRoleWithWebIdentity",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    ),
];

/// A JWT's `sub` claim ("" when it has none); the token itself is never kept or shown.
fn token_subject(token: &str) -> String {
    use base64::Engine as _;
    token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|claims| serde_json::from_slice::<serde_json::Value>(&claims).ok())
        .and_then(|claims| claims["sub"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn access_denied(message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
<Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error>\
<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    )
}

/// One request that went through: its operation and the access key id that signed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Seen {
    pub op: String,
    pub key_id: String,
    /// The region the request was signed for (its credential scope).
    pub region: String,
}

/// Regions whose signed requests are answered 503, as an outage of one region; and
/// [`BATCH_OP`] when it is refused, as a policy granting GetSecretValue alone refuses it.
type Failing = Arc<Mutex<std::collections::HashSet<String>>>;

const BATCH_OP: &str = "BatchGetSecretValue";

pub struct CountingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Failing,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CountingProxy {
    /// A proxy to `upstream` (moto's `http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CountingProxy {
        let upstream: SocketAddr = upstream
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("counting proxy: cannot use upstream {upstream}"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("counting proxy: bind");
        listener
            .set_nonblocking(true)
            .expect("counting proxy: nonblocking");
        let addr = listener.local_addr().expect("counting proxy: address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let failing: Failing = Arc::default();
        let (shutdown, mut stop) = oneshot::channel();
        let seen_by_server = seen.clone();
        let failing_by_server = failing.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("counting proxy: runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let seen = seen_by_server.clone();
                            let failing = failing_by_server.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |request| {
                                    forward(upstream, seen.clone(), failing.clone(), request)
                                });
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        CountingProxy {
            addr,
            seen,
            failing,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests of `op` went through.
    pub fn calls(&self, op: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.op == op)
            .count()
    }

    /// How many requests went through, whatever their operation.
    pub fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The operation of every request, in order (empty when it had none).
    pub fn ops(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|s| s.op.clone()).collect()
    }

    /// Answers every request signed for `region` with 503 from now on.
    pub fn fail_region(&self, region: &str) {
        self.failing.lock().unwrap().insert(region.to_owned());
    }

    /// Refuses BatchGetSecretValue from now on (AccessDeniedException), as the AWS provider's
    /// documented IAM policy does: it grants GetSecretValue and DescribeSecret only.
    pub fn refuse_batch(&self) {
        self.failing.lock().unwrap().insert(BATCH_OP.to_owned());
    }

    /// The regions of the requests of `op`, in order.
    pub fn regions(&self, op: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.op == op)
            .map(|s| s.region.clone())
            .collect()
    }

    /// The access key ids of the requests of `op`, in order.
    pub fn key_ids(&self, op: &str) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.op == op)
            .map(|s| s.key_id.clone())
            .collect()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    failing: Failing,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let op = match header("x-amz-target").rsplit_once('.') {
        Some((_, op)) => op.to_owned(),
        None => form_urlencoded::parse(&body)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
    };
    let authorization = header("authorization");
    // Credential=KEY_ID/DATE/REGION/SERVICE/aws4_request
    let scope: Vec<&str> = authorization
        .split("Credential=")
        .nth(1)
        .map(|c| c.split(',').next().unwrap_or("").split('/').collect())
        .unwrap_or_default();
    let key_id = scope.first().copied().unwrap_or("").to_owned();
    let region = scope.get(2).copied().unwrap_or("").to_owned();
    let (outage, batch_refused) = {
        let failing = failing.lock().unwrap();
        (
            failing.contains(&region),
            op == BATCH_OP && failing.contains(BATCH_OP),
        )
    };
    let refusal = REFUSABLE
        .iter()
        .find(|(refusable, _)| *refusable == op)
        .filter(|_| {
            form_urlencoded::parse(&body).any(|(k, v)| {
                (k == "RoleArn" && v.ends_with(REFUSED_ROLE_SUFFIX))
                    || (k == "WebIdentityToken"
                        && token_subject(&v).ends_with(&format!(":{REFUSED_ACCOUNT}")))
            })
        })
        .map(|(_, message)| access_denied(message));
    seen.lock().unwrap().push(Seen { op, key_id, region });
    if outage {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"{\"__type\":\"ServiceUnavailableException\",\"message\":\"an outage the test injected\"}",
        )));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(response);
    }
    if batch_refused {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"{\"__type\":\"AccessDeniedException\",\"message\":\"not authorized to perform: secretsmanager:BatchGetSecretValue\"}",
        )));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    if let Some(refusal) = refusal {
        let mut response = Response::new(Full::new(Bytes::from(refusal)));
        *response.status_mut() = StatusCode::FORBIDDEN;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/xml"),
        );
        return Ok(response);
    }

    // One request per upstream connection, read to its end.
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        parts.method,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    for (name, value) in &parts.headers {
        if name == "connection" || name == "content-length" || name == "transfer-encoding" {
            continue;
        }
        head.push_str(&format!(
            "{}: {}\r\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    parse_response(&answer).ok_or_else(|| std::io::Error::other("unreadable answer from moto"))
}

/// A whole HTTP/1.x response (Content-Length or to the end; not chunked) as hyper's.
fn parse_response(raw: &[u8]) -> Option<Response<Full<Bytes>>> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        let lower = name.to_ascii_lowercase();
        if lower == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            return None;
        }
        if lower == "content-length" {
            length = value.parse::<usize>().ok();
            continue;
        }
        if lower == "connection" || lower == "keep-alive" {
            continue;
        }
        response.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).ok()?,
            hyper::header::HeaderValue::from_str(value).ok()?,
        );
    }
    let body = &raw[end + 4..];
    let body = match length {
        Some(n) => body.get(..n)?,
        None => body,
    };
    *response.body_mut() = Full::new(Bytes::copy_from_slice(body));
    Some(response)
}
