//! `secretsfs serve`.

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::support::cli;
use crate::support::fake_sm::Fault;
use crate::support::http::{
    Response, ServeFailed, Served, TOKEN_HEADER, get_as_nobody, public_tempdir,
};

use super::http::{
    Front, check_value, http_canaries, http_errors, path_route, query_route, value_of,
};
use super::search::{Logs, Needle, needles, redacted};
use super::seed::{
    FAULTS, Kind, PLAIN, POLICY, ROTATED_IN, SSRF_TOKEN, Source, inject_everywhere, main_canaries,
    text_of,
};
use super::{PAST_TTL, TTL, audit_sanity};

/// `secretsfs ARGS` (with `serve` in them) under the shared guard; a failure to start is
/// reported with the canaries redacted.
pub(super) async fn start_serve(
    args: &[String],
    env: &[(&str, &str)],
    needles: &[Needle],
) -> Served {
    Served::try_start_with_env(&cli::strs(args), env)
        .await
        .unwrap_or_else(|ServeFailed { why, stderr }| {
            panic!(
                "serve did not say where it listens ({}); stderr:\n{}",
                redacted(why.as_bytes(), needles),
                redacted(stderr.as_bytes(), needles)
            )
        })
}

/// SIGTERM: a failure unless `serve` exits 0.
pub(super) async fn stop_serve(served: &mut Served, failures: &mut Vec<String>) {
    match served.try_stop().await.map(|status| status.code()) {
        Ok(Some(0)) => {}
        Ok(code) => failures.push(format!("serve exited {code:?} on SIGTERM, want 0")),
        Err(why) => failures.push(why),
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
    logs.file("--audit-log of serve", &audit);
    // From a file (`file://PATH`, trimmed) in one variant, from the variable in the other.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_env = match kind {
        Kind::File => format!("file://{}", token_file.display()),
        Kind::Fake => token.clone(),
    };
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token_env.as_str())];
    let mut served = start_serve(&args, &env, &needles).await;
    logs.file("stderr of serve", &served.stderr_path());
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

    stop_serve(&mut served, &mut failures).await;
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
