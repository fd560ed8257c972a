//! The HTTP front end (docs/ARCHITECTURE.md#life-of-an-http-request): the AWS Secrets Manager Agent's API over TCP
//! (token-guarded, as the agent) and over a Unix socket (the caller's uid decides, through the
//! access policy), served from the same engine, and so the same cache, as the mount.
//!
//! - [`agent`]: routes, parameters, checks and bodies, request by request;
//! - [`listen`]: listeners, the connection limit, timeouts, socket options, peer credentials;
//! - [`token`]: the SSRF token;
//! - [`metrics`]: the `/metrics` exposition.

pub mod agent;
pub mod listen;
pub mod metrics;
pub mod parameters;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName};
use hyper::{Request, Response, StatusCode};

use agent::{Body, Peer, Route};
pub use parameters::ParameterEngines;
use token::Token;

use secretsfs_core::engine::Engine;
use secretsfs_core::engine::roles::Roles;
use secretsfs_core::error::{Error, Result};
use secretsfs_core::policy::SharedPolicy;

pub const DEFAULT_PORT: u16 = 2773;
pub const DEFAULT_MAX_CONN: usize = 800;
pub const DEFAULT_PATH_PREFIX: &str = "/v1/";
/// The agent drops a connection after 61 s; here the bound is per request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(61);
/// A client gets this long to send a request's headers, so a silent one does not hold a slot.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The TCP address, if the TCP listener is on.
    pub tcp: Option<SocketAddr>,
    /// The Unix socket path, if that listener is on, and its mode.
    pub socket: Option<(PathBuf, u32)>,
    pub max_conn: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub path_prefix: String,
    pub token_headers: Vec<String>,
}

/// What every request handler shares.
pub struct Api {
    engine: Arc<Engine>,
    policy: SharedPolicy,
    token: Option<Token>,
    token_headers: Vec<HeaderName>,
    path_prefix: String,
    /// The engines of `roleArn`'s roles; `None` where the source cannot assume roles.
    roles: Option<Arc<Roles>>,
    /// The engines of the Parameter Store route; without them it answers 500.
    parameters: Option<ParameterEngines>,
}

impl Api {
    pub fn new(
        engine: Arc<Engine>,
        policy: SharedPolicy,
        token: Option<Token>,
        settings: &HttpSettings,
    ) -> Result<Self> {
        let token_headers = settings
            .token_headers
            .iter()
            .map(|h| {
                HeaderName::try_from(h.as_str())
                    .map_err(|_| Error::config(format!("invalid token header name {h:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if !settings.path_prefix.starts_with('/') {
            return Err(Error::config(format!(
                "invalid path prefix {:?}: it must begin with /",
                settings.path_prefix
            )));
        }
        // Installed before the first request, so that every answer and fetch is recorded.
        metrics::handle();
        Ok(Api {
            engine,
            policy,
            token,
            token_headers,
            path_prefix: settings.path_prefix.clone(),
            roles: None,
            parameters: None,
        })
    }

    /// Answers `roleArn` with these roles' engines (without: 400).
    pub fn with_roles(mut self, roles: Arc<Roles>) -> Self {
        self.roles = Some(roles);
        self
    }

    /// Serves `/systemsmanager/parameters/get` from these engines.
    pub fn with_parameters(mut self, parameters: ParameterEngines) -> Self {
        self.parameters = Some(parameters);
        self
    }

    /// Whether any token header carries the token (each compared in constant time).
    fn token_presented(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return false;
        };
        self.token_headers
            .iter()
            .filter_map(|name| headers.get(name))
            .any(|value| token.matches(value.as_bytes()))
    }

    /// Answers one request, within the request timeout, and counts the answer.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        peer: &Peer,
        timeout: Duration,
    ) -> Response<Body> {
        // Routed at once: a refusal, or a hit in the cache, is answered without a timer or
        // the request's future (a hit is most requests, and both cost more than the answer).
        let route = match agent::route(self, &req, peer) {
            Ok(route) => route,
            Err(r) => {
                metrics::count_response(r.status.as_u16());
                return agent::respond(r.status, r.body, r.json);
            }
        };
        let route = match route {
            Route::Get(query) => match agent::get_secret_cached(self, &query, peer) {
                Some(answer) => {
                    let response = match answer {
                        Ok(body) => agent::respond_bytes(StatusCode::OK, body, true),
                        Err(r) => agent::respond(r.status, r.body, r.json),
                    };
                    metrics::count_response(response.status().as_u16());
                    return response;
                }
                None => Route::Get(query),
            },
            other => other,
        };
        let response = match tokio::time::timeout(timeout, self.answer(route, peer)).await {
            Ok(response) => response,
            Err(_) => {
                let r = agent::refusal_for(&Error::upstream(
                    secretsfs_core::ErrorKind::Unavailable,
                    "request timed out",
                    secretsfs_core::error::Upstream {
                        code: "TimeoutError".into(),
                        status: None,
                        message: None,
                    },
                ));
                agent::respond(r.status, r.body, r.json)
            }
        };
        metrics::count_response(response.status().as_u16());
        response
    }

    async fn answer(&self, route: Route, peer: &Peer) -> Response<Body> {
        match route {
            Route::Ping => agent::respond(StatusCode::OK, "healthy".into(), false),
            Route::Metrics => {
                let parameters = self.parameters.as_ref().and_then(|p| p.stats());
                let mut response = agent::respond(
                    StatusCode::OK,
                    metrics::render(&self.engine, parameters.as_ref()),
                    false,
                );
                response.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            Route::Parameter(query) => {
                match agent::parameter::get_parameter(self, query, peer).await {
                    Ok(body) => agent::respond(StatusCode::OK, body, true),
                    Err(r) => agent::respond(r.status, r.body, r.json),
                }
            }
            Route::Get(query) => match agent::get_secret(self, query, peer).await {
                Ok(body) => agent::respond_bytes(StatusCode::OK, body, true),
                Err(r) => agent::respond(r.status, r.body, r.json),
            },
        }
    }
}
