//! Running a parsed command line: build the source and the engine, then do the command.

use std::io::Write;
use std::sync::Arc;

use crate::cli::{Cli, Command, GetArgs, GlobalArgs, HttpArgs, MountArgs, ServeArgs};
use crate::config::ConfigFile;
use crate::daemon::Readiness;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::fuse::core::Core;
use crate::fuse::mount;
use crate::fuse::namespace::Namespace;
use crate::http::Api;
use crate::http::listen::{self, Listening};
use crate::http::token::Token;
use crate::policy::{Policy, SystemDirectory};
use crate::selector::Selector;
use crate::source::aws::AwsSource;
use crate::source::file::FileSource;
use crate::source::{DynSource, SourceSpec};
use tokio::signal::unix::{SignalKind, signal};

/// Builds the source; a long-running front end also checks its credentials up front.
pub async fn build_source(global: &GlobalArgs, check_credentials: bool) -> Result<DynSource> {
    Ok(match &global.source {
        SourceSpec::Aws => {
            let source = AwsSource::connect(&global.aws_options()).await?;
            if check_credentials {
                source.check_credentials().await?;
            }
            Arc::new(source)
        }
        SourceSpec::File(path) => Arc::new(FileSource::open(path)?),
    })
}

pub async fn run(cli: Cli, readiness: &mut Readiness) -> Result<()> {
    match &cli.command {
        Command::Get(args) => get(&cli.global, args).await,
        Command::Mount(args) => mount(&cli.global, args, readiness).await,
        Command::Serve(args) => serve(&cli.global, args).await,
        Command::Man => {
            let page = crate::cli::man_page()
                .map_err(|e| Error::new(ErrorKind::Io, format!("rendering the man page: {e}")))?;
            std::io::stdout()
                .write_all(&page)
                .map_err(|e| Error::new(ErrorKind::Io, format!("writing to stdout: {e}")))
        }
    }
}

/// The policy of the defaults and the `--config` file's rules.
fn policy(global: &GlobalArgs) -> Result<Arc<Policy>> {
    let rules = match &global.config {
        Some(path) => ConfigFile::load(path)?.policy,
        None => Vec::new(),
    };
    Ok(Arc::new(Policy::new(
        &rules,
        global.policy_defaults(),
        &SystemDirectory,
    )?))
}

/// Whether the TCP listener runs: only with a token, as in the agent. `serve` and an explicit
/// `--http-port` insist on one; a mount without one goes on without TCP and says so once.
fn tcp_token(args: &HttpArgs, insist: bool) -> Result<Option<Token>> {
    let token = Token::from_env(&args.ssrf_env_variables)?;
    if token.is_none() {
        let names = args.ssrf_env_variables.join(", ");
        if insist || args.http_port.is_some() {
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
    policy: Arc<Policy>,
    args: &HttpArgs,
    insist_on_tcp: bool,
) -> Result<Option<Listening>> {
    let token = tcp_token(args, insist_on_tcp)?;
    let settings = args.settings(token.is_some());
    if settings.tcp.is_none() && settings.socket.is_none() {
        return Ok(None);
    }
    let api = Arc::new(Api::new(engine, policy, token, &settings)?);
    Ok(Some(listen::start(api, &settings).await?))
}

async fn serve(global: &GlobalArgs, args: &ServeArgs) -> Result<()> {
    let engine = Arc::new(Engine::new(
        build_source(global, true).await?,
        global.cache_config(),
    ));
    let listening = start_http(engine.clone(), policy(global)?, &args.http, true)
        .await?
        .expect("serve always listens on TCP");
    // As the agent, one line on stdout says where, for scripts and tests to wait on.
    if let Some(addr) = listening.tcp_addr {
        println!(
            "secretsfs/{} listening on http://{addr}",
            env!("CARGO_PKG_VERSION")
        );
    }
    let signal = wait_for_signal().await?;
    tracing::info!(signal, stats = %serde_json::to_string(&engine.stats()).unwrap_or_default(), "stopping");
    drop(listening);
    Ok(())
}

async fn wait_for_signal() -> Result<&'static str> {
    let signal_error = |e: std::io::Error| Error::new(ErrorKind::Internal, format!("signals: {e}"));
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

async fn get(global: &GlobalArgs, args: &GetArgs) -> Result<()> {
    // Parsed before the source is even built: an invalid selector costs nothing upstream.
    let selector = Selector::parse(&args.selector)?;
    let engine = Engine::new(build_source(global, false).await?, global.cache_config());
    let resolved = engine.get(&selector).await?;
    let mut out = std::io::stdout().lock();
    match out.write_all(resolved.bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A reader that closed the pipe early (`| head -c 4`) got what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("writing to stdout: {e}"))),
    }
}

async fn mount(global: &GlobalArgs, args: &MountArgs, readiness: &mut Readiness) -> Result<()> {
    let mountpoint = mount::prepare_mountpoint(&args.mountpoint)?;
    let namespace = Namespace::new(args.layout, &args.prefix)?;
    let engine = Arc::new(Engine::new(
        build_source(global, true).await?,
        global.cache_config(),
    ));
    let policy = policy(global)?;
    let core = Arc::new(Core::new(
        engine.clone(),
        policy.clone(),
        namespace,
        !args.no_kernel_cache,
    ));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let session = mount::mount(
        core,
        tokio::runtime::Handle::current(),
        &mountpoint,
        threads,
    )?;
    if let Err(e) = mount::wait_until_answering(&mountpoint).await {
        let _ = tokio::task::spawn_blocking(move || session.umount_and_join()).await;
        return Err(e);
    }
    let http = if args.no_http {
        None
    } else {
        match start_http(engine.clone(), policy, &args.http, false).await {
            Ok(http) => http,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || session.umount_and_join()).await;
                return Err(e);
            }
        }
    };
    tracing::info!(mountpoint = %mountpoint.display(), pid = std::process::id(), "mounted");
    readiness.ready();
    mount::serve_until_stopped(session, &mountpoint).await?;
    drop(http);
    let stats = serde_json::to_string(&engine.stats()).unwrap_or_default();
    tracing::info!(mountpoint = %mountpoint.display(), stats = %stats, "unmounted");
    Ok(())
}
