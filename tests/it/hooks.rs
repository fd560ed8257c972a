//! Change hooks through a real mount: against moto, under the capability set of the shipped
//! unit (read from systemd/secretsfs.service, so the two cannot drift), and with hooks that
//! fail or hang while readers go on.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::http::public_tempdir;
use crate::support::moto::{Moto, create_string, put_string};
use crate::support::mount::{Http, Mounted, alive};

const TTL_SECONDS: u64 = 2;
/// Within this long of a rotation its hooks have run: the TTL, and slack for the hook itself.
const FIRED_WITHIN: Duration = Duration::from_secs(TTL_SECONDS + 2);

/// `setpriv` keeping only the capabilities the shipped mount unit grants.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/secretsfs.service"
    ))
    .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit has a bounding set")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let set = format!("-all,{}", caps.join(","));
    ["setpriv", "--bounding-set", &set, "--inh-caps", &set]
        .map(str::to_owned)
        .to_vec()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `path` has `count` lines, for [`FIRED_WITHIN`] at most.
async fn until_lines(path: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + FIRED_WITHIN;
    while lines(path).len() < count {
        assert!(
            Instant::now() < deadline,
            "{} has {:?}, not {count} lines, {FIRED_WITHIN:?} after the rotation",
            path.display(),
            lines(path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lines(path)
}

/// A process of uid 65534 (`sleep`), killed by its pid when dropped.
struct NobodysProcess(std::process::Child);

impl Drop for NobodysProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn rotations_fire_hooks_once_as_configured_under_the_units_capabilities() {
    let moto = Moto::start();
    let sm = moto.client().await;
    create_string(&sm, "app/db", r#"{"password":"pw-first-7c1e","host":"h1"}"#).await;
    create_string(&sm, "app/cert", "cert-first-93ad").await;
    create_string(&sm, "tls/cert", "tls-cert-1").await;
    create_string(&sm, "tls/key", "tls-key-1").await;
    let out = public_tempdir();
    let (records, read_at_hook, uid, tls) = (
        out.path().join("records"),
        out.path().join("read-at-hook"),
        out.path().join("uid"),
        out.path().join("tls"),
    );
    // Where the hook run as nobody may write.
    std::fs::write(&uid, "").unwrap();
    std::fs::set_permissions(&uid, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let nobody = NobodysProcess(
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid_file = out.path().join("nobody.pid");
    std::fs::write(&pid_file, nobody.0.id().to_string()).unwrap();
    let record = format!(
        // What the hook read first: the record's line is what the test waits for.
        r#"cat "$SECRETSFS_PATH" > {read}; printf '%s|%s|%s|%s|%s|%s\n' "$SECRETSFS_HOOK" "$SECRETSFS_SECRET" "$SECRETSFS_SELECTOR" "$SECRETSFS_OLD_VERSION" "$SECRETSFS_NEW_VERSION" "$SECRETSFS_PATH" >> {records}"#,
        records = records.display(),
        read = read_at_hook.display()
    );
    let config = out.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[hook]]
name = "db-password"
secrets = ["app/db:password"]
exec = ["/bin/sh", "-c", '''{record}''']
debounce = 0

[[hook]]
name = "as-nobody"
secrets = ["app/cert"]
exec = ["/bin/sh", "-c", "id -u > {uid}"]
user = "nobody"
debounce = 0

[[hook]]
name = "tls"
secrets = ["tls/cert", "tls/key"]
exec = ["/bin/sh", "-c", "echo $SECRETSFS_CHANGED >> {tls}"]
debounce = 2

[[hook]]
name = "signal-nobody"
secrets = ["app/c*"]
signal = "TERM"
pid_file = "{pid_file}"
debounce = 0
"#,
            uid = uid.display(),
            tls = tls.display(),
            pid_file = pid_file.display()
        ),
    )
    .unwrap();
    let mut global = aws_args(&moto.endpoint_url());
    global.extend(["--ttl".into(), TTL_SECONDS.to_string()]);
    global.extend(["--config".into(), config.to_str().unwrap().to_owned()]);
    let wrapper = unit_capabilities();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut m = Mounted::unmounted(&[], Http::OffUnlessAsked).wrapped(&wrapper);
    m.mount(&strs(&global), &[]).await;
    m.wait_for_log("change hooks armed", 1).await;
    // Watched values are fetched unread; give the first fetch its moment.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let db_v2 = put_string(&sm, "app/db", r#"{"password":"pw-first-7c1e","host":"h2"}"#).await;
    tokio::time::sleep(FIRED_WITHIN).await;
    assert!(lines(&records).is_empty(), "another key changed: no fire");

    let db_v3 = put_string(
        &sm,
        "app/db",
        r#"{"password":"pw-second-51b0","host":"h2"}"#,
    )
    .await;
    let fired = until_lines(&records, 1).await;
    let path = m.path("app/db:password");
    // The old version is the last one seen, which the host change made v2.
    assert_eq!(
        fired[0],
        format!(
            "db-password|app/db|app/db:password|{db_v2}|{db_v3}|{}",
            path.display()
        )
    );
    assert!(
        std::fs::read(&read_at_hook).unwrap() == b"pw-second-51b0",
        "the hook read the new value through the mount"
    );

    put_string(&sm, "app/cert", "cert-second-0b2f").await;
    assert_eq!(until_lines(&uid, 1).await, ["65534"], "ran as nobody");
    let deadline = Instant::now() + FIRED_WITHIN;
    while alive(nobody.0.id() as i32) && !exited(&nobody) {
        assert!(
            Instant::now() < deadline,
            "nobody's process was not signalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A certificate and its key rotated together: one run that names both.
    put_string(&sm, "tls/cert", "tls-cert-2").await;
    put_string(&sm, "tls/key", "tls-key-2").await;
    assert_eq!(until_lines(&tls, 1).await, ["tls/cert tls/key"]);

    // Refreshes that find the same versions fire nothing more.
    tokio::time::sleep(Duration::from_secs(2 * TTL_SECONDS)).await;
    assert_eq!(lines(&records).len(), 1, "{:?}", lines(&records));
    assert_eq!(lines(&tls).len(), 1, "debounced: {:?}", lines(&tls));
    let log = m.log();
    for value in [
        "pw-first-7c1e",
        "pw-second-51b0",
        "cert-first-93ad",
        "cert-second-0b2f",
    ] {
        assert!(!log.contains(value), "a value reached the log");
    }
    assert_eq!(log.matches("hook failed").count(), 0, "{log}");
}

/// Whether the process has exited (a zombie until reaped counts as exited).
fn exited(process: &NobodysProcess) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.0.id()));
    stat.map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
}

#[tokio::test]
async fn a_failing_and_a_hanging_hook_are_logged_and_readers_go_on() {
    let fake = FakeSecretsManager::start();
    fake.put_string("svc", "one");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[[hook]]
name = "failing"
secrets = ["svc"]
exec = ["/bin/sh", "-c", "echo boom >&2; exit 7"]
retries = 0

[[hook]]
name = "hanging"
secrets = ["svc"]
exec = ["/bin/sleep", "100"]
timeout = 1
retries = 0
"#,
    )
    .unwrap();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), TTL_SECONDS.to_string()]);
    global.extend(["--config".into(), config.to_str().unwrap().to_owned()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let path = m.path("svc");
    assert_eq!(std::fs::read(&path).unwrap(), b"one");
    fake.put_string("svc", "two");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reads = 0;
    while !m.log().contains("timed out after 1 s") {
        let value = std::fs::read(&path).unwrap();
        assert!(value == b"one" || value == b"two");
        reads += 1;
        assert!(Instant::now() < deadline, "no timeout logged:\n{}", m.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reads > 10, "reads went on while the hooks ran: {reads}");
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    let log = m.log();
    let failed = log
        .lines()
        .find(|l| l.contains("hook=failing") && l.contains("hook failed"))
        .unwrap_or_else(|| panic!("no failure line:\n{log}"));
    assert!(
        failed.contains("exited with status 7") && failed.contains("boom"),
        "{failed}"
    );
    assert!(log.contains("hook=hanging"), "{log}");
}

/// A hook armed before its secret exists fires when the secret is created (no old version),
/// and again when it rotates, with nobody reading it.
#[tokio::test]
async fn a_hook_on_a_secret_created_after_the_start_fires_without_readers() {
    let fake = FakeSecretsManager::start();
    let dir = tempfile::tempdir().unwrap();
    let records = dir.path().join("records");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[hook]]
name = "late"
secrets = ["hook/a"]
exec = ["/bin/sh", "-c", "echo \"$SECRETSFS_OLD_VERSION|$SECRETSFS_NEW_VERSION\" >> {}"]
debounce = 0
"#,
            records.display()
        ),
    )
    .unwrap();
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), TTL_SECONDS.to_string()]);
    global.extend(["--config".into(), config.to_str().unwrap().to_owned()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v1 = fake.put_string("hook/a", "one");
    // A missing watched name is asked for again after 10, 20, 40 s, then every minute.
    let deadline = Instant::now() + Duration::from_secs(40);
    while lines(&records).is_empty() {
        assert!(Instant::now() < deadline, "never fired:\n{}", m.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines(&records), [format!("|{v1}")]);
    let v2 = fake.put_string("hook/a", "two");
    let rotated = until_lines(&records, 2).await;
    assert_eq!(rotated[1], format!("{v1}|{v2}"));
}

#[tokio::test]
async fn a_hundred_watched_secrets_cost_at_most_six_calls_per_ttl_at_moto() {
    const SECRETS: usize = 100;
    const TTLS: u64 = 5;
    let moto = Moto::start();
    let sm = moto.client().await;
    for i in 0..SECRETS {
        create_string(&sm, &format!("bulk/s{i:03}"), "v").await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[hook]]\nsecrets = [\"bulk/*\"]\nexec = [\"/bin/true\"]\n",
    )
    .unwrap();
    let ttl = 3;
    let mut global = aws_args(&moto.endpoint_url());
    global.extend(["--ttl".into(), ttl.to_string()]);
    global.extend(["--config".into(), config.to_str().unwrap().to_owned()]);
    let mut m = Mounted::start(&strs(&global), &[]).await;
    tokio::time::sleep(Duration::from_secs(ttl * TTLS)).await;
    assert!(m.stop());
    let stats = m.final_stats();
    let calls = &stats["upstream_calls"];
    let values = calls["batch_get_secret_value"].as_u64().unwrap()
        + calls["get_secret_value"].as_u64().unwrap();
    // The first fetch (five batches) and then the refreshes.
    let per_ttl = (values - 5) as f64 / TTLS as f64;
    println!("{SECRETS} watched secrets at moto: {per_ttl} value calls per TTL ({stats})");
    assert!(per_ttl <= 6.0, "{per_ttl} calls per TTL: {stats}");
    assert_eq!(calls["get_secret_value"], 0, "all batched: {stats}");
    assert!(per_ttl >= 4.0, "refreshed every TTL: {stats}");
}
