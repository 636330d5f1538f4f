//! gRPC adapters, one file per CSI service. Each RPC validates its request,
//! takes the volume's in-flight guard (node) or runs as an operation of its
//! own that outlives its caller (controller: [`crate::operations`]), calls
//! the logic and maps the error.

pub mod authority;
pub mod controller;
pub mod identity;
pub mod node;
pub mod ping;
pub mod validate;

use std::fmt::Display;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Code, Status};

use crate::controller::ControllerError;
use crate::in_flight::{InFlight, InFlightGuard};
use crate::node::NodeError;
use crate::proto::csi::controller_server::ControllerServer;
use crate::proto::csi::identity_server::IdentityServer;
use crate::proto::csi::node_server::NodeServer;

/// An error that knows its gRPC code.
pub trait HasCode: Display {
    fn code(&self) -> Code;
}

impl HasCode for ControllerError {
    fn code(&self) -> Code {
        ControllerError::code(self)
    }
}

impl HasCode for NodeError {
    fn code(&self) -> Code {
        NodeError::code(self)
    }
}

pub fn status(error: impl HasCode) -> Status {
    Status::new(error.code(), error.to_string())
}

/// Asked every few seconds by the sidecars and the liveness probe: their
/// successes are logged at debug level, everything else at info.
const ROUTINE: [&str; 6] = [
    "Probe",
    "GetPluginInfo",
    "GetPluginCapabilities",
    "ControllerGetCapabilities",
    "NodeGetCapabilities",
    "NodeGetInfo",
];

/// Runs one RPC, logs method, volume, duration and outcome, and records it
/// in the metrics (method and code). Requests and their secrets are never
/// logged.
pub async fn observe<T>(
    method: &'static str,
    volume: &str,
    rpc: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let mut call = Call {
        method,
        volume,
        started: Instant::now(),
        answered: false,
    };
    let result = rpc.await;
    call.answered = true;
    let (volume, duration_ms) = call.measure(match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    });
    match &result {
        Ok(_) if ROUTINE.contains(&method) => {
            tracing::debug!(method, volume = ?volume, duration_ms, code = "OK", "rpc")
        }
        Ok(_) => tracing::info!(method, volume = ?volume, duration_ms, code = "OK", "rpc"),
        Err(status) => tracing::warn!(
            method,
            volume = ?volume,
            duration_ms,
            code = ?status.code(),
            message = status.message(),
            "rpc"
        ),
    }
    result
}

/// Logs a request whose caller went away (its connection closed, or its
/// deadline passed in tonic's own timer) before the answer: tonic then drops
/// the handler, and without this the request would leave no trace.
/// Operations that outlive their callers ([`crate::operations`]) log their
/// end themselves.
struct Call<'a> {
    method: &'static str,
    volume: &'a str,
    started: Instant,
    answered: bool,
}

impl Call<'_> {
    /// Records the outcome in the metrics; the volume as logged (at most
    /// 128 characters) and the duration in milliseconds with one decimal,
    /// as every rpc log line has them.
    fn measure(&self, code: Code) -> (String, f64) {
        let took = self.started.elapsed();
        crate::metrics::record_rpc(self.method, code, took);
        let volume: String = self.volume.chars().take(128).collect();
        (volume, (took.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let (volume, duration_ms) = self.measure(Code::Cancelled);
        tracing::warn!(
            method = self.method,
            volume = ?volume,
            duration_ms,
            code = "Cancelled",
            "rpc: the caller went away before the answer"
        );
    }
}

/// For RPCs the driver does not offer (and does not advertise).
pub async fn unimplemented<T>(method: &'static str) -> Result<T, Status> {
    observe(method, "", async {
        Err(Status::unimplemented(format!(
            "{method} is not supported by this driver"
        )))
    })
    .await
}

/// Takes the in-flight guard for `key`, or answers ABORTED.
pub fn begin(in_flight: &InFlight, key: &str) -> Result<InFlightGuard, Status> {
    in_flight.try_begin(key).ok_or_else(|| {
        Status::aborted(format!(
            "an operation on volume {key} is already in progress; retry"
        ))
    })
}

/// The CSI services one process serves.
pub struct Services {
    pub identity: identity::IdentityService,
    pub controller: Option<controller::ControllerService>,
    pub node: Option<node::NodeService>,
}

/// `unix:///path`, `unix:/path` or a plain absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(format!(
            "endpoint {endpoint:?} must be unix:///absolute/path"
        ));
    }
    Ok(PathBuf::from(path))
}

/// Binds the endpoint socket: a stale socket is replaced, anything else at
/// the path is an error; the socket is only accessible to its owner.
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the CSI services on `listener` until `shutdown` completes. Clients
/// that send the socket's path as `:authority` are served too
/// ([`authority`]).
pub async fn serve(
    listener: UnixListener,
    services: Services,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(services.identity))
        .add_optional_service(services.controller.map(ControllerServer::new))
        .add_optional_service(services.node.map(NodeServer::new))
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener)
                .map(|accepted| accepted.map(authority::PathAuthorityStream::new)),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert!(socket_path("unix://relative.sock").is_err());
        assert!(socket_path("tcp://0.0.0.0:10000").is_err());
    }

    #[tokio::test]
    async fn socket_hygiene() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/csi.sock");
        let first = bind_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(first);
        // A stale socket is replaced...
        bind_socket(&path).unwrap();
        // ...but a regular file is never removed.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "data").unwrap();
        assert!(bind_socket(&file).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    }
}
