//! Parameter Store (`--source ssm` and the HTTP API's `/systemsmanager/parameters/get`)
//! against moto: the hierarchy as directories, `NAME:VERSION` and `NAME:LABEL` files, calls
//! counted, and GetParameter's answer through HTTP as moto gives it to the SDK.
//!
//! Failure messages name parameters and requests, never values.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::error::DisplayErrorContext;
use aws_sdk_ssm::types::ParameterType;

use crate::support::cli::{source_args, strs};
use crate::support::http::{self, Conn, Served, TOKEN, TOKEN_HEADER};
use crate::support::moto::{Moto, put_parameter as put};
use crate::support::mount::Mounted;

const V1: &str = "postgres://one@db/prod";
const V2: &str = "postgres://two@db/prod";
const PASSWORD: &str = "s3cure:pa/ss";
const LIST: &str = "a,b,c";

fn ssm_args(endpoint_url: &str) -> Vec<String> {
    source_args("ssm", endpoint_url)
}

async fn label(ssm: &Client, name: &str, version: i64, label: &str) {
    ssm.label_parameter_version()
        .name(name)
        .parameter_version(version)
        .labels(label)
        .send()
        .await
        .unwrap_or_else(|e| panic!("labelling {name}: {}", DisplayErrorContext(&e)));
}

/// `/app/prod/db-url` in two versions (the first labelled `prod`), a SecureString and a
/// StringList.
async fn sample(ssm: &Client) {
    let v1 = put(ssm, "/app/prod/db-url", V1, ParameterType::String).await;
    let v2 = put(ssm, "/app/prod/db-url", V2, ParameterType::String).await;
    assert_eq!((v1, v2), (1, 2), "moto: versions of /app/prod/db-url");
    label(ssm, "/app/prod/db-url", 1, "prod").await;
    put(
        ssm,
        "/app/prod/password",
        PASSWORD,
        ParameterType::SecureString,
    )
    .await;
    put(ssm, "/app/list", LIST, ParameterType::StringList).await;
}

fn read(m: &Mounted, path: &str) -> Result<String, std::io::ErrorKind> {
    std::fs::read_to_string(m.path(path)).map_err(|e| e.kind())
}

fn names(m: &Mounted, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(dir))
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn ssm_mount_shows_the_hierarchy_and_reads_versions_and_labels() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    sample(&ssm).await;
    let global = ssm_args(&moto.endpoint_url());
    let m = Mounted::start(&strs(&global), &[]).await;

    assert_eq!(names(&m, ""), ["app"]);
    assert_eq!(names(&m, "app"), ["list", "prod"]);
    assert_eq!(names(&m, "app/prod"), ["db-url", "password"]);
    let checks: [(&str, Result<&str, std::io::ErrorKind>); 7] = [
        ("app/prod/db-url", Ok(V2)),
        ("app/prod/db-url:2", Ok(V2)),
        ("app/prod/db-url:1", Ok(V1)),
        ("app/prod/db-url:prod", Ok(V1)),
        ("app/prod/password", Ok(PASSWORD)),
        ("app/list", Ok(LIST)),
        ("app/prod/db-url:9", Err(std::io::ErrorKind::NotFound)),
    ];
    for (path, expected) in checks {
        let got = read(&m, path);
        assert!(
            got.as_deref().map_err(|k| *k) == expected,
            "{path}: not the value moto holds ({:?})",
            got.map(|v| v.len())
        );
    }
    // Not Parameter Store's syntax: refused before any call.
    for bad in [
        "app/prod/db-url:aws1",
        "app/prod/db-url:a:b",
        "app/prod/db-url:0",
    ] {
        assert_eq!(read(&m, bad), Err(std::io::ErrorKind::NotFound), "{bad}");
    }
}

#[tokio::test]
async fn ssm_stages_layout_shows_labels_and_the_latest_as_awscurrent() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    sample(&ssm).await;
    let global = ssm_args(&moto.endpoint_url());
    let m = Mounted::start(&strs(&global), &["--layout", "stages"]).await;
    assert_eq!(names(&m, "app/prod/db-url"), ["AWSCURRENT", "prod"]);
    assert!(
        read(&m, "app/prod/db-url/AWSCURRENT").as_deref() == Ok(V2),
        "AWSCURRENT"
    );
    assert!(
        read(&m, "app/prod/db-url/prod").as_deref() == Ok(V1),
        "prod"
    );
}

#[tokio::test]
async fn ssm_ls_l_of_25_parameters_costs_one_listing_and_3_get_parameters_then_the_cache() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    for i in 0..25 {
        let name = format!("/many/p{i:02}");
        put(&ssm, &name, &"x".repeat(i + 1), ParameterType::String).await;
    }
    let global = ssm_args(&moto.endpoint_url());
    let mut m = Mounted::start(&strs(&global), &[]).await;
    assert_eq!(crate::mount::files_shown_by_ls("-l", &m.path("many")), 25);
    // Read again: from the cache.
    for _ in 0..2 {
        assert_eq!(read(&m, "many/p04").map(|v| v.len()), Ok(5));
    }
    assert_eq!(crate::mount::files_shown_by_ls("-l", &m.path("many")), 25);
    assert!(m.stop());
    let calls = &m.final_stats()["upstream_calls"];
    // GetParameters, 10 names a call.
    assert_eq!(calls["batch_get_secret_value"], 3, "{calls}");
    assert_eq!(calls["get_secret_value"], 0, "{calls}");
    // One listing of the hierarchy: GetParametersByPath, 10 a page, so 3 requests.
    assert_eq!(calls["list_secrets"], 3, "{calls}");
}

/// What moto gives the SDK for GetParameter (name with its selector).
async fn held(ssm: &Client, name: &str, decrypt: bool) -> aws_sdk_ssm::types::Parameter {
    ssm.get_parameter()
        .name(name)
        .with_decryption(decrypt)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading {name} from moto: {}", DisplayErrorContext(&e)))
        .parameter
        .unwrap()
}

#[tokio::test]
async fn ssm_http_route_answers_get_parameter_as_the_service() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    sample(&ssm).await;
    let sm = moto.client().await;
    sm.create_secret()
        .name("via/ssm")
        .secret_string(V1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating via/ssm: {}", DisplayErrorContext(&e)));
    // The mount's source is Secrets Manager; parameters still have their route.
    let global = crate::support::cli::aws_args(&moto.endpoint_url());
    let mut args = strs(&global);
    args.extend(["serve", "--http-port", "0"]);
    let served = Served::start(&args).await;

    let route = "/systemsmanager/parameters/get";
    let cases: [(String, &str, bool, Option<&str>); 6] = [
        (
            format!("{route}?name=/app/prod/db-url"),
            "/app/prod/db-url",
            false,
            None,
        ),
        (
            format!("{route}?name=/app/prod/db-url&version=1"),
            "/app/prod/db-url:1",
            false,
            Some(":1"),
        ),
        (
            format!("{route}?name=/app/prod/db-url&label=prod"),
            "/app/prod/db-url:prod",
            false,
            Some(":prod"),
        ),
        (
            format!("{route}?name=/app/prod/password"),
            "/app/prod/password",
            false,
            None,
        ),
        (
            format!("{route}?name=/app/prod/password&withDecryption=true"),
            "/app/prod/password",
            true,
            None,
        ),
        (
            format!("{route}?name=%2Fapp%2Flist&withDecryption=false"),
            "/app/list",
            false,
            None,
        ),
    ];
    for (target, asked, decrypt, selector) in &cases {
        let moto_says = held(&ssm, asked, *decrypt).await;
        let r = http::get(served.addr, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.describe());
        let body = r.json();
        let p = &body["Parameter"];
        assert_eq!(body["ResultMetadata"], serde_json::json!({}), "{target}");
        assert!(
            p["Value"].as_str() == moto_says.value(),
            "{target}: Value is not moto's"
        );
        assert_eq!(p["Name"].as_str(), moto_says.name(), "{target}");
        assert_eq!(p["Version"].as_i64(), Some(moto_says.version()), "{target}");
        assert_eq!(
            p["Type"].as_str(),
            moto_says.r#type().map(|t| t.as_str()),
            "{target}"
        );
        assert_eq!(p["ARN"].as_str(), moto_says.arn(), "{target}");
        assert_eq!(p["DataType"].as_str(), moto_says.data_type(), "{target}");
        let when = moto_says.last_modified_date().unwrap().as_secs_f64();
        assert!(
            (p["LastModifiedDate"].as_f64().unwrap() - when).abs() < 0.001,
            "{target}: LastModifiedDate"
        );
        assert_eq!(p["Selector"].as_str(), *selector, "{target}");
    }
    // withDecryption=false leaves a SecureString encrypted, =true decrypts it: two answers.
    let plain = http::get(
        served.addr,
        &format!("{route}?name=/app/prod/password&withDecryption=true"),
    )
    .await;
    let cipher = http::get(served.addr, &format!("{route}?name=/app/prod/password")).await;
    assert!(plain.json()["Parameter"]["Value"] == PASSWORD, "decrypted");
    assert!(
        cipher.json()["Parameter"]["Value"] != PASSWORD,
        "not decrypted by default"
    );

    // A secret through Parameter Store, as moto answers it.
    let reference = "/aws/reference/secretsmanager/via/ssm";
    let r = http::get(
        served.addr,
        &format!("{route}?name={reference}&withDecryption=true"),
    )
    .await;
    assert_eq!(r.status, 200, "{reference}: {}", r.describe());
    assert!(
        r.json()["Parameter"]["Value"] == V1,
        "{reference}: not the secret's value"
    );

    // Refusals: the service's status and __type, the secrets routes' checks.
    let r = http::get(served.addr, &format!("{route}?name=/app/nope")).await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["__type"], "ParameterNotFound");
    let r = http::get(served.addr, &format!("{route}?name=/app/prod/db-url:1")).await;
    assert_eq!(r.status, 400, "a ':' in the name: {}", r.describe());
    let r = http::get(
        served.addr,
        &format!("{route}?name=/app/prod/db-url&version=9"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["__type"], "ParameterVersionNotFound");
    let r = http::get(
        served.addr,
        &format!("{route}?name=/app/prod/db-url&version=1&label=prod"),
    )
    .await;
    assert_eq!(r.status, 400, "version and label: {}", r.describe());
    let r = Conn::tcp(served.addr)
        .await
        .get(&format!("{route}?name=/app/list"), &[])
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "Bad Token"),
        "no token"
    );
    let r = Conn::tcp(served.addr)
        .await
        .send(
            "POST",
            &format!("{route}?name=/app/list"),
            &[(TOKEN_HEADER, TOKEN)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 405, "POST");
    let r = Conn::tcp(served.addr)
        .await
        .get(
            &format!("{route}?name=/app/list"),
            &[(TOKEN_HEADER, TOKEN), ("X-Forwarded-For", "10.0.0.1")],
        )
        .await;
    assert_eq!(r.status, 400, "forwarded");
}

/// The Lambda extension's variables reach their settings, below our own variables.
#[tokio::test]
async fn extension_variables_map_onto_settings_below_ours() {
    let env = [
        ("SSM_PARAMETER_STORE_TTL", "42"),
        ("SECRETS_MANAGER_TTL", "9"),
        ("SECRETSFS_TTL", "7"),
        ("SECRETS_MANAGER_TIMEOUT_MILLIS", "1500"),
        ("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "0"),
        ("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE", "100"),
        ("PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS", "5"),
        ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "NONE"),
    ];
    let mut command = crate::support::cli::command(&["check-config"], &env);
    let out = tokio::time::timeout(crate::support::cli::DEADLINE, command.output())
        .await
        .expect("check-config finishes")
        .expect("secretsfs runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "ssm_ttl = 42    # flag or environment",
        "ttl = 7    # flag or environment",
        "timeout = 2    # flag or environment",
        "ssm_timeout = 300    # flag or environment",
        "cache_size = 100    # flag or environment",
        "max_conn = 5    # flag or environment",
        "log_level = off    # flag or environment",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
}

/// On the Unix socket, the parameters route is judged by the caller's uid and the policy, as
/// the secrets routes are: by the parameter's name, before any call for a denied one.
#[tokio::test]
async fn ssm_http_route_on_the_unix_socket_follows_the_policy() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    sample(&ssm).await;
    put(&ssm, "/app/public/motd", V1, ParameterType::String).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[[policy]]\npath = \"/app/public/**\"\nmode = \"0444\"\n",
    )
    .unwrap();
    let dir = http::public_tempdir();
    let socket = dir.path().join("api.sock");
    let mut global = crate::support::cli::aws_args(&moto.endpoint_url());
    global.extend(["--config".into(), config.path().to_str().unwrap().into()]);
    let mut args = strs(&global);
    args.extend(["serve", "--http-port", "0", "--http-socket"]);
    args.push(socket.to_str().unwrap());
    let _served = Served::start(&args).await;

    let route = "/systemsmanager/parameters/get";
    let (status, body) =
        http::get_as_nobody(&socket, &format!("{route}?name=/app/public/motd"), &[]);
    assert_eq!(status, 200, "public as uid 65534");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["Parameter"]["Value"] == V1, "public: not its value");
    for name in ["/app/prod/db-url", "/app/prod/password", "/app/list"] {
        let (status, body) = http::get_as_nobody(
            &socket,
            &format!("{route}?name={name}&withDecryption=true"),
            &[],
        );
        assert_eq!(status, 403, "{name} as uid 65534");
        assert!(
            !String::from_utf8_lossy(&body).contains("postgres"),
            "{name}: a refusal carries no value"
        );
    }
    // Root owns everything the policy leaves to the default modes.
    let r = Conn::unix(&socket)
        .await
        .get(&format!("{route}?name=/app/prod/db-url"), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
}

/// The value of the counter line `name{labels}` (or `name`) in a /metrics text.
fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The parameters route's engines are refreshed ahead of their TTL while read, as secrets are,
/// and /metrics counts them apart, under Parameter Store's operation names.
#[tokio::test]
async fn ssm_http_route_refreshes_ahead_and_metrics_count_it_apart() {
    let moto = Moto::start();
    let ssm = moto.ssm_client().await;
    sample(&ssm).await;
    let global = crate::support::cli::aws_args(&moto.endpoint_url());
    let mut args = strs(&global);
    args.extend([
        "--ssm-ttl",
        "2",
        "--ttl-jitter",
        "0",
        "serve",
        "--http-port",
        "0",
    ]);
    let served = Served::start(&args).await;
    let target = "/systemsmanager/parameters/get?name=/app/list";
    // Read every 100 ms for three TTLs: every fetch after the first is made ahead.
    for _ in 0..60 {
        let r = http::get(served.addr, target).await;
        assert_eq!(r.status, 200, "{}", r.describe());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = Conn::tcp(served.addr)
        .await
        .get("/metrics", &[])
        .await
        .text();
    let ahead = counter(&text, "secretsfs_parameters_cache_refreshes_ahead_total");
    let misses = counter(&text, "secretsfs_parameters_cache_misses_total");
    let calls = counter(
        &text,
        "secretsfs_parameters_upstream_calls_total{operation=\"GetParameter\"}",
    );
    assert!(ahead >= 2, "refreshes ahead: {ahead}");
    assert_eq!(misses, 1, "only the first read waited");
    assert_eq!(calls, ahead + misses, "each fetch is one GetParameter");
    assert_eq!(
        counter(
            &text,
            "secretsfs_upstream_calls_total{operation=\"GetSecretValue\"}"
        ),
        0,
        "nothing counted as Secrets Manager"
    );
}
