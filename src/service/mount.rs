//! `secretsfs mount`: the FUSE front end's life in this process: mount (or take over a
//! connection handed over), serve beside the HTTP API, hand over on SIGUSR2, and stop
//! (unmount, or leave the mount to systemd's file descriptor store for the next process).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::BackgroundSession;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{FrontEnd, PolicyChanged};
use crate::cli::{Cli, MountArgs};
use crate::daemon::{Readiness, StopSignals};
use crate::engine::{Engine, Landed};
use crate::error::{Error, Result};
use crate::fuse::fs::SecretsFs;
use crate::fuse::mount;
use crate::fuse::namespace::Namespace;
use crate::fuse::templates::Templates;
use crate::handover::{self, Handed, Inherited};
use crate::http::listen::Listening;
use crate::policy::SystemDirectory;
use crate::selector::Selector;
use crate::settings::Settings;
use crate::source::SourceSpec;
use crate::watch::{BeforeTelling, PathOf};

/// How soon an unmount by someone else (`umount`) ends the daemon, when the connection's
/// descriptor cannot be watched.
const UNMOUNT_POLL: Duration = Duration::from_millis(500);

pub fn namespace(settings: &Settings) -> Result<Namespace> {
    match settings.source {
        SourceSpec::Ssm => Namespace::for_parameters(settings.layout, &settings.prefix),
        _ => Namespace::new(settings.layout, &settings.prefix),
    }
}

/// The config file's templates, compiled at settings time, with their owners and groups
/// resolved now.
pub fn templates(settings: &Settings) -> Result<Templates> {
    let files = settings
        .sections
        .template
        .iter()
        .zip(&settings.templates)
        .map(|(spec, template)| spec.file(template, &settings.defaults, &SystemDirectory))
        .collect::<Result<Vec<_>>>()?;
    Ok(Templates::new(files))
}

/// SIGUSR2, watched before the mount is made: until then `main` has it ignored, and one that
/// comes before serving starts is kept for the serving loop, never the default action (which
/// would end the process with the mount in its hands).
fn watch_exec_signal() -> Result<Signal> {
    signal(SignalKind::user_defined2())
        .map_err(|e| Error::config(format!("cannot watch SIGUSR2: {e}")))
}

pub async fn run(
    cli: &Cli,
    args: &MountArgs,
    settings: Settings,
    readiness: &mut Readiness,
    inherited: Inherited,
) -> Result<()> {
    let prepared = super::prepare()?;
    let exec_signal = watch_exec_signal()?;
    // A connection handed over is taken over only while a mount still uses it.
    let handed = inherited.handed.filter(|handed| {
        let alive = handed.is_alive();
        if !alive {
            tracing::warn!(target: "secretsfs::run", "the FUSE connection handed over has ended (unmounted); mounting anew");
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
    let built = super::build(&settings).await?;
    let templates = Arc::new(templates(&settings)?);
    let hooks = super::hooks(&settings, Some(&templates))?;
    let fs = Arc::new(
        SecretsFs::new(
            built.engine.clone(),
            built.policy.clone(),
            namespace.clone(),
            settings.kernel_cache,
        )
        .presenting_only(settings.secrets.clone())
        .with_templates(templates),
    );
    let mounted_here = handed.is_none();
    let (session, fuse) = connect(&fs, handed, &mountpoint)?;
    let journal = match fs.journal_fds().transpose() {
        Ok(journal) => journal,
        Err(e) => {
            tracing::warn!(target: "secretsfs::run", error = %e, "cannot keep the inode journal for a hand-over");
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
        match super::http::start(&built, &settings, false).await {
            Ok(http) => http,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || session.umount_and_join()).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    tracing::info!(target: "secretsfs::run", mountpoint = %mountpoint.display(), pid = std::process::id(), "mounted");
    if let Some(list) = &settings.secrets {
        let fetch = prefetch_secrets_list(built.engine.clone(), list.names().to_vec());
        if settings.wait_for_secrets {
            fetch.await;
        } else {
            tokio::spawn(fetch);
        }
    }
    // Which mount is ours: at a stop, a path that holds another by then (ours was detached
    // from outside, and another process mounted there) is not unmounted.
    let ours = mount::device_at(mountpoint.clone()).await;
    let front = Mounted {
        session,
        fs,
        namespace,
        mountpoint,
        ours,
        handover: Handover {
            fuse,
            journal,
            stored,
            mounted_here,
            exec_signal,
            started_in: inherited.started_in,
        },
        _http: http,
    };
    super::run(prepared, cli, settings, &built, hooks, readiness, front).await
}

/// Serves `fs` on the connection handed over, or on a new mount at `mountpoint`; the session
/// and a copy of its descriptor (for a hand-over).
fn connect(
    fs: &Arc<SecretsFs>,
    handed: Option<Handed>,
    mountpoint: &Path,
) -> Result<(BackgroundSession, OwnedFd)> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let runtime = tokio::runtime::Handle::current();
    match handed {
        Some(handed) => {
            fs.resume_journal(handed.journal).map_err(|e| {
                Error::config(format!("cannot read the inode journal handed over: {e}"))
            })?;
            let taken = mount::take_over(fs.clone(), runtime, handed.fuse, threads)?;
            tracing::info!(target: "secretsfs::run", mountpoint = %mountpoint.display(), pid = std::process::id(),
                "took over the mount from the previous process");
            Ok(taken)
        }
        None => {
            let mounted = mount::mount(fs.clone(), runtime, mountpoint, threads)?;
            if let Err(e) = fs.start_journal() {
                tracing::warn!(target: "secretsfs::run", error = %e, "cannot journal the inode table; a restart will \
                    not take over this mount");
            }
            Ok(mounted)
        }
    }
}

/// Gives a connection mounted here, with its journal, to systemd's file descriptor store;
/// whether the store now holds it (without a journal there is nothing a restart could resume).
fn give_to_store(fuse: &OwnedFd, journal: Option<&[OwnedFd; 2]>) -> bool {
    let Some(journal) = journal else {
        return false;
    };
    match handover::store(fuse.as_fd(), journal) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(target: "secretsfs::run", error = %e, "cannot give the mount to systemd's file descriptor \
                store; a restart will mount anew");
            false
        }
    }
}

/// Fetches the `secrets` list's names at start, in batches where allowed, so that first reads
/// find them cached; a failure is the cache's to log, and the name is fetched again on use.
async fn prefetch_secrets_list(engine: Arc<Engine>, names: Vec<String>) {
    engine.prefetch_current(&names).await;
    let cached = names
        .iter()
        .filter(|n| !engine.needs_fetch_current(&Selector::whole(n.as_str())))
        .count();
    tracing::info!(target: "secretsfs::run", names = names.len(), cached, "secrets list fetched");
}

/// What a mount keeps for handing itself over to the process that follows it.
struct Handover {
    fuse: OwnedFd,
    /// The inode journal's memory files; none if they could not be made.
    journal: Option<[OwnedFd; 2]>,
    /// The store holds the connection: a stop leaves the mount to it.
    stored: bool,
    /// This process mounted (rather than took the connection over).
    mounted_here: bool,
    /// SIGUSR2, watched from the start (see [`watch_exec_signal`]).
    exec_signal: Signal,
    started_in: Option<PathBuf>,
}

impl Handover {
    fn by_exec(&self) {
        let Some(journal) = &self.journal else {
            tracing::error!(target: "secretsfs::fuse::mount", "SIGUSR2: cannot hand the mount over: there is no inode journal");
            return;
        };
        tracing::info!(target: "secretsfs::fuse::mount", "SIGUSR2: handing the mount over to a new process (exec)");
        let e = handover::exec(self.fuse.as_fd(), journal, self.started_in.as_deref());
        tracing::error!(target: "secretsfs::fuse::mount", error = %e, "the hand-over by exec failed; this process goes on serving");
    }
}

/// The mount, serving.
struct Mounted {
    session: BackgroundSession,
    fs: Arc<SecretsFs>,
    namespace: Namespace,
    mountpoint: PathBuf,
    /// The device of the mount at start (see [`mount::unmount_ours`]).
    ours: Option<u64>,
    handover: Handover,
    /// The HTTP API beside the mount, stopped with it.
    _http: Option<Listening>,
}

impl FrontEnd for Mounted {
    fn before_telling(&self) -> Option<BeforeTelling> {
        let forget = self.session.notifier();
        let fs = self.fs.clone();
        Some(Arc::new(move |change: &Landed| {
            mount::forget_secret(&forget, &fs, &change.secret_id);
        }))
    }

    fn path_of(&self) -> Option<PathOf> {
        let (namespace, root) = (self.namespace.clone(), self.mountpoint.clone());
        Some(Arc::new(move |selector: &Selector| {
            namespace
                .path_of_selector(selector)
                .map(|path| root.join(path))
        }))
    }

    fn policy_changed(&self) -> Option<PolicyChanged> {
        let (notifier, fs) = (self.session.notifier(), self.fs.clone());
        Some(Box::new(move || {
            let (notifier, fs) = (notifier.clone(), fs.clone());
            // Writes to /dev/fuse: off the runtime's threads.
            tokio::task::spawn_blocking(move || mount::forget_attributes(&notifier, &fs));
        }))
    }

    /// Until SIGTERM or SIGINT, or until someone else unmounts. SIGUSR2 hands the mount over
    /// to a new process by exec.
    async fn serve(&mut self, stop: &mut StopSignals) -> Option<&'static str> {
        let mut poll = tokio::time::interval(UNMOUNT_POLL);
        let ended = mount::connection_ended(&self.handover.fuse);
        tokio::pin!(ended);
        loop {
            tokio::select! {
                signal = stop.next() => return Some(signal),
                () = &mut ended => return None,
                _ = poll.tick() => if self.session.guard.is_finished() { return None },
                _ = self.handover.exec_signal.recv() => self.handover.by_exec(),
            }
        }
    }

    /// Unmounts, unless the file descriptor store keeps the mount for the next process.
    async fn stop(self, signal: Option<&'static str>) -> &'static str {
        match signal {
            Some(signal) if self.handover.stored => {
                tracing::info!(target: "secretsfs::fuse::mount",
                    signal,
                    "stopping; the mount stays, for the next process to take over \
                    from the file descriptor store"
                );
                // Dropping the session would unmount.
                std::mem::forget(self.session);
                "stopped; the mount stays in the file descriptor store"
            }
            Some(signal) => {
                tracing::info!(target: "secretsfs::fuse::mount", signal, "unmounting");
                mount::unmount_ours(
                    self.session,
                    &self.mountpoint,
                    self.handover.mounted_here,
                    self.ours,
                )
                .await;
                "unmounted"
            }
            None => {
                tracing::info!(target: "secretsfs::fuse::mount", "unmounted from outside");
                // The session's threads have ended. Dropping the session would unmount the
                // path again, and with the mount gone that takes out whatever is mounted
                // beneath (a bind mount of the mountpoint, a container's hostPath): so it is
                // not dropped.
                std::mem::forget(self.session);
                "unmounted"
            }
        }
    }

    fn mountpoint(&self) -> Option<PathBuf> {
        Some(self.mountpoint.clone())
    }
}
