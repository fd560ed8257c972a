//! The HTTP API, end to end: `secretsfs serve` (and `mount`) as a child process, spoken to
//! over raw HTTP/1.1, against the AWS Secrets Manager Agent's behaviour
//! (notes/agent-http.md), the fake Secrets Manager and moto.
//!
//! Failure messages name requests, never secret values: a body that carries a secret is
//! described by its size.

mod connections;
mod hardening;
mod malformed;
mod metrics;
mod moto;
mod mount;
mod oversized;
mod parity;
mod roles;
mod socket;
mod token;
mod upstream;

use crate::support::cli::demo_source;
use crate::support::http::Served;

const API_KEY_BODY: &str = r#"{"ARN":"arn:aws:secretsmanager:local:000000000000:secret:api-key","Name":"api-key","VersionId":"b1b2c3d4-0000-4000-8000-000000000001","SecretString":"demo-api-key-0123456789","VersionStages":["AWSCURRENT"],"CreatedDate":"1779278400"}"#;

/// `secretsfs GLOBAL serve --http-port 0 SERVE_ARGS` with the default token.
async fn serve(global: &[&str], serve_args: &[&str]) -> Served {
    let mut args = global.to_vec();
    args.extend(["serve", "--http-port", "0"]);
    args.extend(serve_args);
    Served::start(&args).await
}

async fn serve_demo() -> Served {
    serve(&["--source", &demo_source()], &[]).await
}

fn error_body(code: &str, message: &str) -> String {
    format!(
        r#"{{"__type":{},"message":{}}}"#,
        serde_json::to_string(code).unwrap(),
        serde_json::to_string(message).unwrap()
    )
}
