//! `[[hook]]` entries: what the file accepts, what check-config shows, the one-line errors.

use std::path::PathBuf;

use super::{ActionSpec, HookSpec};
use crate::cli::Cli;
use crate::settings::Settings;
use crate::settings::file::ConfigFile;
use nix::sys::signal::Signal;

const GOOD: &str = r#"
[[hook]]
name = "nginx-cert"
secrets = ["certs/example.com", "prod/db:password", "certs/*"]
signal = "HUP"
pid_file = "/run/nginx.pid"
debounce = 0

[[hook]]
secrets = ["prod/db"]
exec = ["/usr/bin/systemctl", "restart", "app"]
user = "nobody"
timeout = 3600
retries = 0

[[hook]]
name = "unit"
secrets = ["a"]
signal = "SIGUSR1"
unit = "app.service"

[[hook]]
name = "reload"
secrets = ["a"]
reload = "nginx.service"

[[hook]]
name = "bare"
secrets = ["a"]
exec = ["logger", "rotated"]
"#;

fn render(text: &str) -> String {
    let cli = Cli::try_parse_args_from(["secretsfs", "serve"]).unwrap();
    let file = ConfigFile::parse(text).unwrap();
    Settings::resolve_with(&cli.given, Some(PathBuf::from("/etc/t.toml")), &file)
        .unwrap()
        .render()
}

/// The error for one `[[hook]]` entry written out in `body`.
fn error_of(body: &str) -> String {
    let err = ConfigFile::parse(&format!("[[hook]]\n{body}\n")).unwrap_err();
    assert!(!err.contains('\n'), "{err}");
    err
}

#[test]
fn good_hooks_round_trip_through_check_config() {
    let file = ConfigFile::parse(GOOD).unwrap();
    let hooks = &file.sections.hook;
    assert_eq!(hooks.len(), 5);
    assert_eq!(hooks[0].display_name(0), "nginx-cert");
    assert_eq!(hooks[1].display_name(1), "hook 2");
    assert_eq!(hooks[1].retries(), 0);
    assert_eq!(hooks[0].timeout().as_secs(), 30);
    assert_eq!(hooks[0].debounce().as_secs(), 0);
    assert_eq!(hooks[2].debounce().as_secs(), 2);
    assert_eq!(hooks[2].retries(), 5);
    assert_eq!(
        hooks[0].check().unwrap(),
        ActionSpec::SignalPid(Signal::SIGHUP, "/run/nginx.pid".into())
    );
    assert_eq!(
        hooks[2].check().unwrap(),
        ActionSpec::SignalUnit(Signal::SIGUSR1, "app.service".into())
    );
    assert_eq!(
        hooks[3].check().unwrap(),
        ActionSpec::Reload("nginx.service".into())
    );

    let text = render(GOOD);
    let (_, tables) = text.split_once("policy rule(s)\n").unwrap();
    assert!(tables.contains("[[hook]]"), "{text}");
    // Defaults and absent keys stay out of what check-config shows.
    assert_eq!(tables.matches("timeout").count(), 1, "{tables}");
    assert!(!tables.contains("pid_file = \"\""), "{tables}");
    let again = ConfigFile::parse(tables).unwrap();
    assert_eq!(again.sections, file.sections, "{tables}");
}

#[test]
fn each_invalid_combination_is_a_one_line_error_naming_the_hook() {
    let cases = [
        // (entry, what the error must say)
        (
            "secrets = [\"a\"]",
            "exactly one of `exec`, `signal` or `reload`",
        ),
        (
            "secrets = [\"a\"]\nexec = [\"/bin/true\"]\nreload = \"x\"",
            "exactly one of",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUP\"\nreload = \"x\"",
            "exactly one of",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUP\"",
            "exactly one of `pid_file` or `unit`",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUP\"\npid_file = \"/p\"\nunit = \"u\"",
            "exactly one of `pid_file` or `unit`",
        ),
        (
            "secrets = [\"a\"]\nexec = [\"/bin/true\"]\npid_file = \"/p\"",
            "only with `signal`",
        ),
        (
            "secrets = [\"a\"]\nreload = \"u\"\nunit = \"u\"",
            "only with `signal`",
        ),
        (
            "secrets = [\"a\"]\nreload = \"u\"\nuser = \"nobody\"",
            "`user` applies only to `exec`",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUP\"\nunit = \"u\"\nuser = \"nobody\"",
            "`user` applies only to `exec`",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUPP\"\nunit = \"u\"",
            "unknown signal \"HUPP\"",
        ),
        (
            "secrets = [\"a\"]\nsignal = \"HUP\"\npid_file = \"run/x.pid\"",
            "must be an absolute path",
        ),
        ("secrets = []\nreload = \"u\"", "at least one selector"),
        ("secrets = [\"\"]\nreload = \"u\"", "empty selector"),
        ("reload = \"u\"", "missing field `secrets`"),
        ("secrets = [\"a\"]\nexec = []", "at least the program"),
        (
            "secrets = [\"a\"]\nexec = [\"bin/x\"]",
            "absolute path or a bare name",
        ),
        (
            "secrets = [\"a\"]\nreload = \"\"",
            "not a systemd unit name",
        ),
        (
            "secrets = [\"a\"]\nexec = [\"/bin/true\"]\nuser = \"no-such-user-here\"",
            "no user named \"no-such-user-here\"",
        ),
    ];
    for (body, says) in cases {
        let err = error_of(body);
        assert!(err.starts_with("hook 1: "), "{body}: {err}");
        assert!(err.contains(says), "{body}: {err}");
        let named = error_of(&format!("name = \"nginx-cert\"\n{body}"));
        assert!(named.starts_with("hook \"nginx-cert\": "), "{named}");
    }
    let second =
        "[[hook]]\nsecrets = [\"a\"]\nreload = \"u\"\n[[hook]]\nsecrets = []\nreload = \"u\"\n";
    let err = ConfigFile::parse(second).unwrap_err();
    assert!(err.starts_with("hook 2: "), "{err}");
}

#[test]
fn unknown_keys_and_duplicate_names_are_rejected() {
    let err = error_of("name = \"x\"\nsecrets = [\"a\"]\nreload = \"u\"\ncommand = \"ls\"");
    assert!(err.starts_with("hook \"x\": "), "{err}");
    assert!(err.contains("unknown field `command`"), "{err}");
    let err = ConfigFile::parse("hook = 3\n").unwrap_err();
    assert!(err.contains("[[hook]]"), "{err}");
    let twice = "[[hook]]\nname = \"x\"\nsecrets = [\"a\"]\nreload = \"u\"\n\
                 [[hook]]\nname = \"x\"\nsecrets = [\"b\"]\nreload = \"u\"\n";
    let err = ConfigFile::parse(twice).unwrap_err();
    assert_eq!(err, "hook \"x\": another hook has the same name");
}

#[test]
fn ranges_are_enforced() {
    let base = "secrets = [\"a\"]\nreload = \"u\"";
    for (key, bad, good) in [
        ("timeout", ["0", "3601"], ["1", "3600"]),
        ("debounce", ["3601", "100000"], ["0", "3600"]),
        ("retries", ["101", "1000"], ["0", "100"]),
    ] {
        for value in bad {
            let err = error_of(&format!("{base}\n{key} = {value}"));
            assert!(err.starts_with("hook 1: "), "{err}");
            assert!(err.contains(&format!("`{key}`")), "{err}");
            assert!(err.contains(&format!("got {value}")), "{err}");
        }
        for value in good {
            ConfigFile::parse(&format!("[[hook]]\n{base}\n{key} = {value}\n")).unwrap();
        }
        let err = error_of(&format!("{base}\n{key} = -1"));
        assert!(err.starts_with("hook 1: ") && err.contains(key), "{err}");
        let err = error_of(&format!("{base}\n{key} = \"5\""));
        assert!(err.starts_with("hook 1: ") && err.contains(key), "{err}");
    }
}

#[test]
fn a_spec_built_in_code_checks_like_the_file() {
    let spec = HookSpec {
        name: None,
        secrets: vec!["a".into()],
        exec: Some(vec!["/bin/true".into()]),
        signal: None,
        pid_file: None,
        unit: None,
        reload: None,
        user: None,
        timeout: Some(0),
        debounce: None,
        retries: None,
    };
    assert!(spec.check().unwrap_err().contains("`timeout`"));
    let err = crate::hooks::Hooks::new(&[spec]).unwrap_err();
    assert!(err.message().starts_with("hook 1: "), "{err}");
}
