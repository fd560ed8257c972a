//! Starting the HTTP API, alone (`serve`) or beside the mount.

use std::sync::Arc;

use super::Built;
use crate::engine::roles::Roles;
use crate::error::{Error, Result};
use crate::http::listen::{self, Listening};
use crate::http::token::Token;
use crate::http::{Api, ParameterEngines};
use crate::settings::{HttpOptions, Settings};

/// Whether the TCP listener runs: only with a token, as in the agent. `serve` and an explicit
/// `http_port` insist on one; a mount without one goes on without TCP and says so once.
fn tcp_token(keys: &HttpOptions, insist: bool) -> Result<Option<Token>> {
    let token = Token::from_env(&keys.ssrf_env_variables)?;
    if token.is_none() {
        let names = keys.ssrf_env_variables.join(", ");
        if insist || keys.http_port.is_some() {
            return Err(Error::config(format!(
                "no SSRF token for the HTTP API: set one of {names} (a value, or file://PATH)"
            )));
        }
        tracing::warn!(target: "secretsfs::run", "no SSRF token is set ({names}): the HTTP API's TCP listener is off");
    }
    Ok(token)
}

/// Starts the listeners the settings ask for; none (and `None`) when neither TCP (no token)
/// nor a socket is on.
pub async fn start(
    built: &Built,
    settings_all: &Settings,
    insist_on_tcp: bool,
) -> Result<Option<Listening>> {
    let keys = &settings_all.http;
    let token = tcp_token(keys, insist_on_tcp)?;
    let settings = keys.listeners(token.is_some());
    if settings.tcp.is_none() && settings.socket.is_none() {
        return Ok(None);
    }
    let mut api =
        Api::new(built.engine.clone(), built.policy.clone(), token, &settings)?.with_parameters(
            ParameterEngines::new(settings_all.ssm_aws.clone(), settings_all.ssm_cache),
        );
    if let Some(connect) = &built.roles {
        api = api.with_roles(Arc::new(
            Roles::new(built.engine.clone(), connect.clone(), keys.max_roles).refreshing_ahead(),
        ));
    }
    let api = Arc::new(api);
    Ok(Some(listen::start(api, &settings).await?))
}
