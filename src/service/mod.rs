//! The life of a long-running command (docs/ARCHITECTURE.md#process-lifecycle), the same for
//! every front end: **prepare** (watch the signals, before anything can be half-built),
//! **build** (source, engine, policy: [`Built`]), **serve** (the front end starts, then
//! [`run`] delivers changes, re-reads the config on SIGHUP and waits for a stop) and **stop**
//! (the front end's [`FrontEnd::stop`], then one line with the cache's figures).
//!
//! A front end is what [`FrontEnd`] asks of it: `mount` ([`mount`]) and `serve` ([`serve`])
//! are the two today; a third adds one more module here, and nothing in the others changes.

pub mod csi;
pub mod http;
pub mod mount;
pub mod serve;

use std::sync::Arc;

use futures::FutureExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::Cli;
use crate::daemon::{self, Readiness, StopSignals};
use crate::engine::Engine;
use crate::engine::roles;
use crate::error::{Error, ErrorKind, Result};
use crate::fuse::templates::Templates;
use crate::hooks::Hooks;
use crate::policy::{self, Policy, SharedPolicy, SystemDirectory};
use crate::settings::Settings;
use crate::source::aws::AwsSource;
use crate::source::file::FileSource;
use crate::source::ssm::{Shape, SsmSource};
use crate::source::{DynSource, SourceSpec};
use crate::watch::{AbortOnDrop, BeforeTelling, Fire, PathOf, WatchPattern, Watcher};

/// The signals a service answers, watched from before anything is built: a stop that arrives
/// early must stop it cleanly, and SIGHUP's default action would end it.
pub struct Prepared {
    pub stop: StopSignals,
    hangup: Signal,
}

pub fn prepare() -> Result<Prepared> {
    let hangup = signal(SignalKind::hangup())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("signals: {e}")))?;
    Ok(Prepared {
        stop: StopSignals::install()?,
        hangup,
    })
}

/// What every front end serves from, built once from the settings.
pub struct Built {
    pub engine: Arc<Engine>,
    pub policy: SharedPolicy,
    /// How the HTTP API's `roleArn` gets a source (the aws source only).
    pub roles: Option<roles::Connect>,
}

/// Builds the source (checking its credentials up front, as a long-running front end must),
/// the engine over it and the access policy.
pub async fn build(settings: &Settings) -> Result<Built> {
    let (source, roles) = build_source_and_roles(settings, true).await?;
    Ok(Built {
        engine: Arc::new(Engine::new(source, settings.source_cache())),
        policy: policy::shared(build_policy(settings)?),
        roles,
    })
}

/// Builds the source; a long-running front end also checks its credentials up front.
pub async fn build_source(settings: &Settings, check_credentials: bool) -> Result<DynSource> {
    Ok(build_source_and_roles(settings, check_credentials).await?.0)
}

/// The source, and how to build the source of a role of the HTTP API's `roleArn` (the aws
/// source only): assumed on the base credentials, not on `role_arn`'s.
async fn build_source_and_roles(
    settings: &Settings,
    check_credentials: bool,
) -> Result<(DynSource, Option<roles::Connect>)> {
    Ok(match &settings.source {
        SourceSpec::Aws => {
            let source = Arc::new(AwsSource::connect(&settings.aws).await?);
            if check_credentials && settings.validate_credentials {
                source.check_credentials().await?;
            }
            let base = source.clone();
            let connect: roles::Connect = Arc::new(move |role_arn: String| {
                let base = base.clone();
                async move { Ok(Arc::new(base.assume_role(&role_arn).await?) as DynSource) }.boxed()
            });
            (source, Some(connect))
        }
        SourceSpec::Ssm => {
            let source = SsmSource::connect(&settings.ssm_aws, true, Shape::Value).await?;
            if check_credentials && settings.validate_credentials {
                source.check_credentials().await?;
            }
            (Arc::new(source), None)
        }
        SourceSpec::File(path) => (Arc::new(FileSource::open(path)?), None),
    })
}

pub fn build_policy(settings: &Settings) -> Result<Policy> {
    Policy::new(
        &settings.sections.policy,
        settings.defaults,
        &SystemDirectory,
    )
}

/// A front end, as the life of the service runs it once it has started.
// Its futures are awaited in place on `main`'s runtime, never spawned: no `Send` bound needed.
#[allow(async_fn_in_trait)]
pub trait FrontEnd {
    /// Done before the hooks hear of a change, so that they see what readers will (the mount
    /// makes the kernel forget the changed secret's entries).
    fn before_telling(&self) -> Option<BeforeTelling> {
        None
    }

    /// Where a change's secret is for the hooks' `SECRETSFS_PATH`.
    fn path_of(&self) -> Option<PathOf> {
        None
    }

    /// Done when SIGHUP replaced the policy (the mount drops the owners, groups and modes the
    /// kernel caches).
    fn policy_changed(&self) -> Option<PolicyChanged> {
        None
    }

    /// Serves until a stop signal (its name) or until the front end ends by itself (`None`:
    /// the mount was unmounted from outside).
    async fn serve(&mut self, stop: &mut StopSignals) -> Option<&'static str>;

    /// Stops after [`FrontEnd::serve`] returned `signal`; the message of the last log line.
    async fn stop(self, signal: Option<&'static str>) -> &'static str;

    /// Where the front end serves, if it is a path (the last log line names it).
    fn mountpoint(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// What a front end does when the policy changes.
pub type PolicyChanged = Box<dyn Fn() + Send + Sync>;

/// Serves a started front end to the end: changes delivered to the hooks, SIGHUP answered,
/// readiness told (to a waiting parent and to systemd), then the stop.
pub async fn run(
    prepared: Prepared,
    cli: &Cli,
    settings: Settings,
    built: &Built,
    hooks: HookWiring,
    readiness: &mut Readiness,
    mut front: impl FrontEnd,
) -> Result<()> {
    let Prepared { mut stop, hangup } = prepared;
    let mut hooks = hooks;
    hooks.path_of = front.path_of();
    let deliveries = deliver_changes(
        built.engine.clone(),
        &settings,
        hooks,
        front.before_telling(),
    );
    readiness.ready();
    daemon::notify_systemd(sd_notify::NotifyState::Ready);
    let reload = tokio::spawn(reload_on_sighup(
        hangup,
        cli.clone(),
        settings,
        built.policy.clone(),
        front.policy_changed(),
    ));
    let signal = front.serve(&mut stop).await;
    if signal.is_some() {
        daemon::notify_systemd(sd_notify::NotifyState::Stopping);
    }
    let mountpoint = front.mountpoint();
    // The front end stops first (the mount unmounts), while changes are still delivered and
    // SIGHUP still answered, as a process that is not yet stopped should.
    let how = front.stop(signal).await;
    reload.abort();
    deliveries.abort();
    let stats = serde_json::to_string(&built.engine.stats()).unwrap_or_default();
    match mountpoint {
        Some(path) => {
            tracing::info!(target: "secretsfs::run", mountpoint = %path.display(), stats = %stats, "{how}")
        }
        None => tracing::info!(target: "secretsfs::run", signal, stats = %stats, "{how}"),
    }
    Ok(())
}

/// The tasks that keep values in use fresh and tell of changes: the refresher, and a watcher
/// that makes the front ends serve a rotation (`before`) before it tells the hooks. Aborting
/// the handle stops both.
fn deliver_changes(
    engine: Arc<Engine>,
    settings: &Settings,
    hooks: HookWiring,
    before: Option<BeforeTelling>,
) -> tokio::task::JoinHandle<()> {
    let refresher = tokio::spawn(engine.clone().refresh_ahead());
    let mut watcher = Watcher::new(engine, hooks.patterns, settings.cache.list_ttl, hooks.fire);
    if let Some(before) = before {
        watcher = watcher.before_telling(before);
    }
    if let Some(path_of) = hooks.path_of {
        watcher = watcher.with_paths(path_of);
    }
    tokio::spawn(async move {
        let _stop_refreshing = AbortOnDrop(refresher);
        watcher.run().await;
    })
}

/// The config file's hooks, as the watcher takes them.
pub struct HookWiring {
    patterns: Vec<Vec<WatchPattern>>,
    fire: Fire,
    path_of: Option<PathOf>,
}

/// Starts the hooks of the config file (resolving their users, which may fail); the path of a
/// change in the mount is filled in by the watcher. A hook may name a template of the mount by
/// its path: it watches what the template reads.
pub fn hooks(settings: &Settings, templates: Option<&Templates>) -> Result<HookWiring> {
    let specs = &settings.sections.hook;
    let hooks = Hooks::new(specs)?;
    let mut patterns = Vec::new();
    for spec in specs {
        let mut group = Vec::new();
        for watched in &spec.secrets {
            match templates.and_then(|t| t.get(watched.trim_matches('/'))) {
                Some(template) => {
                    for input in template.template.inputs() {
                        group.push(WatchPattern::parse(&input.to_string())?);
                    }
                }
                None => group.push(WatchPattern::parse(watched)?),
            }
        }
        patterns.push(group);
    }
    if !specs.is_empty() {
        tracing::info!(target: "secretsfs::run", hooks = specs.len(), "change hooks armed");
    }
    let fire: Fire = Arc::new(move |index, change| hooks.fire(index, change));
    Ok(HookWiring {
        patterns,
        fire,
        path_of: None,
    })
}

/// On SIGHUP: re-read the config file and swap in the new policy; a bad file is logged and
/// the old settings kept. Other keys take effect at the next start, and say so.
async fn reload_on_sighup(
    mut hangup: Signal,
    cli: Cli,
    mut current: Settings,
    policy: SharedPolicy,
    policy_changed: Option<PolicyChanged>,
) {
    while hangup.recv().await.is_some() {
        let reloaded = cli
            .settings()
            .and_then(|s| build_policy(&s).map(|p| (s, p)));
        match reloaded {
            Ok((settings, new_policy)) => {
                policy.store(Arc::new(new_policy));
                if let Some(policy_changed) = &policy_changed {
                    policy_changed();
                }
                let changed = settings.changed_at_restart(&current);
                tracing::info!(target: "secretsfs::run",
                    rules = settings.sections.policy.len(),
                    "SIGHUP: configuration re-read; policy replaced"
                );
                if !changed.is_empty() {
                    tracing::warn!(target: "secretsfs::run", keys = ?changed, "these keys changed and take effect at the next start");
                }
                current = settings;
            }
            Err(e) => {
                tracing::error!(target: "secretsfs::run", error = %e, "SIGHUP: the new configuration is invalid; keeping the old one")
            }
        }
    }
}
