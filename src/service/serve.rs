//! `secretsfs serve`: the HTTP API alone.

use super::{Built, FrontEnd, Prepared};
use crate::cli::Cli;
use crate::daemon::{Readiness, StopSignals};
use crate::error::Result;
use crate::http::listen::Listening;
use crate::settings::Settings;

struct Serving {
    listening: Listening,
}

impl FrontEnd for Serving {
    async fn serve(&mut self, stop: &mut StopSignals) -> Option<&'static str> {
        Some(stop.next().await)
    }

    async fn stop(self, _signal: Option<&'static str>) -> &'static str {
        drop(self.listening);
        "stopping"
    }
}

pub async fn run(cli: &Cli, settings: Settings) -> Result<()> {
    let prepared: Prepared = super::prepare()?;
    let built: Built = super::build(&settings).await?;
    let listening = super::http::start(&built, &settings, true)
        .await?
        .expect("serve always listens on TCP");
    // As the agent, one line on stdout says where, for scripts and tests to wait on.
    if let Some(addr) = listening.tcp_addr {
        println!(
            "secretsfs/{} listening on http://{addr}",
            env!("CARGO_PKG_VERSION")
        );
    }
    let hooks = super::hooks(&settings, None)?;
    let front = Serving { listening };
    super::run(
        prepared,
        cli,
        settings,
        &built,
        hooks,
        &mut Readiness::none(),
        front,
    )
    .await
}
