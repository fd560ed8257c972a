//! An in-process fake of AWS Secrets Manager speaking the AWS JSON 1.1
//! protocol, for driving the real SDK client in tests.
//!
//! The server runs on its own thread and its own multi-thread tokio runtime so
//! that it keeps answering whatever the caller does with its runtime (paused
//! clock, current-thread runtime, or no runtime at all in a plain `#[test]`).
//!
//! Fidelity notes, where the fake chooses a behaviour:
//! - `SecretId` may be a secret's name or its full ARN (partial ARNs are not
//!   resolved).
//! - GetSecretValue with both `VersionId` and `VersionStage` naming different
//!   versions answers `ResourceNotFoundException`.
//! - Parameter problems (missing `SecretId`, `MaxResults` out of range, more
//!   than 20 ids in a batch, both or neither of `SecretIdList`/`Filters`, an
//!   unsupported filter key) answer `InvalidParameterException`.
//! - ListSecrets and BatchGetSecretValue-with-filters list secrets in name
//!   order; `SortOrder` and `IncludePlannedDeletion` are ignored, since
//!   `delete_secret` removes a secret at once, as a forced deletion would.
//! - BatchGetSecretValue by ids pages its answer by the list page size
//!   (AWS may page a large answer; `MaxResults` stays refused with ids).
//! - Only the `name` filter key is supported. It matches a prefix,
//!   case-sensitively as the AWS API reference specifies; a value starting
//!   with `!` negates. Values of one filter are OR-ed, filters are AND-ed.
//! - An answer is computed when the request arrives; latency and holds only
//!   delay its delivery. A test can thus make a held request return data that
//!   has been replaced since.
//!
//! Layout: this file is the API a test holds ([`FakeSecretsManager`],
//! [`Latch`] and the types they take); `state` is what the server shares with
//! it and how each request's fate is decided; `store` models secrets,
//! versions and stages and answers each operation; `server` is the HTTP side;
//! `wire` is how errors, timestamps and identifiers are spelled.

mod server;
mod state;
mod store;
mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use state::{Outcome, Shared, State};
use wire::{ACCOUNT, ApiError, INTERNAL, NOT_FOUND, arn_for, generate_uuid};

/// The operations the fake implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    GetSecretValue,
    DescribeSecret,
    ListSecrets,
    BatchGetSecretValue,
}

impl Op {
    const ALL: [Op; 4] = [
        Op::GetSecretValue,
        Op::DescribeSecret,
        Op::ListSecrets,
        Op::BatchGetSecretValue,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::GetSecretValue => "GetSecretValue",
            Op::DescribeSecret => "DescribeSecret",
            Op::ListSecrets => "ListSecrets",
            Op::BatchGetSecretValue => "BatchGetSecretValue",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// A failure injected in place of the normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 400 `ThrottlingException`.
    Throttling,
    /// 500 `InternalServiceError`.
    Internal,
    /// 400 `ResourceNotFoundException`.
    NotFound,
    /// 400 `AccessDeniedException`.
    AccessDenied,
    /// 400 `DecryptionFailure`.
    Decryption,
    /// The TCP connection is closed without any response.
    DropConnection,
    /// 200 with the first half of the normal answer's JSON.
    TruncatedAnswer,
    /// 200 announcing the normal answer's full length, then its first half, then a TCP reset:
    /// the connection breaks mid-body.
    ResetMidBody,
    /// 200 with bytes that are neither JSON nor UTF-8.
    GarbageAnswer,
    /// 200 with the normal answer, each value in it a `SecretBinary` that is not base64.
    NotBase64,
    /// This status with an HTML page, as a proxy or load balancer answers: no JSON, no
    /// `x-amzn-ErrorType`, so no error code.
    ErrorPage(u16),
}

impl Fault {
    /// What a request under this fault gets, given what it would have got.
    fn outcome(self, op: Op, answer: Result<Value, ApiError>) -> Outcome {
        match self {
            Fault::DropConnection => Outcome::Drop,
            Fault::TruncatedAnswer => {
                let full = serde_json::to_vec(&answer.unwrap_or_default()).unwrap_or_default();
                Outcome::Raw(StatusCode::OK, full[..full.len() / 2].to_vec())
            }
            Fault::ResetMidBody => Outcome::ResetMidBody(
                serde_json::to_vec(&answer.unwrap_or_default()).unwrap_or_default(),
            ),
            Fault::GarbageAnswer => Outcome::Raw(StatusCode::OK, wire::garbage()),
            Fault::NotBase64 => Outcome::Answer(answer.map(wire::not_base64)),
            Fault::ErrorPage(status) => Outcome::Raw(
                StatusCode::from_u16(status).expect("an HTTP status"),
                wire::error_page(status),
            ),
            _ => Outcome::Answer(Err(self.error(op))),
        }
    }

    fn error(self, op: Op) -> ApiError {
        let (code, message) = match self {
            Fault::Throttling => ("ThrottlingException", "Rate exceeded".to_owned()),
            Fault::Internal => (INTERNAL, "An error occurred on the server side.".to_owned()),
            Fault::NotFound => (
                NOT_FOUND,
                "Secrets Manager can't find the specified secret.".to_owned(),
            ),
            Fault::AccessDenied => (
                "AccessDeniedException",
                format!(
                    "User: arn:aws:iam::{ACCOUNT}:user/test is not authorized to perform: \
                     secretsmanager:{}",
                    op.name()
                ),
            ),
            Fault::Decryption => (
                "DecryptionFailure",
                "Secrets Manager can't decrypt the protected secret text using the provided \
                 KMS key."
                    .to_owned(),
            ),
            Fault::DropConnection
            | Fault::TruncatedAnswer
            | Fault::ResetMidBody
            | Fault::GarbageAnswer
            | Fault::NotBase64
            | Fault::ErrorPage(_) => unreachable!("{self:?} is not an API error"),
        };
        ApiError::new(code, message)
    }
}

/// The payload of a secret version.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretData {
    String(String),
    Binary(Vec<u8>),
}

/// Redacted so that a failing assertion or a log line cannot leak a value.
impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretData::String(s) => write!(f, "SecretData::String(<{} bytes>)", s.len()),
            SecretData::Binary(b) => write!(f, "SecretData::Binary(<{} bytes>)", b.len()),
        }
    }
}

/// A fake Secrets Manager listening on `127.0.0.1`; dropping it stops the
/// server and joins its thread.
pub struct FakeSecretsManager {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeSecretsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSecretsManager")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeSecretsManager {
    pub fn start() -> Self {
        // Bound here rather than on the server thread so the port is known,
        // and connectable, by the time `start` returns.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .expect("fake Secrets Manager: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake Secrets Manager: set_nonblocking");
        let addr = listener
            .local_addr()
            .expect("fake Secrets Manager: local_addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fake-sm".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-sm-worker")
                    .enable_all()
                    .build()
                    .expect("fake Secrets Manager: build runtime");
                runtime.block_on(server::serve(listener, server_shared, shutdown_rx));
                // Connections still open (keep-alive, held requests) are
                // cancelled here rather than left to outlive the fake.
                runtime.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("fake Secrets Manager: spawn server thread");
        FakeSecretsManager {
            shared,
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates the secret if needed, then creates or replaces the version.
    /// The version ends up with exactly `stages`, each taken away from any
    /// other version of the secret; unlike `put_string`, nothing else moves.
    pub fn put_version(&self, name: &str, version_id: &str, stages: &[&str], data: SecretData) {
        self.shared
            .lock()
            .store
            .put_version(name, version_id, stages, data);
    }

    /// Adds a new `AWSCURRENT` version the way a rotation does: the previous
    /// `AWSCURRENT` version becomes `AWSPREVIOUS`. Returns the new version id.
    pub fn put_string(&self, name: &str, value: &str) -> String {
        let version_id = generate_uuid(name);
        self.shared
            .lock()
            .store
            .rotate(name, &version_id, SecretData::String(value.to_owned()));
        version_id
    }

    /// Removes the secret at once, like a forced deletion; unknown names are
    /// ignored.
    pub fn delete_secret(&self, name: &str) {
        self.shared.lock().store.remove(name);
    }

    /// The ARN the secret has (or would have) in this fake.
    pub fn arn(&self, name: &str) -> String {
        arn_for(name)
    }

    /// Requests of `op` received so far, faulted ones included.
    pub fn calls(&self, op: Op) -> usize {
        self.shared.lock().calls.get(&op).copied().unwrap_or(0)
    }

    pub fn reset_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// The next `times` requests of `op` get `fault`; `usize::MAX` means until
    /// `clear_faults`. Injections for the same op queue up behind each other.
    pub fn inject(&self, op: Op, fault: Fault, times: usize) {
        if times > 0 {
            self.shared
                .lock()
                .faults
                .entry(op)
                .or_default()
                .push_back((fault, times));
        }
    }

    /// Answers GetSecretValue and DescribeSecret with AccessDenied for every name but these,
    /// as AWS answers a role whose policy names its secrets (whether the name exists or not).
    pub fn allow_reading_only(&self, names: &[&str]) {
        self.shared.lock().readable_only = Some(names.iter().map(|n| (*n).to_owned()).collect());
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Real-time delay before every answer to `op`, faults included;
    /// `Duration::ZERO` removes it.
    pub fn set_latency(&self, op: Op, delay: Duration) {
        self.shared.lock().latency.insert(op, delay);
    }

    /// Real-time delay before every answer to GetSecretValue and BatchGetSecretValue requests
    /// involving `secret_name` (by name or ARN), on top of the operation's; `Duration::ZERO`
    /// removes it. One slow secret, as a value behind a slow KMS key is.
    pub fn set_secret_latency(&self, secret_name: &str, delay: Duration) {
        let mut state = self.shared.lock();
        if delay.is_zero() {
            state.secret_latency.remove(secret_name);
        } else {
            state.secret_latency.insert(secret_name.to_owned(), delay);
        }
    }

    /// Answers to GetSecretValue and BatchGetSecretValue requests involving
    /// `secret_name` (by name or ARN), arriving from now on, wait until the
    /// latch is released or dropped.
    pub fn hold(&self, secret_name: &str) -> Latch {
        let hold = Arc::new(Hold {
            name: secret_name.to_owned(),
            released: watch::Sender::new(false),
            waiting: watch::Sender::new(0),
        });
        self.shared.lock().holds.push(Arc::clone(&hold));
        Latch {
            shared: Arc::clone(&self.shared),
            hold,
        }
    }

    /// Caps the page size of ListSecrets (and of BatchGetSecretValue with
    /// filters) below what `MaxResults` asks for; a BatchGetSecretValue by
    /// ids answers this many ids a page.
    pub fn set_list_page_size(&self, n: usize) {
        assert!(n > 0, "list page size must be positive");
        self.shared.lock().store.list_page_size = n;
    }

    /// The JSON bodies received, in arrival order; an unparsable body is
    /// recorded as `Value::Null`.
    pub fn requests(&self) -> Vec<(Op, Value)> {
        self.shared.lock().requests.clone()
    }

    /// The `User-Agent` header of every request received, unknown operations
    /// included; empty when the header was absent.
    pub fn user_agents(&self) -> Vec<String> {
        self.shared.lock().user_agents.clone()
    }
}
impl Drop for FakeSecretsManager {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been reported by the
            // panic hook; re-raising it from a destructor could abort.
            let _ = thread.join();
        }
    }
}

/// Returned by [`FakeSecretsManager::hold`]; releasing or dropping it lets
/// the held answers go.
pub struct Latch {
    shared: Arc<Shared>,
    hold: Arc<Hold>,
}

impl Latch {
    pub fn release(self) {
        drop(self);
    }

    /// Requests currently waiting on this latch.
    pub fn waiting(&self) -> usize {
        *self.hold.waiting.borrow()
    }

    /// Resolves once at least `n` requests are waiting on this latch, so a
    /// test knows a request is in flight without sleeping. Needs no timer,
    /// hence works under a paused clock.
    pub async fn until_waiting(&self, n: usize) {
        let mut waiting = self.hold.waiting.subscribe();
        // The sender lives in `self.hold`, so this cannot fail.
        let _ = waiting.wait_for(|&count| count >= n).await;
    }
}

impl fmt::Debug for Latch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latch")
            .field("secret", &self.hold.name)
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.hold.released.send_replace(true);
        self.shared
            .lock()
            .holds
            .retain(|hold| !Arc::ptr_eq(hold, &self.hold));
    }
}

struct Hold {
    name: String,
    released: watch::Sender<bool>,
    waiting: watch::Sender<usize>,
}

impl Hold {
    async fn wait(&self) {
        let mut released = self.released.subscribe();
        self.waiting.send_modify(|count| *count += 1);
        // Decrements even when the connection task is cancelled mid-wait.
        let _waiting = WaitingGuard(&self.waiting);
        let _ = released.wait_for(|&released| released).await;
    }
}

struct WaitingGuard<'a>(&'a watch::Sender<usize>);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}
