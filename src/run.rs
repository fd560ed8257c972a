//! Running a parsed command line: resolve the settings, then do the command; `mount` and
//! `serve` live on in [`crate::service`].

use std::io::Write;

use crate::cli::{Cli, Command, GetArgs, RenderArgs, WatchArgs};
use crate::daemon::Readiness;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::handover::Inherited;
use crate::selector::Selector;
use crate::service::{self, build_source};
use crate::settings::Settings;
use crate::template::Template;
use crate::watch::WatchPattern;

/// Runs the command; its exit code (COMMAND's, for `watch`).
pub async fn run(
    cli: Cli,
    settings: Settings,
    readiness: &mut Readiness,
    inherited: Inherited,
) -> Result<u8> {
    let done = match &cli.command {
        Command::Get(args) => get(&settings, args).await,
        Command::Mount(args) => {
            service::mount::run(&cli, args, settings, readiness, inherited).await
        }
        Command::Serve(_) => service::serve::run(&cli, settings).await,
        Command::CsiProvider(args) => service::csi::run(args, settings).await,
        Command::Watch(args) => return watch(&settings, args).await,
        Command::Exec(args) => return crate::exec::run(&settings, args).await,
        Command::LambdaExtension(_) => return crate::lambda::run(settings).await,
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
    // Checked before the source is built: a bad selector or entry costs nothing upstream.
    for selector in &args.selectors {
        WatchPattern::parse(selector)?;
    }
    let entries = crate::environment::entries(&args.env.env, &args.env.env_file)?;
    if !entries.is_empty() && args.signal.is_some() {
        return Err(Error::config(
            "--signal cannot go with --env or --env-file: a signal cannot change a running \
             program's environment; leave --signal out and COMMAND is restarted",
        ));
    }
    let engines = crate::environment::read::Engines::build(settings, &entries, true).await?;
    crate::supervisor::supervise(engines, entries, args, settings.cache.list_ttl).await
}

/// What `mount` refuses in its settings before it touches a mountpoint or the network, with
/// the same messages: `check-config` runs it so that it refuses what `mount` and `serve` do.
fn check_settings(settings: &Settings) -> Result<()> {
    service::mount::namespace(settings)?;
    service::build_policy(settings)?;
    let templates = service::mount::templates(settings)?;
    service::hooks(settings, Some(&templates))?;
    Ok(())
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
