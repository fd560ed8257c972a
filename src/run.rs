//! Running a parsed command line: build the source and the engine, then do the command.

use std::io::Write;
use std::sync::Arc;

use crate::cli::{Cli, Command, GetArgs, GlobalArgs};
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::selector::Selector;
use crate::source::aws::AwsSource;
use crate::source::file::FileSource;
use crate::source::{DynSource, SourceSpec};

pub async fn build_source(global: &GlobalArgs) -> Result<DynSource> {
    Ok(match &global.source {
        SourceSpec::Aws => Arc::new(AwsSource::connect(&global.aws_options()).await?),
        SourceSpec::File(path) => Arc::new(FileSource::open(path)?),
    })
}

pub async fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Get(args) => get(&cli.global, args).await,
    }
}

async fn get(global: &GlobalArgs, args: &GetArgs) -> Result<()> {
    // Parsed before the source is even built: an invalid selector costs nothing upstream.
    let selector = Selector::parse(&args.selector)?;
    let engine = Engine::new(build_source(global).await?, global.cache_config());
    let resolved = engine.get(&selector).await?;
    let mut out = std::io::stdout().lock();
    match out.write_all(resolved.bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A reader that closed the pipe early (`| head -c 4`) got what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::new(ErrorKind::Io, format!("writing to stdout: {e}"))),
    }
}
