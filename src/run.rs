//! Running a parsed command line: build the source and the engine, then do the command.

use std::io::Write;
use std::sync::Arc;

use crate::cli::{Cli, Command, GetArgs, GlobalArgs, MountArgs};
use crate::config::ConfigFile;
use crate::daemon::Readiness;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::fuse::core::Core;
use crate::fuse::mount;
use crate::fuse::namespace::Namespace;
use crate::policy::{Policy, SystemDirectory};
use crate::selector::Selector;
use crate::source::aws::AwsSource;
use crate::source::file::FileSource;
use crate::source::{DynSource, SourceSpec};

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
    }
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
    let rules = match &global.config {
        Some(path) => ConfigFile::load(path)?.policy,
        None => Vec::new(),
    };
    let policy = Arc::new(Policy::new(
        &rules,
        global.policy_defaults(),
        &SystemDirectory,
    )?);
    let core = Arc::new(Core::new(
        engine.clone(),
        policy,
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
    tracing::info!(mountpoint = %mountpoint.display(), pid = std::process::id(), "mounted");
    readiness.ready();
    mount::serve_until_stopped(session, &mountpoint).await?;
    let stats = serde_json::to_string(&engine.stats()).unwrap_or_default();
    tracing::info!(mountpoint = %mountpoint.display(), stats = %stats, "unmounted");
    Ok(())
}
