//! The mount.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::support::cli;
use crate::support::fake_sm::Fault;
use crate::support::http::public_tempdir;
use crate::support::mount::{Http, MountFailed, Mounted};
use crate::support::nobody::{as_nobody, cat_as_nobody};

use super::http::{Front, http_canaries, http_errors};
use super::search::{Logs, needles, redacted};
use super::seed::{
    Kind, NAMES, PLAIN, POLICY, ROTATED_IN, SSRF_TOKEN, Source, error_selectors, inject_everywhere,
    main_canaries, reads, text_of,
};
use super::{PAST_TTL, TTL, audit_sanity, differs, eventually};

/// Every entry under `dir`, stat'ed as `ls -lR` would.
fn walk(dir: &Path, seen: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        *seen += 1;
        if let Ok(meta) = std::fs::symlink_metadata(entry.path())
            && meta.is_dir()
        {
            walk(&entry.path(), seen);
        }
    }
}

fn read_as_root(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

async fn mount_suite(kind: Kind, kernel_cache: bool) {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let token = text_of(&canaries, SSRF_TOKEN).to_owned();
    let source = Source::new(kind, &canaries);
    let dir = public_tempdir();
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, POLICY).unwrap();

    let mut global = source.args();
    global.extend(
        [
            "--log-level",
            "trace",
            "--ttl",
            TTL,
            "--dir-mode",
            "0555",
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    if matches!(kind, Kind::File) && !kernel_cache {
        // Evictions (and their log lines) all along.
        global.extend(["--cache-size".to_owned(), "3".to_owned()]);
    }
    let mut mount_args = vec!["--http-port", "0"];
    if !kernel_cache {
        mount_args.push("--no-kernel-cache");
    }
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token.as_str())];
    let (mut mount, out) =
        Mounted::try_start_with(&cli::strs(&global), &mount_args, &env, Http::AsConfigured)
            .await
            .unwrap_or_else(|MountFailed { out, log }| {
                panic!(
                    "mount: exit {:?}, stderr {}\nlog:\n{}",
                    out.status.code(),
                    redacted(&out.stderr, &needles),
                    redacted(log.as_bytes(), &needles)
                )
            });
    let mut logs = Logs::default();
    logs.file("--log-file of the mount", mount.log_path());
    logs.file("--audit-log of the mount", &audit);
    logs.capture("stderr of `mount`", &out.stderr);
    logs.capture("stdout of `mount`", &out.stdout);
    let mut failures = Vec::new();

    // Every canary file and selector, as root.
    let read_all = |failures: &mut Vec<String>| {
        for (selector, want) in reads(&canaries) {
            match read_as_root(&mount.path(&selector)) {
                Ok(got) => failures.extend(differs(&selector, &got, &want)),
                Err(e) => failures.push(format!("reading {selector}: {e}")),
            }
        }
    };
    read_all(&mut failures);

    // Listings: the directory of canaries, and everything stat'ed as `ls -lR` does.
    let listed: BTreeSet<String> = std::fs::read_dir(mount.path("canary"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let expected: BTreeSet<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    if listed != expected {
        failures.push(format!("canary/ lists {listed:?}, want {expected:?}"));
    }
    let mut seen = 0;
    walk(&mount.mnt, &mut seen);
    if seen < NAMES.len() + 1 {
        failures.push(format!("walking the mount saw {seen} entries"));
    }

    // Error paths: missing keys, secrets, stages and versions, invalid selectors, a write.
    for selector in error_selectors() {
        if read_as_root(&mount.path(&selector)).is_ok() {
            failures.push(format!("reading {selector} succeeded, want an error"));
        }
    }
    if std::fs::OpenOptions::new()
        .write(true)
        .open(mount.path("canary/plain"))
        .is_ok()
    {
        failures.push("opening canary/plain for writing succeeded".to_owned());
    }

    // uid 65534: denied (EACCES), then allowed through group 4242. Names root looked up are
    // denied by the kernel from their cached attributes; fresh ones reach secretsfs, whose
    // policy check denies (and audits) them.
    for selector in [
        "canary/json",
        "canary/json:password",
        "canary/binary",
        "canary/json:username",
        "canary/binary::AWSCURRENT",
        "canary/escaped-plain::AWSCURRENT",
        "canary/versions:password:AWSCURRENT",
    ] {
        let out = cat_as_nobody(&mount.path(selector), &[]);
        if out.status.success() {
            failures.push(format!("uid 65534 read {selector}, want EACCES"));
        }
    }
    as_nobody(&[], "ls", &["-lR".as_ref(), mount.mnt.as_os_str()]);
    let out = cat_as_nobody(&mount.path("canary/plain"), &[4242]);
    if out.status.success() {
        failures.extend(differs(
            "canary/plain as uid 65534 in group 4242",
            &out.stdout,
            &canaries[PLAIN].bytes,
        ));
    } else {
        failures.push(format!(
            "uid 65534 in group 4242 could not read canary/plain: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }

    // The mount's own HTTP API.
    match mount.http_addr() {
        Some(addr) => {
            let mut bodies = Vec::new();
            http_canaries(&Front::Tcp(addr), &token, &canaries, &mut failures).await;
            http_errors(&Front::Tcp(addr), &token, &mut bodies, &mut failures).await;
            for (label, body) in bodies {
                logs.capture(format!("{label} (the mount's HTTP API)"), &body);
            }
        }
        None => failures.push("no 'HTTP API listening' line in the mount's log".to_owned()),
    }

    // Upstream faults (stale values, then errors), or a broken secrets file.
    if let Some(fake) = source.fake() {
        for fault in [
            Fault::Throttling,
            Fault::DropConnection,
            Fault::AccessDenied,
            Fault::Decryption,
        ] {
            inject_everywhere(fake, fault);
            tokio::time::sleep(PAST_TTL).await;
            for (selector, want) in reads(&canaries).into_iter().step_by(3) {
                if let Ok(got) = read_as_root(&mount.path(&selector)) {
                    let what = format!("{selector} under {fault:?}");
                    failures.extend(differs(&what, &got, &want));
                }
            }
            walk(&mount.mnt, &mut seen);
            fake.clear_faults();
        }
    } else {
        source.break_file(&canaries);
        tokio::time::sleep(PAST_TTL).await;
        match read_as_root(&mount.path("canary/plain")) {
            Ok(got) => failures.extend(differs(
                "canary/plain with the file broken",
                &got,
                &canaries[PLAIN].bytes,
            )),
            Err(e) => failures.push(format!("canary/plain with the file broken: {e}")),
        }
    }
    read_all(&mut failures);

    // A rotation: the new value within a few TTLs, the old one as AWSPREVIOUS.
    source.rotate(&canaries);
    let rotated = eventually(Duration::from_secs(8), || {
        read_as_root(&mount.path("canary/plain")).is_ok_and(|v| v == canaries[ROTATED_IN].bytes)
    })
    .await;
    if !rotated {
        failures.push("canary/plain never showed the rotated value".to_owned());
    }
    match read_as_root(&mount.path("canary/plain::AWSPREVIOUS")) {
        Ok(got) => failures.extend(differs(
            "canary/plain::AWSPREVIOUS",
            &got,
            &canaries[PLAIN].bytes,
        )),
        Err(e) => failures.push(format!("canary/plain::AWSPREVIOUS: {e}")),
    }

    if !mount.stop() {
        failures.push("the daemon did not stop and unmount on SIGTERM".to_owned());
    }
    let tally = audit_sanity(&audit, &mut failures);
    if !tally.keys().any(|k| k.starts_with("mount/denied/")) {
        failures.push("no denial by the mount in the audit log".to_owned());
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_a_kernel_cached_mount_of_a_file() {
    mount_suite(Kind::File, true).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_an_uncached_mount_of_a_file() {
    mount_suite(Kind::File, false).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_a_kernel_cached_mount_of_secrets_manager() {
    mount_suite(Kind::Fake, true).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_an_uncached_mount_of_secrets_manager() {
    mount_suite(Kind::Fake, false).await;
}
