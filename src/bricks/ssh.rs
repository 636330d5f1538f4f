//! The brick servers over ssh, for Gluster servers outside Kubernetes: the
//! controller runs a fixed remote command (`glusterfs-csi ssh-command
//! remove-brick`, `... check-brick-root`) and writes the request to its
//! stdin as JSON. The server side applies the same checks as the brick
//! agent, and only for the brick roots configured there.

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::controller::{BrickError, BrickRootReport, BrickServers, RootCheck};
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

/// `check-brick-root`'s request: a brick root configured on that server.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckRootRequest {
    pub path: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckRootAnswer {
    Checked(BrickRootReport),
    Refused { code: i32, message: String },
}

pub struct SshBrickServers {
    ssh: SshConfig,
    remove_command: Vec<String>,
    root_command: Vec<String>,
    timeout: Duration,
}

impl SshBrickServers {
    pub fn new(
        ssh: SshConfig,
        remove_command: Vec<String>,
        root_command: Vec<String>,
        timeout: Duration,
    ) -> Self {
        SshBrickServers {
            ssh,
            remove_command,
            root_command,
            timeout,
        }
    }

    /// Runs `command` on `host` with `request` on stdin and reads its JSON
    /// answer; `Err` when there is none (ssh, or the command, failed).
    async fn exchange<A: DeserializeOwned>(
        &self,
        host: &str,
        command: &[String],
        request: &impl Serialize,
        error: &impl Fn(Code, String) -> BrickError,
    ) -> Result<A, BrickError> {
        let request =
            serde_json::to_vec(request).map_err(|e| error(Code::Internal, e.to_string()))?;
        let output = self
            .ssh
            .run(host, command, &request, self.timeout)
            .await
            .map_err(|e| error(Code::Internal, format!("running ssh: {e}")))?
            .ok_or_else(|| {
                error(
                    Code::DeadlineExceeded,
                    format!("no answer over ssh within {}s", self.timeout.as_secs()),
                )
            })?;
        serde_json::from_str::<A>(output.stdout.trim()).map_err(|_| {
            error(
                Code::Unavailable,
                format!(
                    "ssh {}@{host} `{}` failed ({}): {}",
                    self.ssh.user,
                    command.join(" "),
                    output
                        .status
                        .map_or("killed by a signal".to_string(), |code| format!(
                            "exit {code}"
                        )),
                    output.stderr.trim()
                ),
            )
        })
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
        let request = RemoveBrickRequest {
            volume: volume.to_string(),
            path: path.to_string(),
        };
        match self
            .exchange(host, &self.remove_command, &request, &error)
            .await?
        {
            RemoveBrickAnswer::Removed(removed) => Ok(removed),
            RemoveBrickAnswer::Refused { code, message } => Err(error(
                Code::from(code),
                format!("{host} refused: {message}"),
            )),
        }
    }

    async fn check_root(&self, host: &str, root: &str) -> Result<RootCheck, BrickError> {
        let error = BrickError::at(host, root);
        let request = CheckRootRequest {
            path: root.to_string(),
        };
        match self
            .exchange(host, &self.root_command, &request, &error)
            .await?
        {
            CheckRootAnswer::Checked(report) => Ok(RootCheck::Checked(report)),
            CheckRootAnswer::Refused { code, message } => Err(error(
                Code::from(code),
                format!("{host} refused: {message}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let answer = serde_json::to_string(&RemoveBrickAnswer::Removed(true)).unwrap();
        assert_eq!(answer, r#"{"removed":true}"#);
        let refused = RemoveBrickAnswer::Refused {
            code: Code::FailedPrecondition as i32,
            message: "still started".into(),
        };
        let text = serde_json::to_string(&refused).unwrap();
        let checked = CheckRootAnswer::Checked(BrickRootReport {
            exists: true,
            ..Default::default()
        });
        let back: CheckRootAnswer =
            serde_json::from_str(&serde_json::to_string(&checked).unwrap()).unwrap();
        assert_eq!(back, checked);
        assert_eq!(
            serde_json::from_str::<RemoveBrickAnswer>(&text).unwrap(),
            refused
        );
    }
}
