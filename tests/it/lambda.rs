//! `secretsfs` as a Lambda extension, run as Lambda runs one (no arguments,
//! `AWS_LAMBDA_RUNTIME_API` set) against a fake Extensions API, with moto behind a recording
//! proxy: register, Init (listening before the first event, the prefetch), an INVOKE with a
//! client of the AWS extension's routes and header in between, a freeze past the TTL,
//! SHUTDOWN, and the init and exit error reports.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::cli::command;
use crate::support::counting_proxy::CountingProxy;
use crate::support::fake_lambda::FakeLambda;
use crate::support::http::Conn;
use crate::support::moto::{Moto, create_string, put_parameter};

const SESSION_TOKEN: &str = "function-session-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary with no arguments, in a function's environment.
fn extension(
    lambda: &FakeLambda,
    endpoint: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let runtime_api = lambda.runtime_api();
    let port = port.to_string();
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.as_str()),
        ("SECRETS_MANAGER_TTL", "2"),
        ("SSM_PARAMETER_STORE_TTL", "2"),
    ];
    env.extend(extra);
    command(&[], &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn exit_code(child: &mut tokio::process::Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the extension exits")
        .unwrap()
        .code()
}

#[tokio::test]
async fn register_init_invoke_freeze_and_shutdown_as_lambda_runs_an_extension() {
    let moto = Moto::start();
    let proxy = CountingProxy::start(&moto.endpoint_url());
    create_string(&moto.client().await, "prod/db", r#"{"password":"pw"}"#).await;
    put_parameter(
        &moto.ssm_client().await,
        "/prod/flag",
        "on",
        aws_sdk_ssm::types::ParameterType::SecureString,
    )
    .await;
    let lambda = FakeLambda::start();
    let port = free_port();
    lambda.probe_at_next(port);
    let mut child = extension(
        &lambda,
        &proxy.endpoint_url(),
        port,
        &[
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("SECRETSFS_PREFETCH", "prod/db"),
        ],
    );
    lambda.wait_for_next(1).await;
    let registered = lambda.registered();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].0, "secretsfs", "the executable's file name");
    let events: serde_json::Value = serde_json::from_str(&registered[0].1).unwrap();
    assert_eq!(events["events"], serde_json::json!(["INVOKE", "SHUTDOWN"]));
    assert_eq!(
        lambda.listening_at_next(),
        [true],
        "listening before the first event"
    );
    // Prefetched during Init.
    assert_eq!(proxy.calls("GetSecretValue"), 1);

    lambda.invoke();
    lambda.wait_for_next(2).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let token = [("X-Aws-Parameters-Secrets-Token", SESSION_TOKEN)];
    let secret = Conn::tcp(addr)
        .await
        .get("/secretsmanager/get?secretId=prod/db", &token)
        .await;
    assert_eq!(secret.status, 200);
    assert_eq!(secret.json()["SecretString"], r#"{"password":"pw"}"#);
    assert_eq!(proxy.calls("GetSecretValue"), 1, "served from the prefetch");
    let parameter = Conn::tcp(addr)
        .await
        .get(
            "/systemsmanager/parameters/get?name=%2Fprod%2Fflag&withDecryption=true",
            &token,
        )
        .await;
    assert_eq!(parameter.status, 200);
    assert_eq!(parameter.json()["Parameter"]["Value"], "on");
    let wrong = Conn::tcp(addr)
        .await
        .get(
            "/secretsmanager/get?secretId=prod/db",
            &[("X-Aws-Parameters-Secrets-Token", "x")],
        )
        .await;
    assert_eq!(
        wrong.status, 403,
        "only the function's session token is taken"
    );

    // Frozen past the TTL (SIGSTOP: nothing of the extension runs), then thawed by an INVOKE:
    // no value is served as fresh on the old fetch.
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        proxy.calls("GetSecretValue"),
        1,
        "nothing runs while frozen"
    );
    kill(pid, Signal::SIGCONT).unwrap();
    lambda.invoke();
    lambda.wait_for_next(3).await;
    let secret = Conn::tcp(addr)
        .await
        .get("/secretsmanager/get?secretId=prod/db", &token)
        .await;
    assert_eq!(secret.status, 200);
    assert_eq!(
        proxy.calls("GetSecretValue"),
        2,
        "fetched again after the thaw, once"
    );

    let asked = Instant::now();
    lambda.shutdown();
    assert_eq!(exit_code(&mut child).await, Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "within SHUTDOWN's deadline"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the port is closed"
    );
    assert_eq!(lambda.unidentified(), 0);
    assert!(lambda.reports().is_empty());
}

#[tokio::test]
async fn a_failed_init_and_a_failed_event_are_reported_to_lambda() {
    let moto = Moto::start();
    let lambda = FakeLambda::start();
    // No AWS_SESSION_TOKEN: the API cannot take requests safely, so Init fails.
    let mut child = extension(&lambda, &moto.endpoint_url(), free_port(), &[]);
    assert_eq!(exit_code(&mut child).await, Some(78));
    let reports = lambda.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, "/2020-01-01/extension/init/error");
    assert_eq!(reports[0].1, "Extension.ConfigurationError");
    let body: serde_json::Value = serde_json::from_str(&reports[0].2).unwrap();
    assert_eq!(body["errorType"], "Extension.ConfigurationError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("AWS_SESSION_TOKEN")
    );

    let lambda = FakeLambda::start();
    lambda.fail_next();
    let mut child = extension(
        &lambda,
        &moto.endpoint_url(),
        free_port(),
        &[("AWS_SESSION_TOKEN", SESSION_TOKEN)],
    );
    assert_eq!(exit_code(&mut child).await, Some(69));
    let reports = lambda.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].0, "/2020-01-01/extension/exit/error");
    assert_eq!(reports[0].1, "Extension.Unavailable");
}

/// The same life against lambda-simulator (a simulator the project does not write), which
/// freezes the extension with SIGSTOP between invocations as Lambda does; the test stands in
/// for the function's runtime.
#[tokio::test]
async fn under_lambda_simulator_frozen_between_invocations() {
    use lambda_simulator::{FreezeMode, ShutdownReason, Simulator};

    let moto = Moto::start();
    let proxy = CountingProxy::start(&moto.endpoint_url());
    create_string(&moto.client().await, "prod/db", "v1").await;
    let simulator = Simulator::builder()
        .function_name("f")
        .freeze_mode(FreezeMode::Process)
        .build()
        .await
        .unwrap();
    let runtime_api = simulator.runtime_api_url().replace("http://", "");
    let port = free_port();
    let port_text = port.to_string();
    let endpoint = proxy.endpoint_url();
    let mut child = command(
        &[],
        &[
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port_text.as_str()),
            ("SECRETS_MANAGER_TTL", "2"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    simulator.register_freeze_pid(child.id().unwrap());
    simulator
        .wait_for(
            || async { simulator.extension_count().await >= 1 },
            Duration::from_secs(20),
        )
        .await
        .expect("the extension registers");
    let extensions = simulator.get_registered_extensions().await;
    assert_eq!(extensions[0].name, "secretsfs");

    let lambda_addr = simulator.addr();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Init ends when the extension listens and asks for its first event; the simulator hands
    // the runtime its invocation without waiting for that, so the test waits.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the extension did not listen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = [("X-Aws-Parameters-Secrets-Token", SESSION_TOKEN)];
    let mut reads = Vec::new();
    for round in 0..2 {
        let request_id = simulator
            .enqueue_payload(serde_json::json!({ "round": round }))
            .await;
        // The runtime's side: take the invocation, read a secret as a function does, answer.
        let next = Conn::tcp(lambda_addr)
            .await
            .get("/2018-06-01/runtime/invocation/next", &[])
            .await;
        assert_eq!(next.status, 200);
        let secret = Conn::tcp(addr)
            .await
            .get("/secretsmanager/get?secretId=prod/db", &token)
            .await;
        assert_eq!(secret.status, 200);
        reads.push(proxy.calls("GetSecretValue"));
        let done = Conn::tcp(lambda_addr)
            .await
            .send_raw(
                format!(
                    "POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n\
                     Host: localhost\r\ncontent-type: application/json\r\n\
                     content-length: 2\r\n\r\n{{}}"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        assert!(done.status < 300, "{}", done.status);
        simulator
            .wait_for_frozen(Duration::from_secs(10))
            .await
            .expect("frozen after the invocation");
        // Frozen past the TTL.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // The second invocation, after a freeze past the TTL, fetched the value again, once.
    assert_eq!(reads, [1, 2]);
    simulator.graceful_shutdown(ShutdownReason::Spindown).await;
    assert_eq!(exit_code(&mut child).await, Some(0));
}
