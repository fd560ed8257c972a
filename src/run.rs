//! Running a parsed command line: resolve the settings, build the source and the engine, then
//! do the command.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::Arc;

use futures::FutureExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{Cli, Command, GetArgs, MountArgs, RenderArgs, ServeArgs, WatchArgs};
use crate::daemon::{self, Readiness};
use crate::engine::roles::{self, Roles};
use crate::engine::{Change, Engine};
use crate::error::{Error, ErrorKind, Result};
use crate::fuse::fs::SecretsFs;
use crate::fuse::namespace::Namespace;
use crate::fuse::templates::Templates;
use crate::fuse::{handover, mount};
use crate::hooks::Hooks;
use crate::http::listen::{self, Listening};
use crate::http::token::Token;
use crate::http::{Api, ParameterEngines};
use crate::policy::{self, Policy, SharedPolicy, SystemDirectory};
use crate::selector::Selector;
use crate::settings::{HttpOptions, Settings};
use crate::source::aws::AwsSource;
use crate::source::file::FileSource;
use crate::source::ssm::{Shape, SsmSource};
use crate::source::{DynSource, SourceSpec};
use crate::template::Template;
use crate::watch::{AbortOnDrop, BeforeTelling, Fire, PathOf, WatchPattern, Watcher};

/// The settings a command runs with, resolved from its flags, environment and config file.
pub fn settings_for(cli: &Cli) -> Result<Settings> {
    Settings::resolve(&cli.given, cli.global.config.as_deref())
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

/// Runs the command; its exit code (COMMAND's, for `watch`).
pub async fn run(cli: Cli, settings: Settings, readiness: &mut Readiness) -> Result<u8> {
    let done = match &cli.command {
        Command::Get(args) => get(&settings, args).await,
        Command::Mount(args) => mount(&cli, args, settings, readiness).await,
        Command::Serve(args) => serve(&cli, args, settings).await,
        Command::Watch(args) => return watch(&settings, args).await,
        Command::Render(args) => render(&settings, args).await,
        Command::StopPost(args) => crate::stop_post::run(args),
        Command::CheckConfig(_) => {
            check_settings(&settings)?;
            print!("{}", settings.render());
            Ok(())
        }
        Command::Man => {
            let page = crate::cli::man_page()
                .map_err(|e| Error::new(ErrorKind::Io, format!("rendering the man page: {e}")))?;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| Error::new(ErrorKind::Io, format!("writing to stdout: {e}")))
        }
    };
    done.map(|()| crate::cli::exit::OK)
}

async fn render(settings: &Settings, args: &RenderArgs) -> Result<()> {
    // Compiled before the source is built: a template that does not parse costs nothing.
    let name = args.template.display().to_string();
    let (text, _) = crate::host_file::read_text(&args.template, crate::host_file::CONFIG)
        .map_err(|e| Error::config(format!("template {name}: cannot read it: {e}")))?;
    let template = Template::compile(&name, &text)?;
    let engine = Engine::new(
        build_source(settings, false).await?,
        settings.source_cache(),
    );
    let resolved = engine
        .render(&template)
        .await
        .map_err(|failure| failure.into_error(&name))?;
    write_out(resolved.bytes())
}

/// Writes a value to stdout; a reader that closed the pipe early (`| head -c 4`) got what it
/// wanted.
fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("writing to stdout: {e}"))),
    }
}

async fn watch(settings: &Settings, args: &WatchArgs) -> Result<u8> {
    // Checked before the source is built: a bad selector costs nothing upstream.
    for selector in &args.selectors {
        WatchPattern::parse(selector)?;
    }
    let engine = Arc::new(Engine::new(
        build_source(settings, true).await?,
        settings.source_cache(),
    ));
    crate::watch::command::supervise(engine, args, settings.cache.list_ttl).await
}

/// What `mount` refuses in its settings before it touches a mountpoint or the network, with
/// the same messages: `check-config` runs it so that it refuses what `mount` and `serve` do.
fn check_settings(settings: &Settings) -> Result<()> {
    namespace(settings)?;
    build_policy(settings)?;
    let templates = templates(settings)?;
    hooks(settings, Some(&templates))?;
    Ok(())
}

fn namespace(settings: &Settings) -> Result<Namespace> {
    match settings.source {
        SourceSpec::Ssm => Namespace::for_parameters(settings.layout, &settings.prefix),
        _ => Namespace::new(settings.layout, &settings.prefix),
    }
}

fn templates(settings: &Settings) -> Result<Templates> {
    Templates::new(
        &settings.sections.template,
        &settings.templates,
        &settings.defaults,
        &SystemDirectory,
    )
}

/// Gives a connection mounted here, with its journal, to systemd's file descriptor store;
/// whether the store now holds it (without a journal there is nothing a restart could resume).
fn give_to_store(fuse: &std::os::fd::OwnedFd, journal: Option<&[std::os::fd::OwnedFd; 2]>) -> bool {
    let Some(journal) = journal else {
        return false;
    };
    match handover::store(fuse.as_fd(), journal) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot give the mount to systemd's file descriptor \
                store; a restart will mount anew");
            false
        }
    }
}

fn build_policy(settings: &Settings) -> Result<Policy> {
    Policy::new(
        &settings.sections.policy,
        settings.defaults,
        &SystemDirectory,
    )
}

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
        tracing::warn!("no SSRF token is set ({names}): the HTTP API's TCP listener is off");
    }
    Ok(token)
}

async fn start_http(
    engine: Arc<Engine>,
    policy: SharedPolicy,
    settings_all: &Settings,
    insist_on_tcp: bool,
    roles: Option<roles::Connect>,
) -> Result<Option<Listening>> {
    let keys = &settings_all.http;
    let token = tcp_token(keys, insist_on_tcp)?;
    let settings = keys.listeners(token.is_some());
    if settings.tcp.is_none() && settings.socket.is_none() {
        return Ok(None);
    }
    let mut api = Api::new(engine.clone(), policy, token, &settings)?.with_parameters(
        ParameterEngines::new(settings_all.ssm_aws.clone(), settings_all.ssm_cache),
    );
    if let Some(connect) = roles {
        api = api.with_roles(Arc::new(
            Roles::new(engine, connect, keys.max_roles).refreshing_ahead(),
        ));
    }
    let api = Arc::new(api);
    Ok(Some(listen::start(api, &settings).await?))
}

async fn get(settings: &Settings, args: &GetArgs) -> Result<()> {
    // Parsed before the source is even built: an invalid selector costs nothing upstream.
    let selector = Selector::parse(&args.selector)?;
    let engine = Engine::new(
        build_source(settings, false).await?,
        settings.source_cache(),
    );
    let resolved = engine.get(&selector).await?;
    write_out(resolved.bytes())
}

async fn mount(
    cli: &Cli,
    args: &MountArgs,
    settings: Settings,
    readiness: &mut Readiness,
) -> Result<()> {
    let mut stop = daemon::StopSignals::install()?;
    let exec_signal = mount::watch_exec_signal()?;
    let hangup = watch_hangup()?;
    // A connection handed over is taken over only while a mount still uses it.
    let handed = handover::take().filter(|handed| {
        let alive = handed.is_alive();
        if !alive {
            tracing::warn!("the FUSE connection handed over has ended (unmounted); mounting anew");
        }
        alive
    });
    let mountpoint = match &handed {
        // Not probed: nothing answers the mount until this process does.
        Some(_) => std::path::absolute(&args.mountpoint)
            .map_err(|e| Error::config(format!("mountpoint: {e}")))?,
        None => mount::prepare_mountpoint(&args.mountpoint)?,
    };
    let to_store = args.fd_store
        || std::env::var("FDSTORE").is_ok_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0));
    let namespace = namespace(&settings)?;
    let (source, roles) = build_source_and_roles(&settings, true).await?;
    let engine = Arc::new(Engine::new(source, settings.source_cache()));
    let policy = policy::shared(build_policy(&settings)?);
    let templates = Arc::new(templates(&settings)?);
    let mut hook_wiring = hooks(&settings, Some(&templates))?;
    let fs = Arc::new(
        SecretsFs::new(
            engine.clone(),
            policy.clone(),
            namespace.clone(),
            settings.kernel_cache,
        )
        .presenting_only(settings.secrets.clone())
        .with_templates(templates),
    );
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let mounted_here = handed.is_none();
    let (session, fuse) = match handed {
        Some(handed) => {
            fs.resume_journal(handed.journal).map_err(|e| {
                Error::config(format!("cannot read the inode journal handed over: {e}"))
            })?;
            let taken = mount::take_over(
                fs.clone(),
                tokio::runtime::Handle::current(),
                handed.fuse,
                threads,
            )?;
            tracing::info!(mountpoint = %mountpoint.display(), pid = std::process::id(),
                "took over the mount from the previous process");
            taken
        }
        None => {
            let mounted = mount::mount(
                fs.clone(),
                tokio::runtime::Handle::current(),
                &mountpoint,
                threads,
            )?;
            if let Err(e) = fs.start_journal() {
                tracing::warn!(error = %e, "cannot journal the inode table; a restart will \
                    not take over this mount");
            }
            mounted
        }
    };
    let journal = match fs.journal_fds().transpose() {
        Ok(journal) => journal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep the inode journal for a hand-over");
            None
        }
    };
    // Taken over from the store: it still holds the connection. Mounted here: it must be given.
    let stored = to_store && (!mounted_here || give_to_store(&fuse, journal.as_ref()));
    if let Err(e) = mount::wait_until_answering(&mountpoint).await {
        if mounted_here {
            let _ = tokio::task::spawn_blocking(move || session.umount_and_join()).await;
        }
        return Err(e);
    }
    let http = if settings.http_enabled {
        match start_http(engine.clone(), policy.clone(), &settings, false, roles).await {
            Ok(http) => http,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || session.umount_and_join()).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    tracing::info!(mountpoint = %mountpoint.display(), pid = std::process::id(), "mounted");
    if let Some(list) = &settings.secrets {
        let fetch = prefetch_secrets_list(engine.clone(), list.names().to_vec());
        if settings.wait_for_secrets {
            fetch.await;
        } else {
            tokio::spawn(fetch);
        }
    }
    let forget = session.notifier();
    let fs_of_changes = fs.clone();
    let before: BeforeTelling = Arc::new(move |change: &Change| {
        mount::forget_secret(&forget, &fs_of_changes, &change.secret_id);
    });
    let root = mountpoint.clone();
    hook_wiring.path_of = Some(Arc::new(move |selector: &Selector| {
        namespace
            .path_of_selector(selector)
            .map(|path| root.join(path))
    }));
    let deliveries = deliver_changes(engine.clone(), &settings, hook_wiring, Some(before));
    readiness.ready();
    daemon::notify_systemd(sd_notify::NotifyState::Ready);
    let notifier = session.notifier();
    let policy_changed: PolicyChanged = Box::new(move || {
        let (notifier, fs) = (notifier.clone(), fs.clone());
        // Writes to /dev/fuse: off the runtime's threads.
        tokio::task::spawn_blocking(move || mount::forget_attributes(&notifier, &fs));
    });
    let reload = tokio::spawn(reload_on_sighup(
        hangup,
        cli.clone(),
        settings,
        policy,
        Some(policy_changed),
    ));
    let handover = mount::Handover {
        fuse,
        journal,
        stored,
        mounted_here,
        exec_signal,
    };
    let ended = mount::serve_until_stopped(session, &mountpoint, &mut stop, handover).await?;
    reload.abort();
    deliveries.abort();
    drop(http);
    let stats = serde_json::to_string(&engine.stats()).unwrap_or_default();
    let how = match ended {
        mount::Stop::LeftToStore => "stopped; the mount stays in the file descriptor store",
        mount::Stop::Unmounted => "unmounted",
    };
    tracing::info!(mountpoint = %mountpoint.display(), stats = %stats, "{how}");
    Ok(())
}

async fn serve(cli: &Cli, args: &ServeArgs, settings: Settings) -> Result<()> {
    let _ = args;
    let mut stop = daemon::StopSignals::install()?;
    let hangup = watch_hangup()?;
    let (source, roles) = build_source_and_roles(&settings, true).await?;
    let engine = Arc::new(Engine::new(source, settings.source_cache()));
    let policy = policy::shared(build_policy(&settings)?);
    let listening = start_http(engine.clone(), policy.clone(), &settings, true, roles)
        .await?
        .expect("serve always listens on TCP");
    // As the agent, one line on stdout says where, for scripts and tests to wait on.
    if let Some(addr) = listening.tcp_addr {
        println!(
            "secretsfs/{} listening on http://{addr}",
            env!("CARGO_PKG_VERSION")
        );
    }
    let deliveries = deliver_changes(engine.clone(), &settings, hooks(&settings, None)?, None);
    daemon::notify_systemd(sd_notify::NotifyState::Ready);
    let reload = tokio::spawn(reload_on_sighup(
        hangup,
        cli.clone(),
        settings,
        policy,
        None,
    ));
    let signal = stop.next().await;
    daemon::notify_systemd(sd_notify::NotifyState::Stopping);
    reload.abort();
    deliveries.abort();
    tracing::info!(signal, stats = %serde_json::to_string(&engine.stats()).unwrap_or_default(), "stopping");
    drop(listening);
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
struct HookWiring {
    patterns: Vec<Vec<WatchPattern>>,
    fire: Fire,
    path_of: Option<PathOf>,
}

/// Starts the hooks of the config file (resolving their users, which may fail); the path of a
/// change in the mount is filled in by the watcher. A hook may name a template of the mount by
/// its path: it watches what the template reads.
fn hooks(settings: &Settings, templates: Option<&Templates>) -> Result<HookWiring> {
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
        tracing::info!(hooks = specs.len(), "change hooks armed");
    }
    let fire: Fire = Arc::new(move |index, change| hooks.fire(index, change));
    Ok(HookWiring {
        patterns,
        fire,
        path_of: None,
    })
}

/// SIGHUP, watched from before the service is ready (its default action would end it).
fn watch_hangup() -> Result<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("signals: {e}")))
}

/// Fetches the `secrets` list's names at start, in batches where allowed, so that first reads
/// find them cached; a failure is the cache's to log, and the name is fetched again on use.
async fn prefetch_secrets_list(engine: Arc<Engine>, names: Vec<String>) {
    engine.prefetch_current(&names).await;
    let cached = names
        .iter()
        .filter(|n| !engine.needs_fetch_current(&Selector::whole(n.as_str())))
        .count();
    tracing::info!(names = names.len(), cached, "secrets list fetched");
}

/// What a front end does when the policy changes (the mount: make the kernel forget what it
/// caches of owners, groups and modes).
type PolicyChanged = Box<dyn Fn() + Send + Sync>;

/// On SIGHUP: re-read the config file and swap in the new policy; a bad file is logged and
/// the old settings kept. Other keys take effect at the next start, and say so.
async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    cli: Cli,
    mut current: Settings,
    policy: SharedPolicy,
    policy_changed: Option<PolicyChanged>,
) {
    while hangup.recv().await.is_some() {
        let reloaded = settings_for(&cli).and_then(|s| build_policy(&s).map(|p| (s, p)));
        match reloaded {
            Ok((settings, new_policy)) => {
                policy.store(Arc::new(new_policy));
                if let Some(policy_changed) = &policy_changed {
                    policy_changed();
                }
                let changed = settings.changed_at_restart(&current);
                tracing::info!(
                    rules = settings.sections.policy.len(),
                    "SIGHUP: configuration re-read; policy replaced"
                );
                if !changed.is_empty() {
                    tracing::warn!(keys = ?changed, "these keys changed and take effect at the next start");
                }
                current = settings;
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the old one")
            }
        }
    }
}
