//! A private moto server (AWS emulator) per test.
//!
//! `scripts/test.sh` installs moto and points `SECRETSFS_MOTO_SERVER` at its
//! `moto_server` executable. Each [`Moto`] is a separate process, so tests
//! never see each other's secrets and can run in parallel.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

const SERVER_ENV: &str = "SECRETSFS_MOTO_SERVER";
const START_DEADLINE: Duration = Duration::from_secs(30);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 30;

pub struct Moto {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl Moto {
    /// Starts a fresh moto server on a free loopback port and waits until it
    /// answers HTTP.
    ///
    /// Panics (rather than skipping the test) when `SECRETSFS_MOTO_SERVER` is
    /// unset: a silently skipped tier would look like a passing one.
    pub fn start() -> Moto {
        let Some(server) = std::env::var_os(SERVER_ENV) else {
            panic!(
                "{SERVER_ENV} is not set: run the tests with scripts/test.sh, which installs moto"
            );
        };
        let server = PathBuf::from(server);

        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log_path = log_path(port);
            match spawn_and_wait(&server, port, &log_path) {
                Ok(child) => {
                    return Moto {
                        child,
                        port,
                        log_path,
                    };
                }
                // Another process took the port between our probe and moto's
                // bind; a different port will do.
                Err(StartError::PortTaken) => continue,
                Err(StartError::Failed(why)) => panic!(
                    "moto_server on port {port} {why}; last lines of {}:\n{}",
                    log_path.display(),
                    log_tail(&log_path)
                ),
            }
        }
        panic!("moto_server: no free port after {PORT_ATTEMPTS} attempts");
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A Secrets Manager client for this server that ignores the ambient AWS
    /// configuration (profiles, env credentials, IMDS).
    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("x", "x", None, None, "moto-test"))
            .endpoint_url(self.endpoint_url())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    /// A Parameter Store client for this server, like [`Moto::client`].
    pub async fn ssm_client(&self) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("x", "x", None, None, "moto-test"))
            .endpoint_url(self.endpoint_url())
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Only the process this handle started; errors mean it already exited.
        kill(&mut self.child);
        // The log only matters when the test failed.
        if thread::panicking() {
            eprintln!("moto log kept at {}", self.log_path.display());
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

enum StartError {
    PortTaken,
    Failed(String),
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the bound port: {e}"))
        .port()
}

/// Under target/ so the log outlives a failing test; named by port because
/// no two live servers share one.
fn log_path(port: u16) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-logs");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir.join(format!("moto-{port}.log"))
}

fn spawn_and_wait(server: &Path, port: u16, log_path: &Path) -> Result<Child, StartError> {
    let log = File::create(log_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
    let log_err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("cannot duplicate the moto log handle: {e}"));
    let mut child = Command::new(server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // Unbuffered so the log tail shown on failure is complete.
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); run the tests with scripts/test.sh, which installs moto",
                server.display()
            )
        });

    let deadline = Instant::now() + START_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = fs::read_to_string(log_path).unwrap_or_default();
                return Err(if log.contains("Address already in use") {
                    StartError::PortTaken
                } else {
                    StartError::Failed(format!("exited during startup ({status})"))
                });
            }
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(StartError::Failed(format!("cannot be polled: {e}")));
            }
        }
        if answers_http(port) && bound_by_child(log_path, port) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(StartError::Failed(format!(
                "did not answer HTTP within {}s",
                START_DEADLINE.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Werkzeug logs this only after its own bind succeeded, so an HTTP answer
/// is known to come from our child and not from whoever took the port.
fn bound_by_child(log_path: &Path, port: u16) -> bool {
    fs::read_to_string(log_path)
        .is_ok_and(|log| log.contains(&format!("Running on http://127.0.0.1:{port}")))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Any HTTP status line counts: the listening socket exists before Flask
/// serves requests, so a bare TCP accept is not enough.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = Duration::from_secs(1);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let request =
        format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

fn log_tail(path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(log unreadable: {e})"),
    }
}

/// A secret moto created: what a test compares reads against.
pub struct Created {
    pub arn: String,
    pub version_id: String,
}

/// Creates a string secret in moto.
pub async fn create_string(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> Created {
    use aws_sdk_secretsmanager::error::DisplayErrorContext;
    let out = sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {}", DisplayErrorContext(&e)));
    Created {
        arn: out
            .arn()
            .unwrap_or_else(|| panic!("moto returned no ARN for {name}"))
            .to_owned(),
        version_id: out
            .version_id()
            .unwrap_or_else(|| panic!("moto returned no version id for {name}"))
            .to_owned(),
    }
}

/// Puts a new AWSCURRENT string value (a rotation); its version id.
pub async fn put_string(sm: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    use aws_sdk_secretsmanager::error::DisplayErrorContext;
    let out = sm
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "putting a new value into {name}: {}",
                DisplayErrorContext(&e)
            )
        });
    out.version_id()
        .unwrap_or_else(|| panic!("moto returned no version id for {name}"))
        .to_owned()
}

/// Puts a parameter in moto (a new version when it exists); its version number.
pub async fn put_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
    kind: aws_sdk_ssm::types::ParameterType,
) -> i64 {
    use aws_sdk_ssm::error::DisplayErrorContext;
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("putting {name}: {}", DisplayErrorContext(&e)))
        .version
}
