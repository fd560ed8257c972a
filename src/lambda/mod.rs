//! `secretsfs lambda-extension`: secretsfs as an external Lambda extension, a drop-in layer for
//! the AWS Parameters and Secrets Lambda Extension (docs/lambda.md). Lambda runs
//! `/opt/extensions/secretsfs` with no arguments; `main` makes that this command when
//! `AWS_LAMBDA_RUNTIME_API` is set.
//!
//! Its life follows the Extensions API ([`api`]): register for INVOKE and SHUTDOWN, then Init
//! (build the engine, listen on the extension's port, prefetch), then one event after another
//! until SHUTDOWN. Between events Lambda may freeze the whole environment: nothing runs then,
//! so values are refreshed while an INVOKE is handled, and waited for before asking for the
//! next event (no fetch is left in flight to be frozen); and after a freeze longer than the
//! monotonic clock shows, every cached value is taken as due.

pub mod api;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use self::api::{ExtensionsApi, Phase, Registered};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::http::listen::Listening;
use crate::settings::Settings;

/// The variable Lambda sets for extensions and runtimes: the Extensions API's `HOST:PORT`.
pub const RUNTIME_API_VARIABLE: &str = "AWS_LAMBDA_RUNTIME_API";
/// Names to fetch during Init, comma-separated (the config file's `secrets` list too).
pub const PREFETCH_VARIABLE: &str = "SECRETSFS_PREFETCH";
/// The SSRF token of the extension's API: the function's session token, as the AWS extension
/// takes it, in its one header.
const TOKEN_VARIABLE: &str = "AWS_SESSION_TOKEN";
const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";
/// How long Init waits for the prefetch: it adds to every cold start.
const PREFETCH_DEADLINE: Duration = Duration::from_secs(5);
/// A freeze is noticed when the wall clock moved this much more than the monotonic one.
const FREEZE_SLACK: Duration = Duration::from_secs(1);

/// Runs the extension until SHUTDOWN; its exit code.
pub async fn run(mut settings: Settings) -> Result<u8> {
    let runtime_api = std::env::var(RUNTIME_API_VARIABLE).map_err(|_| {
        Error::config(format!(
            "{RUNTIME_API_VARIABLE} is not set: the extension is run by Lambda, from /opt/extensions/"
        ))
    })?;
    let api = ExtensionsApi::new(&runtime_api);
    let name = extension_name();
    let started = Instant::now();
    // Before registering, a failure has no one to be reported to but the log and the exit.
    let registered = api.register(&name).await?;
    settings.http.ssrf_env_variables = vec![TOKEN_VARIABLE.to_owned()];
    settings.http.ssrf_headers = vec![TOKEN_HEADER.to_owned()];
    let (engine, listening) = match init(&settings).await {
        Ok(ready) => ready,
        Err(err) => {
            report(&api, &registered, Phase::Init, &err).await;
            return Err(err);
        }
    };
    tracing::info!(target: "secretsfs::lambda", extension = %name,
        port = listening.tcp_addr.map(|a| a.port()),
        init_ms = started.elapsed().as_millis() as u64,
        "registered and listening");
    let mut clock = Clock::now();
    loop {
        let event = match api.next(&registered).await {
            Ok(event) => event,
            Err(err) => {
                report(&api, &registered, Phase::Running, &err).await;
                return Err(err);
            }
        };
        if clock.was_frozen_longer() {
            tracing::debug!(target: "secretsfs::lambda",
                "frozen longer than the monotonic clock shows: every cached value is due");
            engine.expire_all();
        }
        match event.event_type.as_str() {
            "INVOKE" => engine.refresh_due_now().await,
            "SHUTDOWN" => {
                drop(listening);
                tracing::info!(target: "secretsfs::lambda",
                    reason = event.shutdown_reason.as_deref().unwrap_or("-"), "shut down");
                return Ok(crate::cli::exit::OK);
            }
            other => {
                tracing::debug!(target: "secretsfs::lambda", event = other, "event ignored")
            }
        }
        clock.mark();
    }
}

/// Init: the engine, the HTTP API on the extension's port, and the prefetch, all before the
/// first `/event/next`. The prefetch runs here rather than after: Lambda runs the runtime's
/// own init beside the extensions', so it mostly overlaps that, and nothing is left in flight
/// to be frozen once Init ends; it is bounded by [`PREFETCH_DEADLINE`].
async fn init(settings: &Settings) -> Result<(Arc<Engine>, Listening)> {
    let built = crate::service::build(settings).await?;
    let listening = crate::service::http::start(&built, settings, true)
        .await?
        .ok_or_else(|| Error::config("the extension's HTTP API has no listener"))?;
    let mut names: Vec<String> = std::env::var(PREFETCH_VARIABLE)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(list) = &settings.secrets {
        names.extend(list.names().iter().cloned());
    }
    if !names.is_empty() {
        let fetched =
            tokio::time::timeout(PREFETCH_DEADLINE, built.engine.prefetch_current(&names)).await;
        if fetched.is_err() {
            tracing::warn!(target: "secretsfs::lambda", names = names.len(),
                deadline_s = PREFETCH_DEADLINE.as_secs(),
                "the prefetch did not finish during Init: the first requests fetch what it missed");
        }
    }
    Ok((built.engine, listening))
}

/// The name Lambda knows the extension by: its executable's file name.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "secretsfs".into())
}

/// Reports `err` to Lambda (and logs it); a report that fails is logged too.
async fn report(api: &ExtensionsApi, registered: &Registered, phase: Phase, err: &Error) {
    let error_type = match err.kind() {
        ErrorKind::Config => "Extension.ConfigurationError",
        ErrorKind::AccessDenied => "Extension.AccessDenied",
        ErrorKind::Unavailable => "Extension.Unavailable",
        _ => "Extension.InternalError",
    };
    tracing::error!(target: "secretsfs::lambda", error_type, error = %err, ?phase, "failed");
    if let Err(why) = api
        .report(registered, phase, error_type, err.message())
        .await
    {
        tracing::error!(target: "secretsfs::lambda", error = %why, "the failure could not be reported");
    }
}

/// The two clocks at the last event: a frozen environment's monotonic clock may not advance,
/// the wall clock does.
struct Clock {
    wall: SystemTime,
    monotonic: Instant,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            monotonic: Instant::now(),
        }
    }

    fn mark(&mut self) {
        *self = Clock::now();
    }

    fn was_frozen_longer(&self) -> bool {
        let wall = SystemTime::now()
            .duration_since(self.wall)
            .unwrap_or_default();
        wall > self.monotonic.elapsed() + FREEZE_SLACK
    }
}
