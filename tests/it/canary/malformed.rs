//! A malformed secrets file: its parse errors must not quote the values in it.

use crate::support::http::{TOKEN_HEADER, public_tempdir};

use super::get::{check_get, get_twice};
use super::http::{Front, check_value, query_route};
use super::search::{Logs, needles};
use super::seed::{Canary, Source, V_JSON, random_alnum, random_digits, write_atomically};
use super::serve::{start_serve, stop_serve};

#[tokio::test]
async fn canaries_in_a_malformed_secrets_file_stay_out_of_the_logs() {
    let version = |payload: &str| {
        format!(
            r#"{{"Secrets":[{{"Name":"canary/bad","Versions":[{{"VersionId":"{V_JSON}","VersionStages":["AWSCURRENT"],{payload}}}]}}]}}"#
        )
    };
    let mut canaries = Vec::new();
    let mut files = Vec::new();
    let mut variant = |kind: &str, value: String, file: String| {
        canaries.push(Canary {
            kind: format!("in a secrets file with {kind}"),
            bytes: value.into_bytes(),
        });
        files.push(file);
    };
    let digits = random_digits(18);
    variant(
        "a SecretString that is a JSON number",
        digits.clone(),
        version(&format!(r#""SecretString":{digits}"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretString that is a JSON object",
        c.clone(),
        version(&format!(r#""SecretString":{{"password":"{c}"}}"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretString that is a JSON array",
        c.clone(),
        version(&format!(r#""SecretString":["{c}"]"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretBinary that is not base64",
        c.clone(),
        version(&format!(r#""SecretBinary":"{c}*""#)),
    );
    let c = random_alnum(32);
    variant(
        "a raw newline inside a SecretString (a pasted PEM key)",
        c.clone(),
        version(&format!("\"SecretString\":\"{c}\n{c}\"")),
    );
    let c = random_alnum(32);
    variant(
        "both SecretString and SecretBinary",
        c.clone(),
        version(&format!(r#""SecretString":"{c}","SecretBinary":"AAEC""#)),
    );
    let c = random_alnum(32);
    variant(
        "a misspelt SecretString field",
        c.clone(),
        version(&format!(r#""SecretStrng":"{c}""#)),
    );
    let c = random_alnum(32);
    variant(
        "SecretString given twice",
        c.clone(),
        version(&format!(r#""SecretString":"ok","SecretString":"{c}""#)),
    );
    let c = random_alnum(32);
    let truncated = version(&format!(r#""SecretString":"{c}""#));
    variant(
        "its end cut off inside a SecretString",
        c.clone(),
        truncated[..truncated.find(&c).unwrap() + 20].to_owned(),
    );
    let needles = needles(&canaries);
    let dir = public_tempdir();
    let mut logs = Logs::default();
    let mut failures = Vec::new();

    // `get` refuses each file, on stderr or in its --log-file.
    let log = dir.path().join("get.log");
    let audit = dir.path().join("get-audit.jsonl");
    logs.file("--log-file of get", &log);
    logs.file("--audit-log of get", &audit);
    for (i, text) in files.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&path, text).unwrap();
        let source = Source::File {
            path,
            _dir: tempfile::tempdir().unwrap(),
        };
        let outs = get_twice(&source, "canary/bad", &log, &audit).await;
        let label = format!("canary/bad from the file of canary #{i}");
        check_get(&source, &label, &outs, None, &mut logs, &mut failures);
    }

    // `serve` keeps its last good contents when the file changes into each of them, and says
    // so in its log.
    let path = dir.path().join("secrets.json");
    let good = version(r#""SecretString":"fine""#);
    write_atomically(&path, good.as_bytes());
    let serve_audit = dir.path().join("serve-audit.jsonl");
    logs.file("--audit-log of serve", &serve_audit);
    let token = random_alnum(32);
    let args: Vec<String> = [
        "--source",
        &format!("file:{}", path.display()),
        "--log-level",
        "trace",
        "--audit-log",
        serve_audit.to_str().unwrap(),
        "serve",
        "--http-port",
        "0",
    ]
    .map(str::to_owned)
    .to_vec();
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token.as_str())];
    let mut served = start_serve(&args, &env, &needles).await;
    logs.file("stderr of serve", &served.stderr_path());
    let auth = [(TOKEN_HEADER, token.as_str())];
    let tcp = Front::Tcp(served.addr);
    for (i, text) in files.iter().enumerate() {
        write_atomically(&path, text.as_bytes());
        let r = tcp
            .send("GET", &query_route("canary/bad", "refreshNow=true"), &auth)
            .await;
        check_value(
            &format!("canary/bad after the file of canary #{i}"),
            &r,
            b"fine",
            &mut failures,
        );
    }
    stop_serve(&mut served, &mut failures).await;
    let warned = served
        .stderr()
        .lines()
        .filter(|l| l.contains("invalid"))
        .count();
    if warned < files.len() {
        failures.push(format!(
            "serve logged {warned} invalid-file warnings for {} broken files",
            files.len()
        ));
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
