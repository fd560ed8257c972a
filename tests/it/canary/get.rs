//! `secretsfs get`.

use std::path::Path;
use std::process::Output;

use futures::StreamExt as _;
use futures::future::join_all;

use crate::support::cli;
use crate::support::fake_sm::Op;

use super::differs;
use super::search::{Logs, needles};
use super::seed::{FAULTS, JSON_KEY, Kind, PLAIN, Source, error_selectors, main_canaries, reads};

/// `secretsfs SOURCE --log-level trace get SELECTOR` twice, at once: logging to stderr, and
/// with `--log-file` and `--audit-log` (shared by all runs, appended).
pub(super) async fn get_twice(
    source: &Source,
    selector: &str,
    log: &Path,
    audit: &Path,
) -> [Output; 2] {
    let mut to_stderr = source.args();
    to_stderr.extend(["--log-level".into(), "trace".into()]);
    let mut to_file = to_stderr.clone();
    to_file.extend([
        "--log-file".into(),
        log.display().to_string(),
        "--audit-log".into(),
        audit.display().to_string(),
    ]);
    for args in [&mut to_stderr, &mut to_file] {
        args.extend(["get".into(), selector.into()]);
    }
    let env = [("RUST_LOG", "trace")];
    let (to_stderr, to_file) = (cli::strs(&to_stderr), cli::strs(&to_file));
    let (a, b) = tokio::join!(
        cli::run_with_env(&to_stderr, &env),
        cli::run_with_env(&to_file, &env)
    );
    [a, b]
}

/// Records both runs' stderr as logs and checks their stdout against `want` (a value, or a
/// failure with nothing on stdout).
pub(super) fn check_get(
    source: &Source,
    selector: &str,
    outs: &[Output; 2],
    want: Option<&[u8]>,
    logs: &mut Logs,
    failures: &mut Vec<String>,
) {
    for (out, how) in outs.iter().zip(["to stderr", "to --log-file"]) {
        let what = format!("`get {selector}` ({}, logging {how})", source.name());
        logs.capture(format!("stderr of {what}"), &out.stderr);
        match want {
            Some(value) => {
                if out.status.code() != Some(0) {
                    failures.push(format!("{what}: exit {:?}", out.status.code()));
                } else if let Some(f) = differs(&what, &out.stdout, value) {
                    failures.push(f);
                }
            }
            None => {
                if out.status.success() || !out.stdout.is_empty() {
                    failures.push(format!(
                        "{what}: exit {:?} with {} bytes on stdout, want a failure",
                        out.status.code(),
                        out.stdout.len()
                    ));
                }
            }
        }
    }
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_get() {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Logs::default();
    let mut failures = Vec::new();
    for kind in [Kind::File, Kind::Fake] {
        let source = Source::new(kind, &canaries);
        let log = dir.path().join(format!("get-{kind:?}.log"));
        let audit = dir.path().join(format!("get-{kind:?}-audit.jsonl"));
        logs.file(format!("--log-file of get ({})", source.name()), &log);
        logs.file(format!("--audit-log of get ({})", source.name()), &audit);

        let mut cases: Vec<(String, Option<Vec<u8>>)> = reads(&canaries)
            .into_iter()
            .map(|(selector, value)| (selector, Some(value)))
            .collect();
        cases.push((
            source.arn("canary/plain"),
            Some(canaries[PLAIN].bytes.clone()),
        ));
        cases.push((
            format!("{}:password", source.arn("canary/json")),
            Some(canaries[JSON_KEY].bytes.clone()),
        ));
        cases.extend(error_selectors().into_iter().map(|s| (s, None)));
        cases.push(("bad name!".to_owned(), None));
        // A few at a time: dozens of SDK clients starting at once on a small machine can miss
        // the call deadline.
        let runs: Vec<[Output; 2]> = futures::stream::iter(&cases)
            .map(|(selector, _)| get_twice(&source, selector, &log, &audit))
            .buffered(4)
            .collect()
            .await;
        for ((selector, want), outs) in cases.iter().zip(&runs) {
            check_get(
                &source,
                selector,
                outs,
                want.as_deref(),
                &mut logs,
                &mut failures,
            );
        }

        if let Some(fake) = source.fake() {
            for fault in FAULTS {
                fake.inject(Op::GetSecretValue, fault, usize::MAX);
                let selectors = ["canary/json:password", "canary/binary", "canary/escaped"];
                let runs = join_all(selectors.map(|s| get_twice(&source, s, &log, &audit))).await;
                fake.clear_faults();
                for (selector, outs) in selectors.iter().zip(&runs) {
                    let label = format!("{selector} under {fault:?}");
                    check_get(&source, &label, outs, None, &mut logs, &mut failures);
                }
            }
            let traced = runs
                .iter()
                .any(|[out, _]| String::from_utf8_lossy(&out.stderr).contains("TRACE"));
            assert!(traced, "--log-level trace logged no TRACE line to stderr");
        }
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
