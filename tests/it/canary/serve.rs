//! `secretsfs serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::join_all;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use crate::support::cli::{self, DEADLINE, SECRETSFS};
use crate::support::fake_sm::Fault;
use crate::support::http::{Response, TOKEN_HEADER, public_tempdir};

use super::http::{
    Front, check_value, get_as_nobody, http_canaries, http_errors, path_route, query_route,
    value_of,
};
use super::search::{Logs, Needle, needles, redacted};
use super::seed::{
    FAULTS, Kind, PLAIN, POLICY, ROTATED_IN, SSRF_TOKEN, Source, inject_everywhere, main_canaries,
    text_of,
};
use super::{PAST_TTL, STOP_TIMEOUT, TTL, audit_sanity};

/// `secretsfs ... serve` under a guard that kills exactly this child.
pub(super) struct Serve {
    child: Child,
    pub(super) addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Serve {
    pub(super) async fn start(
        args: &[String],
        env: &[(&str, &str)],
        stderr: &Path,
        needles: &[Needle],
    ) -> Serve {
        let file = std::fs::File::create(stderr).unwrap();
        let mut child = cli::command(&cli::strs(args), env)
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SECRETSFS}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, stdout.read_line(&mut line)).await;
        let addr = line
            .trim_end()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok());
        match (read, addr) {
            (Ok(Ok(n)), Some(addr)) if n > 0 => Serve {
                child,
                addr,
                _stdout: stdout,
            },
            _ => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
                panic!(
                    "serve did not say where it listens; stderr:\n{}",
                    redacted(&std::fs::read(stderr).unwrap_or_default(), needles)
                );
            }
        }
    }

    /// SIGTERM by pid; the exit code.
    pub(super) async fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id()?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).ok()?;
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.start_kill();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

async fn serve_suite(kind: Kind, log_to_file: bool) {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let token = text_of(&canaries, SSRF_TOKEN).to_owned();
    let source = Source::new(kind, &canaries);
    let dir = public_tempdir();
    let socket = dir.path().join("api.sock");
    let log = dir.path().join("serve.log");
    let stderr = dir.path().join("stderr.log");
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, POLICY).unwrap();

    let mut args = source.args();
    args.extend(
        [
            "--log-level",
            "trace",
            "--ttl",
            TTL,
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    if matches!(kind, Kind::File) {
        // Evictions (and their log lines) all along.
        args.extend(["--cache-size".to_owned(), "3".to_owned()]);
    }
    let mut logs = Logs::default();
    if log_to_file {
        args.extend(["--log-file".to_owned(), log.display().to_string()]);
        logs.file("--log-file of serve", &log);
    }
    args.extend(
        [
            "serve",
            "--http-port",
            "0",
            "--http-socket",
            socket.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    logs.file("stderr of serve", &stderr);
    logs.file("--audit-log of serve", &audit);
    // From a file (`file://PATH`, trimmed) in one variant, from the variable in the other.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_env = match kind {
        Kind::File => format!("file://{}", token_file.display()),
        Kind::Fake => token.clone(),
    };
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token_env.as_str())];
    let mut served = Serve::start(&args, &env, &stderr, &needles).await;
    let auth = [(TOKEN_HEADER, token.as_str())];
    let tcp = Front::Tcp(served.addr);
    let unix = Front::Unix(socket.clone());
    let mut failures = Vec::new();
    let mut bodies = Vec::new();

    http_canaries(&tcp, &token, &canaries, &mut failures).await;
    http_canaries(&unix, &token, &canaries, &mut failures).await;
    http_errors(&tcp, &token, &mut bodies, &mut failures).await;
    http_errors(&unix, &token, &mut bodies, &mut failures).await;

    // uid 65534 on the socket: denied by the policy, then allowed through group 4242.
    for target in [
        query_route("canary/json", ""),
        path_route("canary/binary", ""),
    ] {
        let (status, body) = get_as_nobody(&socket, &target, &[]);
        if status != 403 {
            failures.push(format!("{target} as uid 65534: {status}, want 403"));
        }
        bodies.push((format!("body of the {status} answer to uid 65534"), body));
    }
    let (status, body) = get_as_nobody(&socket, &path_route("canary/plain", ""), &[4242]);
    let allowed = Response {
        status,
        headers: Vec::new(),
        body,
    };
    check_value(
        "canary/plain as uid 65534 in group 4242",
        &allowed,
        &canaries[PLAIN].bytes,
        &mut failures,
    );

    // Upstream faults: a stale value while throttled, then each fault answered as an error.
    if let Some(fake) = source.fake() {
        inject_everywhere(fake, Fault::Throttling);
        tokio::time::sleep(PAST_TTL).await;
        let r = tcp
            .send("GET", &query_route("canary/plain", ""), &auth)
            .await;
        check_value(
            "canary/plain served stale",
            &r,
            &canaries[PLAIN].bytes,
            &mut failures,
        );
        fake.clear_faults();
        for fault in FAULTS {
            inject_everywhere(fake, fault);
            let targets = [
                query_route("canary/json", "refreshNow=true"),
                path_route("canary/binary", "refreshNow=true"),
                path_route("canary/escaped", "refreshNow=true"),
            ];
            let answers = join_all(targets.iter().map(|t| tcp.send("GET", t, &auth))).await;
            fake.clear_faults();
            for (target, r) in targets.iter().zip(answers) {
                if r.status == 200 {
                    failures.push(format!("{target} under {fault:?}: 200, want an error"));
                }
                bodies.push((
                    format!(
                        "body of the {} answer to {target} under {fault:?}",
                        r.status
                    ),
                    r.body,
                ));
            }
        }
    } else {
        source.break_file(&canaries);
        let r = tcp
            .send(
                "GET",
                &query_route("canary/plain", "refreshNow=true"),
                &auth,
            )
            .await;
        check_value(
            "canary/plain with the file broken",
            &r,
            &canaries[PLAIN].bytes,
            &mut failures,
        );
    }

    // A rotation: the new value within a few TTLs, the old one as AWSPREVIOUS.
    source.rotate(&canaries);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = tcp
            .send("GET", &path_route("canary/plain", ""), &auth)
            .await;
        if value_of(&r).is_some_and(|v| v == canaries[ROTATED_IN].bytes) {
            break;
        }
        if Instant::now() > deadline {
            failures.push("canary/plain never showed the rotated value".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = unix
        .send(
            "GET",
            &path_route("canary/plain", "versionStage=AWSPREVIOUS"),
            &[],
        )
        .await;
    check_value(
        "canary/plain AWSPREVIOUS",
        &r,
        &canaries[PLAIN].bytes,
        &mut failures,
    );

    let metrics = tcp.send("GET", "/metrics", &[]).await;
    if metrics.status != 200 {
        failures.push(format!("/metrics: {}", metrics.status));
    }
    logs.capture("the /metrics body", &metrics.body);
    for (label, body) in bodies {
        logs.capture(label, &body);
    }

    let code = served.stop().await;
    if code != Some(0) {
        failures.push(format!("serve exited {code:?} on SIGTERM, want 0"));
    }
    let tally = audit_sanity(&audit, &mut failures);
    if !tally.keys().any(|k| k.starts_with("http-socket/denied/")) {
        failures.push("no denial on the Unix socket in the audit log".to_owned());
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_serve_from_secrets_manager() {
    serve_suite(Kind::Fake, false).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_log_file_of_serve_from_a_file() {
    serve_suite(Kind::File, true).await;
}
