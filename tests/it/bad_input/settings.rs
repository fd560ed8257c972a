//! `check-config` refuses what `mount` and `serve` refuse, with the same line and exit code;
//! a log level that is no level is refused in every form it can be given.

use std::process::Output;

use super::assert_refused;
use crate::support::cli::{self, demo_source};
use crate::support::mount::{Http, Mounted};

fn config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

/// The one line `mount` with `global` fails with (it must fail, 78).
async fn mount_refusal(global: &[&str]) -> Output {
    match Mounted::try_start_with(global, &[], &[], Http::OffUnlessAsked).await {
        Ok(_) => panic!("mount {global:?} succeeded"),
        Err(failed) => failed.out,
    }
}

#[tokio::test]
async fn check_config_refuses_what_mount_and_serve_refuse_in_the_same_words() {
    let demo = demo_source();
    let cases = [
        (
            "[[policy]]\npath = \"prod/[db\"\nmode = \"0400\"\n",
            "policy rule 1 (path \"prod/[db\"): bad glob",
            true,
        ),
        (
            "[[policy]]\npath = \"prod/*\"\nowner = \"no-such-user-14\"\n",
            "no user named \"no-such-user-14\"",
            true,
        ),
        (
            "[[policy]]\npath = \"prod/*\"\ngroup = \"no-such-group-14\"\n",
            "no group named \"no-such-group-14\"",
            true,
        ),
        // The namespace is the mount's alone.
        ("prefix = \"a b\"\n", "invalid --prefix \"a b\"", false),
    ];
    for (text, cause, serve_too) in cases {
        let file = config(text);
        let path = file.path().to_str().unwrap();
        let checked = cli::run(&["check-config", path]).await;
        assert_refused(&checked, 78, cause);
        let mounted = mount_refusal(&["--config", path, "--source", &demo]).await;
        assert_refused(&mounted, 78, cause);
        assert_eq!(checked.stderr, mounted.stderr, "{text}");
        if serve_too {
            let args = [
                "--config",
                path,
                "--source",
                &demo,
                "serve",
                "--http-port",
                "0",
            ];
            let served = cli::run_with_env(&args, &[("AWS_TOKEN", "t")]).await;
            assert_eq!(checked.stderr, served.stderr, "{text}");
            assert_eq!(served.status.code(), Some(78));
        }
    }
}

#[tokio::test]
async fn a_log_level_that_is_no_level_is_refused_in_every_form() {
    const CAUSE: &str = "\"bogus\" is neither a level";
    let demo = demo_source();
    let file = config("log_level = \"bogus\"\n");
    let path = file.path().to_str().unwrap();
    assert_refused(&cli::run(&["check-config", path]).await, 78, CAUSE);
    let get = ["--source", &demo, "get", "api-key"];
    for (variable, value) in [
        ("SECRETSFS_LOG_LEVEL", "bogus"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "bogus"),
        ("RUST_LOG", "bogus"),
    ] {
        let env = [(variable, value)];
        let checked = cli::run_with_env(&["check-config", "/dev/null"], &env).await;
        assert_refused(&checked, 78, CAUSE);
        assert_refused(&cli::run_with_env(&get, &env).await, 78, CAUSE);
    }
    let flag = ["--log-level", "bogus", "--source", &demo];
    assert_refused(&mount_refusal(&flag).await, 78, CAUSE);
    // The agent's own levels stay accepted, in its case.
    for level in ["DEBUG", "NONE", "warn,secretsfs=debug"] {
        let out = cli::run(&["--log-level", level, "check-config", "/dev/null"]).await;
        assert_eq!(out.status.code(), Some(0), "{level}");
    }
}
