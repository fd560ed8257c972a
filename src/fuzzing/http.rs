//! The HTTP API target: a request line and a token header through `Api::handle`, over an
//! in-memory source, without a socket (the request parsing of hyper is hyper's).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};

use super::check_message;
use crate::cache::CacheConfig;
use crate::caller::Caller;
use crate::engine::Engine;
use crate::http::agent::Peer;
use crate::http::token::Token;
use crate::http::{Api, HttpSettings};
use crate::policy::{self, Defaults, Policy, RuleSpec};
use crate::source::memory::MemorySource;

const TOKEN: &str = "fuzz-token-4c1d";
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";
/// The values of the source; no answer but a 200 may hold one.
const VALUES: [&str; 2] = ["Zq7-s3cret-value-db", "Zq7-s3cret-value-api"];

struct World {
    runtime: tokio::runtime::Runtime,
    api: Api,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let source = Arc::new(MemorySource::new());
        source.put("prod/db", VALUES[0]);
        source.put("prod/db", &format!(r#"{{"password":"{}"}}"#, VALUES[0]));
        source.put("app/api-key", VALUES[1]);
        let engine = Arc::new(Engine::new(source, CacheConfig::default()));
        let rules: Vec<RuleSpec> =
            toml::from_str::<std::collections::BTreeMap<String, Vec<RuleSpec>>>(
                "[[policy]]\npath = \"prod/**\"\nowner = 1000\nmode = \"0400\"\n",
            )
            .expect("the policy parses")
            .remove("policy")
            .unwrap_or_default();
        let defaults = Defaults {
            uid: 0,
            gid: 0,
            file_mode: policy::DEFAULT_FILE_MODE,
            dir_mode: policy::DEFAULT_DIR_MODE,
        };
        let policy = policy::shared(
            Policy::new(&rules, defaults, &policy::SystemDirectory).expect("the policy compiles"),
        );
        let token = Token::from_lookup(&["T".into()], |_| Some(TOKEN.into()))
            .expect("a token value")
            .expect("a token");
        let settings = HttpSettings {
            tcp: None,
            socket: None,
            max_conn: 10,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            path_prefix: "/v1/".into(),
            token_headers: vec![TOKEN_HEADER.into()],
        };
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            api: Api::new(engine, policy, Some(token), &settings).expect("the API"),
        }
    })
}

/// The input: a flags byte, then the request target (`/secretsmanager/get?secretId=...`),
/// then, after a newline, the token header's value. The flags pick the method, the peer (TCP,
/// or the Unix socket as uid 0, 1000 or 1001), whether the right token replaces the fuzzed one,
/// and whether an `X-Forwarded-For` is sent.
///
/// Every answer has a status docs/http-api.md documents, no refusal holds a value, and every
/// refusal's body is one line.
pub fn http(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (target, header) = match rest.iter().position(|b| *b == b'\n') {
        Some(n) => (&rest[..n], Some(&rest[n + 1..])),
        None => (rest, None),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let method =
        [Method::GET, Method::POST, Method::HEAD, Method::PUT][usize::from(flags & 3)].clone();
    let peer = match (flags >> 2) & 3 {
        0 | 1 => Peer::Tcp,
        2 => Peer::Unix(Caller::with_groups(0, 0, None, Vec::new())),
        _ => Peer::Unix(Caller::with_groups(
            1000 + u32::from(flags >> 7),
            100,
            None,
            Vec::new(),
        )),
    };
    let mut request = Request::builder().method(method).uri(target);
    let token: &[u8] = if flags & 0x10 != 0 {
        TOKEN.as_bytes()
    } else {
        header.unwrap_or_default()
    };
    if header.is_some() || flags & 0x10 != 0 {
        request = request.header(TOKEN_HEADER, token);
    }
    if flags & 0x20 != 0 {
        request = request.header("x-forwarded-for", "127.0.0.1");
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let world = world();
    let response = world.runtime.block_on(async {
        let response = world
            .api
            .handle(request, &peer, Duration::from_secs(5))
            .await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, body)
    });
    let (status, body) = response;
    assert!(
        [200, 400, 403, 404, 405, 500, 502, 504].contains(&status.as_u16()),
        "status {status} is not one the API answers"
    );
    if status != StatusCode::OK {
        let body = String::from_utf8_lossy(&body);
        let values = VALUES.map(str::to_owned);
        check_message(
            &format!("a {status} answer"),
            &body,
            &values,
            &asked(target),
        );
    }
}

/// What the request itself says, decoded as the API decodes it: a refusal may repeat it.
fn asked(target: &str) -> Vec<String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut asked = vec![
        target.to_owned(),
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned(),
    ];
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        asked.extend([k.into_owned(), v.into_owned()]);
    }
    asked
}
