//! Brick removal over ssh, for Gluster servers outside Kubernetes: the
//! controller runs a fixed remote command (`glusterfs-csi ssh-command
//! remove-brick`) and writes the request to its stdin as JSON. The server
//! side applies the same glusterd checks as the brick agent.
//!
//! Brick roots are not checked over ssh yet (`ssh-command` has no operation
//! for it): creates rely on glusterd, which refuses bricks on the root file
//! system unless they are allowed (then `force` is passed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::controller::{BrickError, BrickServers, RootCheck};
use crate::gluster::SshConfig;
use crate::names::VolumeName;

/// What the controller sends (stdin of the remote command).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoveBrickRequest {
    pub volume: String,
    pub path: String,
}

/// What the server answers (stdout of the remote command).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RemoveBrickAnswer {
    Removed(bool),
    Refused { code: i32, message: String },
}

pub struct SshBrickServers {
    ssh: SshConfig,
    remote_command: Vec<String>,
    timeout: Duration,
    warned_unchecked: AtomicBool,
}

impl SshBrickServers {
    pub fn new(ssh: SshConfig, remote_command: Vec<String>, timeout: Duration) -> Self {
        SshBrickServers {
            ssh,
            remote_command,
            timeout,
            warned_unchecked: AtomicBool::new(false),
        }
    }
}

#[async_trait]
impl BrickServers for SshBrickServers {
    async fn remove(
        &self,
        host: &str,
        volume: &VolumeName,
        path: &str,
    ) -> Result<bool, BrickError> {
        let error = BrickError::at(host, path);
        let request = serde_json::to_vec(&RemoveBrickRequest {
            volume: volume.to_string(),
            path: path.to_string(),
        })
        .map_err(|e| error(Code::Internal, e.to_string()))?;
        let output = self
            .ssh
            .run(host, &self.remote_command, &request, self.timeout)
            .await
            .map_err(|e| error(Code::Internal, format!("running ssh: {e}")))?
            .ok_or_else(|| {
                error(
                    Code::DeadlineExceeded,
                    format!("no answer over ssh within {}s", self.timeout.as_secs()),
                )
            })?;
        match serde_json::from_str::<RemoveBrickAnswer>(output.stdout.trim()) {
            Ok(RemoveBrickAnswer::Removed(removed)) => Ok(removed),
            Ok(RemoveBrickAnswer::Refused { code, message }) => Err(error(
                Code::from(code),
                format!("{host} refused: {message}"),
            )),
            Err(_) => Err(error(
                Code::Unavailable,
                format!(
                    "ssh {}@{host} `{}` failed ({}): {}",
                    self.ssh.user,
                    self.remote_command.join(" "),
                    output
                        .status
                        .map_or("killed by a signal".to_string(), |code| format!(
                            "exit {code}"
                        )),
                    output.stderr.trim()
                ),
            )),
        }
    }

    async fn check_root(&self, host: &str, root: &str) -> Result<RootCheck, BrickError> {
        if !self.warned_unchecked.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                host,
                root,
                "brick roots are not checked over ssh yet: a missing brick root shows as \
                 glusterd's own error, and bricks on the root file system are refused by glusterd \
                 unless allowed (allowRootFilesystemBricks, --allow-root-filesystem-bricks)"
            );
        }
        Ok(RootCheck::NotChecked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn brick_roots_pass_unchecked_over_ssh() {
        let ssh = SshConfig {
            servers: vec!["g1".into()],
            port: 22,
            user: "root".into(),
            identity: "/nonexistent/identity".into(),
            known_hosts: "/nonexistent/known_hosts".into(),
            connect_timeout: Duration::from_secs(1),
        };
        let servers = SshBrickServers::new(ssh, vec!["true".into()], Duration::from_secs(1));
        for _ in 0..2 {
            let check = servers.check_root("g1", "/data/glusterfs").await.unwrap();
            assert_eq!(check, RootCheck::NotChecked);
        }
        assert!(servers.warned_unchecked.load(Ordering::Relaxed));
    }

    #[test]
    fn wire_format() {
        let answer = serde_json::to_string(&RemoveBrickAnswer::Removed(true)).unwrap();
        assert_eq!(answer, r#"{"removed":true}"#);
        let refused = RemoveBrickAnswer::Refused {
            code: Code::FailedPrecondition as i32,
            message: "still started".into(),
        };
        let text = serde_json::to_string(&refused).unwrap();
        assert_eq!(
            serde_json::from_str::<RemoveBrickAnswer>(&text).unwrap(),
            refused
        );
    }
}
