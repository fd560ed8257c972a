//! The provider's gRPC service on its Unix socket, where the driver looks for
//! `<provider>.sock`.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use crate::proto::csi_driver_provider_server::{CsiDriverProvider, CsiDriverProviderServer};
use crate::proto::{MountRequest, MountResponse, VersionRequest, VersionResponse};
use crate::provider::Provider;

/// Where the driver's provider volume is mounted, and the name it looks for.
pub const DEFAULT_SOCKET: &str = "/var/run/secrets-store-csi-providers/secretsfs.sock";
/// The API version the driver speaks.
pub const API_VERSION: &str = "v1alpha1";
pub const RUNTIME_NAME: &str = "secretsfs";

struct Service {
    provider: Arc<Provider>,
}

#[tonic::async_trait]
impl CsiDriverProvider for Service {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        Ok(Response::new(self.provider.mount(request.get_ref()).await))
    }
}

/// Binds `path`, mode 0600 (only root, the driver, may ask). A socket left by a provider that
/// has gone is replaced; one that still answers, or anything that is not a socket, is not.
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Ok(_) => match tokio::net::UnixStream::connect(path).await {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another provider answers on {}", path.display()),
                ));
            }
            // Only a socket nobody listens on is stale: a live provider whose backlog is full
            // (EAGAIN) or one we may not reach (EACCES) keeps its socket.
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
                std::fs::remove_file(path)?
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{} exists and cannot be asked whether a provider answers: {e}",
                        path.display()
                    ),
                ));
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Connecting needs write permission on the socket, which the umask's default leaves to the
    // owner alone until the chmod; the umask itself is process-wide, so it is not touched.
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers on `listener` until `stop` resolves, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    path: &Path,
    provider: Arc<Provider>,
    stop: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let service = CsiDriverProviderServer::new(Service { provider })
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(usize::MAX);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    let _ = std::fs::remove_file(path);
    served
}
