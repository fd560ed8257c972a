//! Templates as files of the mount, against the fake Secrets Manager: exact bytes, a rotation
//! under an open file, access through every input, failures, and the calls a render costs.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::cli::{aws_args, run, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};
use crate::support::http::Conn;
use crate::support::mount::Mounted;
use crate::support::nobody::as_nobody;

const DATABASE_YML: &str = "\
production:
  host: {{ secret_json(\"app/db\").host }}
  password: {{ secret(\"app/db:password\") | tojson }}
  api_key: {{ secret(\"app/api-key\") }}
  certificate: {{ secret(\"app/cert.der\") | base64 }}
";

fn expected(password: &str) -> String {
    format!(
        "production:\n  host: db.internal\n  password: \"{password}\"\n  api_key: key-7f3a\n  certificate: AAEC/w==\n"
    )
}

fn put_db(fake: &FakeSecretsManager, password: &str) {
    fake.put_string(
        "app/db",
        &format!(r#"{{"host":"db.internal","password":"{password}"}}"#),
    );
}

/// A config file with `templates` (path, template text, extra keys) in `dir`.
fn config(dir: &Path, templates: &[(&str, &str, &str)], policy: &str) -> String {
    let mut text = String::from(policy);
    for (i, (path, body, extra)) in templates.iter().enumerate() {
        let source = dir.join(format!("t{i}.j2"));
        std::fs::write(&source, body).unwrap();
        text.push_str(&format!(
            "\n[[template]]\npath = \"{path}\"\nsource = \"{}\"\n{extra}\n",
            source.display()
        ));
    }
    let file = dir.join("config.toml");
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

fn global(fake: &FakeSecretsManager, config: &str) -> Vec<String> {
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "2".into(), "--config".into(), config.into()]);
    global
}

fn three_inputs(fake: &FakeSecretsManager) {
    put_db(fake, "pw-one");
    fake.put_string("app/api-key", "key-7f3a");
    fake.put_version(
        "app/cert.der",
        "00000000-0000-4000-8000-00000000c0de",
        &["AWSCURRENT"],
        SecretData::Binary(vec![0, 1, 2, 255]),
    );
}

/// Opens the template, reads `head` bytes, rotates `app/db`, waits for a new open to show the
/// new rendering, then reads the rest of the old file: it must be the old rendering, whole.
async fn an_open_file_keeps_its_rendering_across_a_rotation(
    fake: &FakeSecretsManager,
    path: &Path,
    head: usize,
) {
    let mut open = std::fs::File::open(path).unwrap();
    let mut first = vec![0u8; head];
    open.read_exact(&mut first).unwrap();
    put_db(fake, "pw-two-longer");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read(path).unwrap() != expected("pw-two-longer").as_bytes() {
        assert!(Instant::now() < deadline, "the rotation never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert!(
        first == expected("pw-one").as_bytes(),
        "the old rendering, whole"
    );
}

/// Rotates `app/db` (once the first fetch has settled) and waits until the hook that writes
/// to `fired` has run.
async fn rotate_db_until_the_hook_fires(fake: &FakeSecretsManager, m: &Mounted, fired: &Path) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    put_db(fake, "pw-two");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(fired)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the hook never fired:\n{}",
            m.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_template_renders_exactly_and_an_open_file_keeps_its_rendering_across_a_rotation() {
    let fake = FakeSecretsManager::start();
    three_inputs(&fake);
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &[("app/database.yml", DATABASE_YML, "mode = \"0444\"")],
        "",
    );
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    let path = m.path("app/database.yml");
    assert!(std::fs::read(&path).unwrap() == expected("pw-one").as_bytes());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        expected("pw-one").len() as u64
    );
    let listed: Vec<String> = std::fs::read_dir(m.path("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(listed.contains(&"database.yml".to_owned()), "{listed:?}");

    an_open_file_keeps_its_rendering_across_a_rotation(&fake, &path, 11).await;
    let log = m.log();
    assert!(
        !log.contains("pw-one") && !log.contains("pw-two"),
        "a value in the log"
    );
}

#[tokio::test]
async fn a_template_is_read_and_listed_only_by_callers_who_may_read_every_input() {
    let fake = FakeSecretsManager::start();
    fake.put_string("open/a", "a");
    fake.put_string("closed/b", "b");
    let dir = tempfile::tempdir().unwrap();
    // Directories uid 65534 may search, the templates' own (`t`) among them.
    let policy = "dir_mode = \"0555\"\n\n[[policy]]\npath = \"open/*\"\nmode = \"0444\"\n\n\
                  [[policy]]\npath = \"closed/*\"\nmode = \"0400\"\n";
    let both = "{{ secret(\"open/a\") }}{{ secret(\"closed/b\") }}";
    let one = "{{ secret(\"open/a\") }}";
    let config = config(
        dir.path(),
        &[
            ("t/both", both, "mode = \"0444\""),
            ("t/one", one, "mode = \"0444\""),
            ("t/private", one, "mode = \"0400\""),
        ],
        policy,
    );
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    let calls_before = fake.calls(Op::GetSecretValue) + fake.calls(Op::BatchGetSecretValue);
    let cat = |name: &str| as_nobody(&[], "cat", &[m.path(name).as_os_str()]);
    assert!(!cat("t/both").status.success(), "lacks closed/b");
    assert!(
        !cat("t/private").status.success(),
        "the template's own mode"
    );
    let one = cat("t/one");
    assert!(one.status.success() && one.stdout == b"a");
    let ls = as_nobody(&[], "ls", &["-1".as_ref(), m.path("t").as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "one\n");
    assert_eq!(
        fake.calls(Op::GetSecretValue) + fake.calls(Op::BatchGetSecretValue) - calls_before,
        1,
        "denied renders cost nothing upstream; the allowed one fetched open/a"
    );
    assert_eq!(
        std::fs::read(m.path("t/both")).unwrap(),
        b"ab",
        "root reads all"
    );
    assert!(m.log().contains("denied"), "the denials are audited");
}

/// The kernel checks only a file's presented mode when it opens it through an entry it holds;
/// an entry root looked up must not let another caller past the inputs' policy.
#[tokio::test]
async fn a_template_stays_denied_after_root_has_looked_it_up_or_read_it() {
    let fake = FakeSecretsManager::start();
    fake.put_string("prod/db", r#"{"password":"pw-closed"}"#);
    let dir = tempfile::tempdir().unwrap();
    let policy =
        "dir_mode = \"0555\"\n\n[[policy]]\npath = \"prod/**\"\nowner = \"0\"\nmode = \"0400\"\n";
    let config = config(
        dir.path(),
        &[(
            "tpl/denied",
            "{{ secret(\"prod/db:password\") }}",
            "owner = \"65534\"\nmode = \"0444\"",
        )],
        policy,
    );
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    let path = m.path("tpl/denied");
    let cat = || as_nobody(&[], "cat", &[path.as_os_str()]);
    assert!(!cat().status.success(), "denied before anyone looked");
    let ls = std::process::Command::new("ls")
        .arg("-l")
        .arg(m.path("tpl"))
        .output()
        .unwrap();
    assert!(ls.status.success());
    let after_lookup = cat();
    assert!(
        !after_lookup.status.success() && after_lookup.stdout.is_empty(),
        "denied after root's lookup"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"pw-closed", "root reads it");
    for _ in 0..3 {
        let after_read = cat();
        assert!(
            !after_read.status.success() && after_read.stdout.is_empty(),
            "denied after root's read"
        );
    }
    let stat = as_nobody(&[], "stat", &[path.as_os_str()]);
    assert!(
        !stat.status.success(),
        "not even its size for a denied caller"
    );
}

#[tokio::test]
async fn a_template_over_ten_inputs_costs_one_batch_call() {
    let fake = FakeSecretsManager::start();
    let mut body = String::new();
    for i in 0..10 {
        fake.put_string(&format!("many/s{i}"), &i.to_string());
        body.push_str(&format!("{{{{ secret(\"many/s{i}\") }}}},"));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("ten", &body, "")], "");
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    fake.reset_calls();
    assert_eq!(
        std::fs::read(m.path("ten")).unwrap(),
        b"0,1,2,3,4,5,6,7,8,9,"
    );
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 1);
    assert_eq!(fake.calls(Op::GetSecretValue), 0);
}

#[tokio::test]
async fn a_missing_input_fails_the_read_with_one_log_line_and_no_partial_rendering() {
    let fake = FakeSecretsManager::start();
    fake.put_string("here", "value-here-91c");
    let dir = tempfile::tempdir().unwrap();
    let body = "{{ secret(\"here\") }} {{ secret(\"gone\") }}";
    let config = config(
        dir.path(),
        &[
            ("eio", body, ""),
            ("enoent", body, "on_missing = \"enoent\""),
        ],
        "",
    );
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    let eio = std::fs::read(m.path("eio")).unwrap_err();
    assert_eq!(eio.raw_os_error(), Some(nix::libc::EIO));
    let enoent = std::fs::read(m.path("enoent")).unwrap_err();
    assert_eq!(enoent.raw_os_error(), Some(nix::libc::ENOENT));
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("template could not be rendered") && l.contains(r#"path="eio""#))
        .unwrap_or_else(|| panic!("no line for the template:\n{log}"));
    assert!(line.contains("gone"), "names the input: {line}");
    assert!(!log.contains("value-here-91c"), "a value in the log");
}

#[tokio::test]
async fn check_config_catches_a_syntax_error_and_render_prints_a_rendering() {
    let fake = FakeSecretsManager::start();
    three_inputs(&fake);
    let dir = tempfile::tempdir().unwrap();
    let broken = config(dir.path(), &[("x", "line one\n{{ secret(\"a\") ", "")], "");
    let out = run(&["check-config", &broken]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let template = dir.path().join("database.yml.j2");
    std::fs::write(&template, DATABASE_YML).unwrap();
    let mut args = aws_args(&fake.endpoint_url());
    args.extend(["render".into(), template.to_str().unwrap().to_owned()]);
    let out = run(&strs(&args)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == expected("pw-one").as_bytes());
}

#[tokio::test]
async fn check_config_shows_what_a_template_reads_and_a_hook_may_name_a_template() {
    let fake = FakeSecretsManager::start();
    three_inputs(&fake);
    let dir = tempfile::tempdir().unwrap();
    let fired = dir.path().join("fired");
    let hook = format!(
        "[[hook]]\nsecrets = [\"app/database.yml\"]\ndebounce = 0\n\
         exec = [\"/bin/sh\", \"-c\", \"echo $SECRETSFS_SECRET >> {}\"]\n",
        fired.display()
    );
    let config = config(dir.path(), &[("app/database.yml", DATABASE_YML, "")], &hook);
    let out = run(&["check-config", &config]).await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(
            "# template app/database.yml reads: app/db, app/db:password, app/api-key, app/cert.der"
        ),
        "{shown}"
    );
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    assert!(std::fs::read(m.path("app/database.yml")).unwrap() == expected("pw-one").as_bytes());
    rotate_db_until_the_hook_fires(&fake, &m, &fired).await;
    // One change of app/db, seen by the two inputs that read it: one run (debounce 0 may
    // split them, so at most two lines, both naming app/db).
    let lines: Vec<String> = std::fs::read_to_string(&fired)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l == "app/db"),
        "{lines:?}"
    );
    assert!(std::fs::read(m.path("app/database.yml")).unwrap() == expected("pw-two").as_bytes());
}

#[tokio::test]
async fn without_kernel_cache_an_open_template_reads_its_rendering_to_the_end() {
    let fake = FakeSecretsManager::start();
    three_inputs(&fake);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("db.yml", DATABASE_YML, "")], "");
    let m = Mounted::start(&strs(&global(&fake, &config)), &["--no-kernel-cache"]).await;
    let path = m.path("db.yml");
    an_open_file_keeps_its_rendering_across_a_rotation(&fake, &path, 5).await;
}

#[tokio::test]
async fn with_only_get_secret_value_allowed_templates_render_and_hooks_fire() {
    let fake = FakeSecretsManager::start();
    three_inputs(&fake);
    for op in [Op::ListSecrets, Op::BatchGetSecretValue] {
        fake.inject(op, Fault::AccessDenied, usize::MAX);
    }
    fake.allow_reading_only(&["app/db", "app/api-key", "app/cert.der"]);
    let dir = tempfile::tempdir().unwrap();
    let fired = dir.path().join("fired");
    let hook = format!(
        "[[hook]]\nsecrets = [\"app/db:password\"]\ndebounce = 0\n\
         exec = [\"/bin/sh\", \"-c\", \"echo $SECRETSFS_NEW_VERSION >> {}\"]\n",
        fired.display()
    );
    let config = config(dir.path(), &[("app/database.yml", DATABASE_YML, "")], &hook);
    let m = Mounted::start(&strs(&global(&fake, &config)), &[]).await;
    // No listing: the template and its directory are still there, and it renders.
    let listed: Vec<String> = std::fs::read_dir(m.path("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, ["database.yml"]);
    assert!(std::fs::read(m.path("app/database.yml")).unwrap() == expected("pw-one").as_bytes());
    rotate_db_until_the_hook_fires(&fake, &m, &fired).await;
    assert!(std::fs::read(m.path("app/database.yml")).unwrap() == expected("pw-two").as_bytes());
    let log = m.log();
    assert!(
        log.contains("BatchGetSecretValue is refused"),
        "the refused batch call is said once:\n{log}"
    );
    assert_eq!(log.matches("BatchGetSecretValue is refused").count(), 1);
}

/// The mount's errors are counted where they are replied (by operation and errno) and a
/// failure leaves one warning with its cause: a template whose input is missing, read three
/// times, is three EIOs and one line.
#[tokio::test]
async fn the_mount_counts_its_errors_by_operation_and_errno() {
    let fake = FakeSecretsManager::start();
    fake.put_string("present", "v");
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        &[("broken", "{{ secret('gone-forever') }}", "")],
        "",
    );
    let (m, addr) = Mounted::start_with_http_api(&strs(&global(&fake, &config))).await;
    for _ in 0..3 {
        let err = std::fs::read(m.path("broken")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO));
    }
    let missing = std::fs::metadata(m.path("not-a-secret")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(nix::libc::ENOENT));

    let text = Conn::tcp(addr).await.get("/metrics", &[]).await.text();
    let count = |operation: &str, errno: &str| {
        text.lines()
            .filter(|l| l.starts_with("secretsfs_fuse_errors_total{"))
            .filter(|l| l.contains(&format!("operation=\"{operation}\"")))
            .filter(|l| l.contains(&format!("errno=\"{errno}\"")))
            .find_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    // Each read walks the path: the lookup renders (no entry is kept for a template).
    assert_eq!(count("lookup", "EIO"), Some(3), "{text}");
    assert!(count("lookup", "ENOENT").is_some_and(|n| n >= 1), "{text}");
    let log = m.log();
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("template could not be rendered"))
        .collect();
    assert_eq!(lines.len(), 1, "one warning a minute: {lines:?}");
    assert!(
        lines[0].contains("gone-forever") && lines[0].contains("errno=EIO"),
        "the line says the cause and the errno: {}",
        lines[0]
    );
}
