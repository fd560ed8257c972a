//! The HTTP API under test: `secretsfs serve` as a child process under a guard that stops
//! exactly its own process (a mount's HTTP API is reached through `support::mount::Mounted`),
//! and a small raw HTTP/1.1 client over TCP or a Unix socket that reads exactly one response
//! per request, so keep-alive connections can be reused and what the server sends is seen byte
//! for byte.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdout};

use super::cli::{DEADLINE, LOG_LEVEL, SECRETSFS, wrapped_command};
use super::nobody::as_nobody;

/// The SSRF token every `serve` gets in `AWS_TOKEN` unless a test says otherwise.
pub const TOKEN: &str = "secretsfs-test-token-8c1e";
/// The agent's first token header.
pub const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A temporary directory under /tmp with mode 0755, so that another uid can reach what is in
/// it (a socket, a mountpoint) and is decided by secretsfs, not by the directory.
pub fn public_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A running `secretsfs ... serve`, killed (by its own pid) when dropped.
pub struct Served {
    child: Child,
    /// Where the TCP listener is, from the line `serve` prints when ready.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    // Kept open: the child must not meet a closed stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Served {
    /// `secretsfs --log-level .. ARGS` (ARGS hold the source flags and `serve ...`) with
    /// `AWS_TOKEN` set to [`TOKEN`]; returns once it printed where it listens.
    pub async fn start(args: &[&str]) -> Served {
        Served::start_with_env(args, &[("AWS_TOKEN", TOKEN)]).await
    }

    /// Like [`Served::start`], with `env` instead of the default token.
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Served {
        Served::try_start_with_env(args, env)
            .await
            .unwrap_or_else(|ServeFailed { why, stderr }| {
                panic!("secretsfs {args:?} did not say where it listens ({why}); stderr:\n{stderr}")
            })
    }

    /// Like [`Served::start_with_env`], but a `serve` that does not say where it listens is
    /// handed back (once its process is gone) instead of panicking, for a test that words the
    /// failure itself (the canaries redact it). `--log-level` is [`LOG_LEVEL`] unless `args`
    /// have their own.
    pub async fn try_start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Served, ServeFailed> {
        Served::try_start_wrapped(&[], args, env).await
    }

    /// Like [`Served::start`], run through `wrapper` (see [`wrapped_command`]), for instance
    /// without a capability or under a resource limit.
    pub async fn start_wrapped(wrapper: &[&str], args: &[&str]) -> Served {
        Served::try_start_wrapped(wrapper, args, &[("AWS_TOKEN", TOKEN)])
            .await
            .unwrap_or_else(|ServeFailed { why, stderr }| {
                panic!("{wrapper:?} secretsfs {args:?} did not say where it listens ({why}); stderr:\n{stderr}")
            })
    }

    async fn try_start_wrapped(
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Served, ServeFailed> {
        let dir = tempfile::tempdir().expect("temp dir");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut full: Vec<&str> = Vec::new();
        if !args.contains(&"--log-level") {
            full.extend(["--log-level", LOG_LEVEL]);
        }
        full.extend(args);
        let mut child = wrapped_command(wrapper, &full, env)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SECRETSFS}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, stdout.read_line(&mut line)).await;
        let ready = match read {
            Ok(Ok(n)) if n > 0 => parse_ready_line(&line),
            _ => Err(format!("{read:?}")),
        };
        match ready {
            Ok(addr) => Ok(Served {
                child,
                addr,
                dir,
                _stdout: stdout,
            }),
            Err(why) => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
                Err(ServeFailed {
                    why,
                    stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                })
            }
        }
    }

    /// The process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Where the process's stderr goes.
    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// What the process logged so far (stderr).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// SIGHUP (by its own pid): `serve` reads its config file again.
    pub fn hangup(&self) {
        let pid = self.child.id().expect("serve is running");
        kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
    }

    /// Waits until `needle` is in stderr `count` times (10 s at most).
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.stderr().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the process: it must exit 0. Returns its stderr.
    pub async fn stop(mut self) -> String {
        let status = self.try_stop().await.unwrap_or_else(|why| panic!("{why}"));
        let stderr = self.stderr();
        assert_eq!(
            status.code(),
            Some(0),
            "serve's exit on SIGTERM; stderr:\n{stderr}"
        );
        stderr
    }

    /// SIGTERM (by its own pid), then waits for the process: how it exited, or why it could
    /// not be stopped so.
    pub async fn try_stop(&mut self) -> Result<ExitStatus, String> {
        let pid = self.child.id().ok_or("serve was no longer running")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM)
            .map_err(|e| format!("SIGTERM to serve: {e}"))?;
        tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .map_err(|_| format!("serve did not exit within {STOP_TIMEOUT:?} of SIGTERM"))?
            .map_err(|e| format!("waiting for serve: {e}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // Only this child, by its own handle; then reap it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.start_kill();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A `serve` that did not say where it listens: why, and what it wrote to stderr. Its process
/// is gone.
pub struct ServeFailed {
    pub why: String,
    pub stderr: String,
}

/// `secretsfs/<version> listening on http://127.0.0.1:PORT`.
fn parse_ready_line(line: &str) -> Result<SocketAddr, String> {
    let expected_start = concat!(
        "secretsfs/",
        env!("CARGO_PKG_VERSION"),
        " listening on http://"
    );
    let rest = line
        .trim_end_matches('\n')
        .strip_prefix(expected_start)
        .ok_or_else(|| format!("unexpected first line on stdout: {line:?}"))?;
    rest.parse()
        .map_err(|e| format!("no address in {line:?}: {e}"))
}

/// One HTTP response, as received.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: the body is not JSON: {e}", self.status))
    }

    /// The body for a failure message: error bodies as they are, a body carrying a secret
    /// only by its size.
    pub fn describe(&self) -> String {
        let text = self.text();
        if text.contains("\"SecretString\"") || text.contains("\"SecretBinary\"") {
            format!("<a secret body of {} bytes>", self.body.len())
        } else {
            format!("{text:?}")
        }
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One client connection; requests on it are sent one after the other (keep-alive).
pub struct Conn {
    io: BufReader<Box<dyn Io>>,
    /// For every request: from writing it to the end of its response.
    pub timeout: Duration,
}

impl Conn {
    pub async fn tcp(addr: SocketAddr) -> Conn {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        Conn::over(Box::new(stream))
    }

    pub async fn unix(path: &Path) -> Conn {
        let stream = UnixStream::connect(path)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
        Conn::over(Box::new(stream))
    }

    fn over(io: Box<dyn Io>) -> Conn {
        Conn {
            io: BufReader::new(io),
            timeout: DEADLINE,
        }
    }

    /// Sends `METHOD TARGET HTTP/1.1` with `headers` and reads its response.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(method, target, headers))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete response to {method} {target} within {timeout:?}"),
                )
            })?
    }

    /// GET, panicking on a connection failure.
    pub async fn get(&mut self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", target, headers)
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"))
    }

    async fn exchange(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.io.get_mut().write_all(request.as_bytes()).await?;
        self.io.get_mut().flush().await?;
        self.read_response(method).await
    }

    /// Sends `request` as it is (any bytes, even ones no `&str` holds) and reads the response
    /// to a GET.
    pub async fn send_raw(&mut self, request: &[u8]) -> std::io::Result<Response> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.io.get_mut().write_all(request).await?;
            self.io.get_mut().flush().await?;
            self.read_response("GET").await
        })
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete response within {timeout:?}"),
            )
        })?
    }

    async fn read_response(&mut self, method: &str) -> std::io::Result<Response> {
        let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let mut status_line = String::new();
        if self.io.read_line(&mut status_line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before a response",
            ));
        }
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.io.read_line(&mut line).await? == 0 {
                return Err(bad("the connection closed inside the response head".into()));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            return Err(bad(
                "a chunked response; this client reads content-length".into()
            ));
        }
        match response.header("content-length") {
            Some(length) => {
                let length: usize = length
                    .parse()
                    .map_err(|_| bad(format!("bad content-length {length:?}")))?;
                let mut body = vec![0; length];
                self.io.read_exact(&mut body).await?;
                response.body = body;
            }
            None => {
                self.io.read_to_end(&mut response.body).await?;
            }
        }
        Ok(response)
    }

    /// Waits up to `deadline` for the server to close the connection: `Ok(bytes received)`
    /// once it did (EOF or a reset), `Err` if it is still open.
    pub async fn closed_within(&mut self, deadline: Duration) -> Result<Vec<u8>, ()> {
        let mut received = Vec::new();
        let outcome = tokio::time::timeout(deadline, async {
            let mut buf = [0u8; 1024];
            loop {
                match self.io.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        outcome.map(|()| received).map_err(|_| ())
    }
}

/// One request on a new TCP connection, with the token.
pub async fn get(addr: SocketAddr, target: &str) -> Response {
    Conn::tcp(addr)
        .await
        .get(target, &[(TOKEN_HEADER, TOKEN)])
        .await
}

/// `GET TARGET` over the Unix socket at `socket` as uid 65534 in `groups` (none when empty),
/// through a python3 client: the status and the body.
pub fn get_as_nobody(socket: &Path, target: &str, groups: &[u32]) -> (u16, Vec<u8>) {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.buffer.write(head.split(b" ")[1] + b"\n" + body)
"#;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = as_nobody(
        groups,
        python,
        &[
            "-c".as_ref(),
            CLIENT.as_ref(),
            socket.as_os_str(),
            target.as_ref(),
        ],
    );
    assert!(
        out.status.success(),
        "the client as uid 65534 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let newline = out.stdout.iter().position(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&out.stdout[..newline])
        .unwrap()
        .parse()
        .unwrap();
    (status, out.stdout[newline + 1..].to_vec())
}
