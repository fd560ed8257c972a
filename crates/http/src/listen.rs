//! The listeners: TCP (loopback by default, one network hop at most, a connection limit) and
//! the Unix socket (the caller's credentials from the kernel), each connection served by
//! hyper with a deadline for request headers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::errno::Errno;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::agent::{self, PING, Peer};
use super::{Api, HttpSettings};
use secretsfs_core::caller::Caller;
use secretsfs_core::error::{Error, Result};

/// The running listeners; dropping it stops them and removes the socket file.
pub struct Listening {
    pub tcp_addr: Option<SocketAddr>,
    socket_path: Option<PathBuf>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds every configured listener and starts serving.
pub async fn start(api: Arc<Api>, settings: &HttpSettings) -> Result<Listening> {
    let mut listening = Listening {
        tcp_addr: None,
        socket_path: None,
        tasks: Vec::new(),
    };
    if let Some(addr) = settings.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
        if !bound.ip().is_loopback() {
            tracing::warn!(target: "secretsfs::http::listen", address = %bound,
                "the HTTP API listens beyond loopback: anyone who can reach it and holds the token can read secrets");
        }
        tracing::info!(target: "secretsfs::http::listen", address = %bound, "HTTP API listening");
        listening.tcp_addr = Some(bound);
        listening.tasks.push(tokio::spawn(accept_tcp(
            listener,
            api.clone(),
            settings.clone(),
        )));
    }
    if let Some((path, mode)) = &settings.socket {
        let listener = bind_unix(path, *mode)?;
        tracing::info!(target: "secretsfs::http::listen", socket = %path.display(), mode = format!("{mode:04o}"), "HTTP API listening");
        listening.socket_path = Some(path.clone());
        listening
            .tasks
            .push(tokio::spawn(accept_unix(listener, api, settings.clone())));
    }
    Ok(listening)
}

async fn accept_tcp(listener: TcpListener, api: Arc<Api>, settings: HttpSettings) {
    let limit = Arc::new(Semaphore::new(settings.max_conn));
    loop {
        let (stream, _) = accept_retrying(|| listener.accept()).await;
        if let Err(e) = limit_hops(&stream) {
            tracing::warn!(target: "secretsfs::http::listen", error = %e, "cannot limit the hop count; dropping the connection");
            continue;
        }
        // An answer is one small write: Nagle would hold it for the client's ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(target: "secretsfs::http::listen", error = %e, "cannot set TCP_NODELAY");
        }
        let permit = limit.clone().try_acquire_owned().ok();
        tokio::spawn(serve(
            stream,
            api.clone(),
            Peer::Tcp,
            permit,
            settings.clone(),
        ));
    }
}

/// The next connection; a failed accept (out of file descriptors and the like) pauses
/// rather than spins.
async fn accept_retrying<T, F>(mut accept: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(connection) => return connection,
            Err(e) => {
                tracing::warn!(target: "secretsfs::http::listen", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One hop at most: a response cannot leave the host, even where the listener is not loopback.
fn limit_hops(stream: &TcpStream) -> std::io::Result<()> {
    match stream.local_addr()? {
        SocketAddr::V4(_) => stream.set_ttl(1),
        SocketAddr::V6(_) => socket2::SockRef::from(stream).set_unicast_hops_v6(1),
    }
}

fn bind_unix(path: &Path, mode: u32) -> Result<UnixListener> {
    let bad = |why: String| Error::config(format!("HTTP socket {}: {why}", path.display()));
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(bad("exists and is not a socket".into()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(bad("another process is listening there".into()));
        }
        // A socket left behind by a process that is gone.
        std::fs::remove_file(path).map_err(|e| bad(e.to_string()))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| bad(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| bad(e.to_string()))?;
    Ok(listener)
}

async fn accept_unix(listener: UnixListener, api: Arc<Api>, settings: HttpSettings) {
    let limit = Arc::new(Semaphore::new(settings.max_conn));
    loop {
        let (stream, _) = accept_retrying(|| listener.accept()).await;
        let Some(caller) = peer_caller(&stream) else {
            tracing::warn!(target: "secretsfs::http::listen", "cannot read the peer's credentials; dropping the connection");
            continue;
        };
        let permit = limit.clone().try_acquire_owned().ok();
        tokio::spawn(serve(
            stream,
            api.clone(),
            Peer::Unix(caller),
            permit,
            settings.clone(),
        ));
    }
}

/// The peer's uid and gid from SO_PEERCRED, its supplementary groups from SO_PEERGROUPS (or,
/// where the kernel lacks it, looked up from /proc or the group database if a decision needs
/// them).
fn peer_caller(stream: &UnixStream) -> Option<Caller> {
    let cred = stream.peer_cred().ok()?;
    let (uid, gid) = (cred.uid(), cred.gid());
    let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
    Some(match peer_groups(stream) {
        Some(groups) => Caller::with_groups(uid, gid, pid, groups),
        None => Caller::new(uid, gid, pid),
    })
}

fn peer_groups(stream: &UnixStream) -> Option<Vec<u32>> {
    let mut groups = vec![0u32; 64];
    loop {
        let mut len = (groups.len() * size_of::<u32>()) as nix::libc::socklen_t;
        // SAFETY: the buffer is valid for `len` bytes and the kernel writes at most that.
        let rc = unsafe {
            nix::libc::getsockopt(
                stream.as_raw_fd(),
                nix::libc::SOL_SOCKET,
                nix::libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / size_of::<u32>());
            return Some(groups);
        }
        // Too small: the kernel said how much it needs.
        if Errno::last() == Errno::ERANGE && (len as usize) > groups.len() * size_of::<u32>() {
            groups.resize(len as usize / size_of::<u32>(), 0);
            continue;
        }
        return None;
    }
}

/// Serves one connection. Without a slot under the connection limit, every request but
/// `/ping` is answered 429 and the connection is not kept alive.
async fn serve<S>(
    stream: S,
    api: Arc<Api>,
    peer: Peer,
    permit: Option<OwnedSemaphorePermit>,
    settings: HttpSettings,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let over_limit = permit.is_none();
    if over_limit && let Some(left_out) = REFUSED.due("connection limit") {
        tracing::warn!(target: "secretsfs::http::listen",
            max_conn = settings.max_conn,
            left_out,
            "the connection limit is reached: a new connection is answered 429, but for /ping"
        );
    }
    let peer = Arc::new(peer);
    let timeout = settings.request_timeout;
    let service = service_fn(move |req| {
        let (api, peer) = (api.clone(), peer.clone());
        async move {
            if over_limit && req.uri().path() != PING {
                let refused = agent::Refusal::connection_limit();
                super::metrics::count_response(refused.status.as_u16());
                return Ok::<_, Infallible>(agent::respond(
                    refused.status,
                    refused.body,
                    refused.json,
                ));
            }
            Ok(api.handle(req, &peer, timeout).await)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(!over_limit)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        if e.is_parse() {
            // hyper refused the request itself (400, 414 URI too long, 431 too many or too
            // large headers) without the service seeing it: this line is its only trace.
            // hyper's own words, which never quote the request (it may hold the token).
            let why = e.to_string();
            if let Some(left_out) = REFUSED.due(&why) {
                tracing::warn!(target: "secretsfs::http::listen", error = %why, left_out, "a request could not be read and was refused");
            }
        } else {
            tracing::debug!(target: "secretsfs::http::listen", error = %e, "connection ended with an error");
        }
    }
    drop(permit);
}

/// Connections and requests refused before the service sees them, logged once a minute per
/// cause.
static REFUSED: std::sync::LazyLock<secretsfs_core::log_throttle::LogThrottle> =
    std::sync::LazyLock::new(Default::default);
