//! The brick agent: served by the node plugin on every Gluster server,
//! removes brick directories for the controller.
//!
//! It trusts nobody: before removing anything it asks its own glusterd, and
//! only removes
//! - a brick of a driver-made volume that is marked for deletion and not
//!   running, listed by glusterd on this very server at exactly this path; or
//! - a leftover of a failed `volume create`: a directory glusterd marked as a
//!   brick, of no existing volume, holding nothing but an empty `.glusterfs`.
//!
//! So a caller can at worst remove what the driver would remove anyway.
//!
//! Removing is one rename into the brick root's `.glusterfs-csi-trash`; a
//! `purge-brick-trash` child process deletes the tree, so no tree can hurt
//! the node plugin.
//!
//! In a container, "nothing to remove" is only answered for a brick root
//! mounted into it from the host: a directory of the image proves nothing
//! about the host's bricks.
//!
//! It also tells the controller what a brick root is on this server
//! (`CheckBrickRoot`, read-only), so no brick lands on the root file system
//! unnoticed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::remove::{self, BrickDir, TrashError};
use super::{root, trash};
use crate::gluster::{Glusterd, VolumeStatus};
use crate::names::VolumeName;
use crate::ownership::Ownership;
use crate::proto::brick_agent::brick_agent_server::BrickAgent;
use crate::proto::brick_agent::{
    CheckBrickRootRequest, CheckBrickRootResponse, RemoveBrickRequest, RemoveBrickResponse,
};

/// gRPC metadata key carrying the shared token.
pub const TOKEN_HEADER: &str = "x-glusterfs-csi-token";
/// How long the agent gives one RemoveBrick (glusterd checks and the move)
/// before answering DEADLINE_EXCEEDED; the work goes on and a retry sees it.
pub const REMOVE_BRICK_DEADLINE: Duration = Duration::from_secs(60);

/// Where brick removal runs, which decides what a missing brick proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickRootsSeen {
    /// In the node plugin's container: brick roots come from the host as
    /// mounts, and one that is not a mount point is the image's directory.
    ThroughMounts,
    /// On the server itself (`dev`, `ssh-command`): what is there is there.
    Directly,
}

pub struct BrickAgentService {
    glusterd: Arc<dyn Glusterd>,
    token: AgentToken,
    roots: BrickRootsSeen,
}

/// The shared secret between the controller and the agents: printable
/// ASCII (it travels as gRPC metadata), not empty.
#[derive(Clone)]
pub struct AgentToken(String);

impl AgentToken {
    /// `None` or an unusable value is an error naming where it comes from.
    pub fn require(token: Option<&str>, needed_by: &str) -> Result<AgentToken, String> {
        let token = token.map(str::trim).unwrap_or_default();
        if token.is_empty() {
            return Err(format!(
                "{needed_by} needs the brick agent token: set GLUSTERFS_CSI_BRICK_AGENT_TOKEN \
                 (or --brick-agent-token) to the same secret on the controller and every node \
                 plugin (the Helm chart keeps it in the Secret brickAgent.tokenSecretName)"
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{needed_by}: the brick agent token must be printable ASCII without spaces"
            ));
        }
        Ok(AgentToken(token.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentToken(..)")
    }
}

impl BrickAgentService {
    pub fn new(glusterd: Arc<dyn Glusterd>, token: AgentToken, roots: BrickRootsSeen) -> Self {
        BrickAgentService {
            glusterd,
            token,
            roots,
        }
    }

    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let expected = self.token.as_str();
        let given = request
            .metadata()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "missing or wrong brick agent token",
            ))
        }
    }
}

/// Removes a brick directory if, and only if, glusterd says it may go (see
/// the module comment), by moving it into its brick root's trash. Returns
/// false when nothing was there. The caller then starts the purge of
/// [`trash::to_purge`]. For `glusterfs-csi ssh-command remove-brick`, which
/// runs on the server itself.
pub async fn remove_brick(
    glusterd: &dyn Glusterd,
    volume: &str,
    path: &str,
) -> Result<bool, Status> {
    remove_brick_seen(glusterd, volume, path, BrickRootsSeen::Directly).await
}

/// [`remove_brick`] where brick roots are seen as `roots` says.
pub async fn remove_brick_seen(
    glusterd: &dyn Glusterd,
    volume: &str,
    path: &str,
    roots: BrickRootsSeen,
) -> Result<bool, Status> {
    let volume = VolumeName::parse(volume).ok_or_else(|| {
        Status::invalid_argument(format!(
            "volume: {volume:?} is not a volume name this driver makes"
        ))
    })?;
    let path = brick_path(path, &volume)?;
    let root = path.parent().unwrap_or(Path::new("/"));
    if !root.is_dir() {
        return Err(Status::failed_precondition(format!(
            "brick root {} is not visible here; in Kubernetes, mount it into the node plugin \
             (chart values storageClasses[].parameters.brickRoot or node.extraBrickRoots)",
            root.display()
        )));
    }
    if roots == BrickRootsSeen::ThroughMounts {
        check_mounted_from_host(root, &path)?;
    }
    authorize(glusterd, &volume, &path).await?;
    let target = path.clone();
    // Owns what it needs: once started, the move completes even if the caller goes away.
    let moved = tokio::task::spawn_blocking(move || remove::move_to_trash(&target))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| match e {
            TrashError::Refused(why) => Status::failed_precondition(why),
            TrashError::Io(why) => Status::internal(format!("removing {}: {why}", path.display())),
        })?;
    match &moved {
        Some(trashed) => tracing::info!(
            volume = %volume,
            path = %path.display(),
            trash = %trashed.trash.join(&trashed.entry).display(),
            "brick directory moved to the trash"
        ),
        None => {
            tracing::info!(volume = %volume, path = %path.display(), "brick directory already gone")
        }
    }
    Ok(moved.is_some())
}

/// Before a missing brick can be answered "already gone": its root must be
/// a mount point here (hostPath volumes are bind mounts), not a directory
/// that only exists in the container's image.
fn check_mounted_from_host(root: &Path, brick: &Path) -> Result<(), Status> {
    match std::fs::symlink_metadata(brick) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return Ok(()),
    }
    let mounted = root::is_mount_point(root).map_err(|e| {
        Status::internal(format!(
            "reading the mount table for {}: {e}",
            root.display()
        ))
    })?;
    if mounted {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "brick root {} is not mounted into the node plugin (it is a directory of the \
         container's own file system), so {} missing here says nothing about the server; mount \
         the brick root into the node plugin (chart values storageClasses[].parameters.brickRoot \
         or node.extraBrickRoots)",
        root.display(),
        brick.display()
    )))
}

/// Decides whether the brick may go, from glusterd's own answers.
async fn authorize(
    glusterd: &dyn Glusterd,
    volume: &VolumeName,
    path: &Path,
) -> Result<(), Status> {
    let gluster = |e: crate::gluster::GlusterError| {
        Status::new(e.code(), format!("asking the local glusterd: {e}"))
    };
    let local_uuid = glusterd.local_uuid().await.map_err(gluster)?;
    let path_str = path.to_string_lossy();
    match glusterd.volume(volume.as_str()).await.map_err(gluster)? {
        Some(info) => {
            match Ownership::of(&info) {
                Ownership::Ours { deleting: true, .. } => {}
                // The controller marks before it asks; a server whose
                // glusterd was cut off catches up with the pool's options
                // only after it reconnects: worth asking again.
                Ownership::Ours {
                    deleting: false, ..
                } => {
                    return Err(Status::aborted(format!(
                        "gluster volume {volume} is not marked for deletion on this server's \
                         glusterd yet"
                    )));
                }
                Ownership::Unmarked | Ownership::Foreign => {
                    return Err(Status::failed_precondition(format!(
                        "gluster volume {volume} is not marked for deletion by this driver"
                    )));
                }
            }
            if info.status == VolumeStatus::Started {
                // Marked for deletion, so its stop is on the way (or this
                // glusterd has not committed it yet): worth asking again.
                return Err(Status::aborted(format!(
                    "gluster volume {volume} is still started on this server's glusterd; \
                     the stop has not reached it yet"
                )));
            }
            let listed = info
                .bricks
                .iter()
                .any(|b| b.host_uuid == local_uuid && b.path == path_str);
            if !listed {
                return Err(Status::permission_denied(format!(
                    "{path_str} is not a brick of {volume} on this server"
                )));
            }
            Ok(())
        }
        None => {
            let in_use = glusterd
                .volumes()
                .await
                .map_err(gluster)?
                .iter()
                .flat_map(|v| v.bricks.iter().map(move |b| (v, b)))
                .find(|(_, b)| b.host_uuid == local_uuid && b.path == path_str)
                .map(|(v, _)| v.name.clone());
            if let Some(owner) = in_use {
                return Err(Status::permission_denied(format!(
                    "{path_str} is a brick of gluster volume {owner}"
                )));
            }
            match inspect(path).await? {
                BrickDir::Missing => Ok(()),
                BrickDir::NotADirectory => Err(Status::failed_precondition(format!(
                    "{path_str} is not a directory"
                ))),
                BrickDir::Directory {
                    is_brick: false, ..
                } => Err(Status::failed_precondition(format!(
                    "{path_str} is not a gluster brick directory; leaving it"
                ))),
                BrickDir::Directory {
                    holds_data: true, ..
                } => Err(Status::failed_precondition(format!(
                    "{path_str} belongs to no volume but holds data; leaving it for an admin"
                ))),
                BrickDir::Directory { .. } => Ok(()),
            }
        }
    }
}

#[tonic::async_trait]
impl BrickAgent for BrickAgentService {
    async fn remove_brick(
        &self,
        request: Request<RemoveBrickRequest>,
    ) -> Result<Response<RemoveBrickResponse>, Status> {
        self.check_token(&request)?;
        let request = request.into_inner();
        let glusterd = Arc::clone(&self.glusterd);
        let roots = self.roots;
        // Own task: a caller going away, or our deadline, never stops a removal half-way.
        let removal = tokio::spawn(async move {
            let removed =
                remove_brick_seen(glusterd.as_ref(), &request.volume, &request.path, roots).await?;
            if let Some(trash) = trash::to_purge(Path::new(&request.path), removed) {
                trash::purge_in_child(trash);
            }
            Ok::<bool, Status>(removed)
        });
        let removed = tokio::time::timeout(REMOVE_BRICK_DEADLINE, removal)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "removing the brick took longer than {} s; it goes on, and a retry sees \
                     its outcome",
                    REMOVE_BRICK_DEADLINE.as_secs()
                ))
            })?
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(RemoveBrickResponse { removed }))
    }

    async fn check_brick_root(
        &self,
        request: Request<CheckBrickRootRequest>,
    ) -> Result<Response<CheckBrickRootResponse>, Status> {
        self.check_token(&request)?;
        let path = request.into_inner().path;
        crate::controller::params::validate_brick_root(&path)
            .map_err(|why| Status::invalid_argument(format!("path: {why}")))?;
        let target = PathBuf::from(&path);
        let report = tokio::task::spawn_blocking(move || root::inspect(&target))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("inspecting brick root {path}: {e}")))?;
        Ok(Response::new(CheckBrickRootResponse {
            exists: report.exists,
            is_directory: report.is_directory,
            own_file_system: report.own_file_system,
            file_system_mount_point: report.file_system_mount_point.unwrap_or_default(),
            file_system_type: report.file_system_type,
            file_system_source: report.file_system_source,
            total_bytes: report.total_bytes,
            available_bytes: report.available_bytes,
        }))
    }
}

/// An absolute, normalised path whose last component is the volume name.
fn brick_path(path: &str, volume: &VolumeName) -> Result<PathBuf, Status> {
    let bad = |why: &str| Status::invalid_argument(format!("path: {path:?} {why}"));
    if crate::controller::params::validate_brick_root(path).is_err() {
        return Err(bad(
            "is not an absolute, normalised path of plain components",
        ));
    }
    let path = PathBuf::from(path);
    if path.file_name().and_then(|n| n.to_str()) != Some(volume.as_str()) {
        return Err(bad("does not end in the volume's name"));
    }
    Ok(path)
}

async fn inspect(path: &Path) -> Result<BrickDir, Status> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || remove::inspect(&path))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("inspecting brick directory: {e}")))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brick_paths_must_end_in_the_volume() {
        let v = VolumeName::for_csi_name("pvc-1").unwrap();
        assert!(brick_path("/data/glusterfs/csi-pvc-1", &v).is_ok());
        for bad in [
            "/data/glusterfs/other",
            "data/csi-pvc-1",
            "/data/../csi-pvc-1",
            "/data/glusterfs/csi-pvc-1/",
            "/csi-pvc-1/..",
            "",
        ] {
            assert_eq!(
                brick_path(bad, &v).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad:?}"
            );
        }
    }

    /// Run as root (tests mount a tmpfs).
    #[tokio::test]
    async fn a_missing_brick_is_gone_only_under_a_root_mounted_from_the_host() {
        let glusterd = crate::fakes::FakeGlusterd::three_servers();
        let scratch = crate::bricks::testing::scratch();
        let root = scratch.path().join("glusterfs");
        std::fs::create_dir(&root).unwrap();
        let brick = root.join("csi-pvc-1");
        let brick = brick.to_str().unwrap();
        let err = remove_brick_seen(
            glusterd.as_ref(),
            "csi-pvc-1",
            brick,
            BrickRootsSeen::ThroughMounts,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains(&format!(
                "brick root {} is not mounted into the node plugin",
                root.display()
            )),
            "{}",
            err.message()
        );
        assert!(err.message().contains("node.extraBrickRoots"));
        // On the server itself the same answer is plain "already gone".
        let removed = remove_brick(glusterd.as_ref(), "csi-pvc-1", brick)
            .await
            .unwrap();
        assert!(!removed);
        // Mounted (as a hostPath volume is): "already gone" again.
        let _mounted = crate::bricks::testing::TestMount::tmpfs(&root);
        let removed = remove_brick_seen(
            glusterd.as_ref(),
            "csi-pvc-1",
            brick,
            BrickRootsSeen::ThroughMounts,
        )
        .await
        .unwrap();
        assert!(!removed);
    }

    #[test]
    fn a_token_is_required_and_must_travel_as_metadata() {
        for missing in [None, Some(""), Some("  \n")] {
            let err = AgentToken::require(missing, "--brick-agent-listen").unwrap_err();
            assert!(
                err.starts_with("--brick-agent-listen needs the brick agent token")
                    && err.contains("GLUSTERFS_CSI_BRICK_AGENT_TOKEN")
                    && err.contains("--brick-agent-token"),
                "{err}"
            );
        }
        assert!(AgentToken::require(Some("a b"), "x").is_err());
        assert!(AgentToken::require(Some("tøken"), "x").is_err());
        let token = AgentToken::require(Some(" s3cret\n"), "x").unwrap();
        assert_eq!(token.as_str(), "s3cret");
        assert_eq!(format!("{token:?}"), "AgentToken(..)");
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
