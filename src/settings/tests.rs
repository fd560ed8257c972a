//! Resolution without the environment: flags over the file over the defaults, the agent's
//! keys and their ranges, and one-line errors naming the key and the file.

use super::*;
use crate::cache;
use crate::cli::Cli;

fn resolve(args: &[&str], file_text: &str) -> Result<Settings> {
    let mut argv = vec!["secretsfs"];
    argv.extend(args);
    let cli = Cli::try_parse_args_from(argv).unwrap();
    let path = PathBuf::from("/etc/test.toml");
    let file = ConfigFile::parse(file_text).map_err(|why| file::file_error(&path, &why))?;
    Settings::resolve_with(&cli.given, Some(path), &file)
}

fn origin_of(settings: &Settings, key: &str) -> Origin {
    settings.origins.iter().find(|(k, _)| k == key).unwrap().1
}

#[test]
fn flags_win_over_the_file_which_wins_over_defaults() {
    let s = resolve(
        &["--ttl", "30", "mount", "/m"],
        "ttl = 120\ncache_size = 7\nlayout = \"stages\"\n",
    )
    .unwrap();
    assert_eq!(s.cache.ttl, Duration::from_secs(30));
    assert_eq!(origin_of(&s, "ttl"), Origin::Command);
    assert_eq!(s.cache.max_entries, 7);
    assert_eq!(origin_of(&s, "cache_size"), Origin::File);
    assert_eq!(s.layout, Layout::Stages);
    assert_eq!(s.cache.negative_ttl, cache::DEFAULT_NEGATIVE_TTL);
    assert_eq!(origin_of(&s, "negative_ttl"), Origin::Default);
    let s = resolve(
        &["mount", "/m", "--layout", "flat", "--no-kernel-cache"],
        "layout = \"stages\"\n",
    )
    .unwrap();
    assert_eq!(s.layout, Layout::Flat);
    assert!(!s.kernel_cache);
}

#[test]
fn every_http_key_resolves() {
    let file = "http_port = \"8080\"\nhttp_listen = \"::1\"\nmax_conn = 5\npath_prefix = \"/s/\"\n\
                ssrf_headers = [\"X-T\"]\nssrf_env_variables = [\"T\"]\nhttp_header_timeout = 2\n\
                http_request_timeout = 9\nhttp_socket = \"/run/s.sock\"\nhttp_socket_mode = \"0660\"\n";
    let s = resolve(&["serve"], file).unwrap();
    let h = &s.http;
    assert_eq!(h.http_port, Some(8080));
    assert_eq!(h.http_listen.to_string(), "::1");
    assert_eq!((h.max_conn, h.path_prefix.as_str()), (5, "/s/"));
    assert_eq!(
        (h.ssrf_headers.clone(), h.ssrf_env_variables.clone()),
        (vec!["X-T".into()], vec!["T".into()])
    );
    assert_eq!((h.http_header_timeout, h.http_request_timeout), (2, 9));
    assert_eq!(
        h.listeners(true).socket,
        Some((PathBuf::from("/run/s.sock"), 0o660))
    );
    assert_eq!(h.listeners(true).tcp.unwrap().port(), 8080);
}

/// A config written for the AWS Secrets Manager Agent, as its documentation shows one.
const AGENT_CONFIG: &str = r#"
log_level = "DEBUG"
log_to_file = true
http_port = "2773"
region = "us-west-2"
ttl_seconds = "300"
cache_size = "1000"
ssrf_headers = ["X-Aws-Parameters-Secrets-Token", "X-Vault-Token"]
ssrf_env_variables = ["AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN"]
path_prefix = "/v1/"
max_conn = "800"
ignore_transient_errors = false
validate_credentials = "no"
credentials_file_path = "/etc/creds"
"#;

#[test]
fn an_agent_config_is_accepted_as_is() {
    let s = resolve(&["serve"], AGENT_CONFIG).unwrap();
    assert_eq!(s.log_level.as_deref(), Some("debug"));
    assert_eq!(s.log_file, Some(PathBuf::from(keys::AGENT_LOG_FILE)));
    assert_eq!(s.http.http_port, Some(2773));
    assert_eq!(s.cache.ttl, Duration::from_secs(300));
    assert_eq!(s.cache.max_entries, 1000);
    assert_eq!(
        s.cache.max_stale,
        Duration::ZERO,
        "ignore_transient_errors = false"
    );
    assert!(!s.validate_credentials);
    assert_eq!(s.aws.credentials_file, Some(PathBuf::from("/etc/creds")));
    assert_eq!(s.http.max_conn, 800);
    let none = resolve(&["serve"], "log_level = \"none\"\n").unwrap();
    assert_eq!(none.log_level.as_deref(), Some("off"));
}

#[test]
fn bad_values_and_double_keys_name_the_key_and_the_file() {
    let cases = [
        ("ttl_seconds = 4000\n", "`ttl_seconds`"),
        ("ttl = \"abc\"\n", "`ttl`"),
        ("ttl = 5\nttl_seconds = 5\n", "`ttl` and `ttl_seconds`"),
        (
            "max_stale = 5\nignore_transient_errors = true\n",
            "`max_stale` and `ignore_transient_errors`",
        ),
        (
            "log_file = \"/x\"\nlog_to_file = true\n",
            "`log_file` and `log_to_file`",
        ),
        ("max_conn = 0\n", "`max_conn`"),
        ("path_prefix = \"v1/\"\n", "`path_prefix`"),
        ("ssrf_headers = []\n", "`ssrf_headers`"),
        ("layout = \"tree\"\n", "`layout`"),
        ("source = \"s3\"\n", "`source`"),
        ("http_listen = \"localhost\"\n", "`http_listen`"),
        ("mlock = \"maybe\"\n", "`mlock`"),
    ];
    for (text, needle) in cases {
        let err = resolve(&["serve"], text).unwrap_err();
        assert!(err.message().contains(needle), "{text}: {err}");
        assert!(err.message().contains("/etc/test.toml"), "{err}");
        assert!(!err.message().contains('\n'));
    }
}

#[test]
fn the_rendering_shows_every_key_and_its_origin() {
    let s = resolve(
        &["--ttl", "30", "mount", "/m"],
        "cache_size = 7\n[[policy]]\npath = \"a\"\n",
    )
    .unwrap();
    let text = s.render();
    assert!(text.contains("ttl = 30    # flag or environment"), "{text}");
    assert!(text.contains("cache_size = 7    # config file"), "{text}");
    assert!(text.contains("max_stale = 3600    # default"), "{text}");
    assert!(text.contains("1 policy rule(s)"));
    for key in [
        "source",
        "region",
        "http_port",
        "ssrf_env_variables",
        "layout",
        "mlock",
        "ttl_jitter",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "{key} missing"
        );
    }
}

#[test]
fn the_rendering_shows_the_tables_as_toml_that_reads_back() {
    let file = "[[policy]]\npath = \"prod/**\"\nowner = 0\nmode = \"0400\"\n\
                [[policy]]\npath = \"x\"\ngroup = \"adm\"\ndir_mode = \"0750\"\n";
    let s = resolve(&["serve"], file).unwrap();
    let text = s.render();
    let (_, tables) = text.split_once("# 2 policy rule(s)\n").unwrap();
    let again = ConfigFile::parse(tables).unwrap();
    assert_eq!(again.sections, s.sections, "{text}");
    assert_eq!(again.sections.policy.len(), 2);
}

#[test]
fn a_sighup_names_what_waits_for_the_next_start_and_not_the_policy() {
    let before = resolve(&["serve"], "ttl = 300\n").unwrap();
    let after = resolve(
        &["serve"],
        "ttl = 60\nsecrets = [\"a\"]\n\n[[policy]]\npath = \"*\"\nmode = \"0400\"\n\n\
         [[hook]]\nsecrets = [\"a\"]\nreload = \"x.service\"\n",
    )
    .unwrap();
    assert_eq!(
        after.changed_at_restart(&before),
        ["ttl", "hook", "secrets"]
    );
    assert!(before.changed_at_restart(&before).is_empty());
}
