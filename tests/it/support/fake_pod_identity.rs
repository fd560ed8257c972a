//! A fake EKS Pod Identity Agent (plain HTTP on 127.0.0.1): `GET /v1/credentials` with the pod's
//! service account token as the raw `Authorization` header gives the credentials of the role
//! associated with it, as the agent on 169.254.170.23 does.
//!
//! Tokens are kept only to be compared; nothing here prints one, nor the credentials it hands
//! out (dummies, but the habit is what keeps real ones out of logs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::header::AUTHORIZATION;
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde_json::json;

use super::jwt::{now_secs, rfc3339};
use super::local_server::{Answer, LocalServer, json_answer};

pub const ACCOUNT_ID: &str = "123456789012";
/// The SecretAccessKey and Token of every credential handed out: test strings, not secrets.
pub const SECRET_ACCESS_KEY: &str = "fake-pod-identity-secret-access-key";
pub const SESSION_TOKEN: &str = "fake-pod-identity-session-token";

const CREDENTIALS_PATH: &str = "/v1/credentials";

#[derive(Default)]
struct State {
    /// Token accepted → the AccessKeyId of its credentials.
    allowed: HashMap<String, String>,
    calls: usize,
}

pub struct FakePodIdentityAgent {
    state: Arc<Mutex<State>>,
    server: LocalServer,
}

impl FakePodIdentityAgent {
    pub fn start() -> FakePodIdentityAgent {
        let state: Arc<Mutex<State>> = Arc::default();
        let by_server = Arc::clone(&state);
        let server = LocalServer::start("fake pod identity agent", move |parts| {
            answer(&mut by_server.lock().unwrap(), parts)
        });
        FakePodIdentityAgent { state, server }
    }

    /// `http://127.0.0.1:PORT/v1/credentials`, as `AWS_CONTAINER_CREDENTIALS_FULL_URI` holds it.
    pub fn url(&self) -> String {
        format!("http://{}{CREDENTIALS_PATH}", self.server.addr())
    }

    /// Accepts `token`, answering it with credentials whose AccessKeyId is `access_key_id`.
    pub fn allow(&self, token: &str, access_key_id: &str) {
        self.state
            .lock()
            .unwrap()
            .allowed
            .insert(token.to_owned(), access_key_id.to_owned());
    }

    /// How many requests for credentials came, whatever their answer.
    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }
}

fn answer(state: &mut State, parts: &Parts) -> Answer {
    if parts.method != Method::GET || parts.uri.path() != CREDENTIALS_PATH {
        return error(StatusCode::NOT_FOUND, "NotFoundException", "Not found");
    }
    state.calls += 1;
    // The raw token, no scheme; an empty header is as good as none.
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidTokenException",
            "Service account token cannot be empty",
        );
    };
    let Some(access_key_id) = state.allowed.get(token) else {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "The service account token is not valid for any pod identity association",
        );
    };
    json_answer(
        StatusCode::OK,
        &json!({
            "AccessKeyId": access_key_id,
            "SecretAccessKey": SECRET_ACCESS_KEY,
            "Token": SESSION_TOKEN,
            "AccountId": ACCOUNT_ID,
            "Expiration": rfc3339(now_secs() + 3600),
        }),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    json_answer(status, &json!({"code": code, "message": message}))
}
