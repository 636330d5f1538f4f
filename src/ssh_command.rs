//! `glusterfs-csi ssh-command`: what the controller's ssh key may run on a
//! Gluster server. Meant as the key's forced command in `authorized_keys`
//!
//! ```text
//! command="/usr/local/bin/glusterfs-csi ssh-command",restrict ssh-ed25519 AAAA...
//! ```
//!
//! so the key can do exactly two things, named by the last word the client
//! sends (`... ssh-command gluster` or `... ssh-command remove-brick`):
//! - `gluster`: a gluster CLI reading one command from stdin, against the
//!   local glusterd (answering at once if glusterd is down, so the
//!   controller fails over instead of waiting);
//! - `remove-brick`: a brick removal request (JSON on stdin) checked against
//!   the local glusterd exactly as the brick agent checks it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::app::AppResult;
use crate::bricks::agent::remove_brick;
use crate::bricks::ssh::{RemoveBrickAnswer, RemoveBrickRequest};
use crate::gluster::{GlusterCli, GlusterdAddress, LockRetry, OneShotCli};

#[derive(Args, Debug, Clone)]
pub struct SshCommandArgs {
    /// `gluster` or `remove-brick`; when run as a forced command, taken from
    /// the command the client sent (SSH_ORIGINAL_COMMAND).
    pub operation: Option<String>,
    /// The local glusterd's socket.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTERD_SOCKET",
        default_value = "/run/glusterd.socket"
    )]
    pub glusterd_socket: PathBuf,
    /// The gluster CLI binary.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_CLI", default_value = "gluster")]
    pub gluster_cli: PathBuf,
}

#[derive(Debug, PartialEq, Eq)]
enum Operation {
    Gluster,
    RemoveBrick,
}

/// The operation asked for: the argument, else the last word of the ssh
/// client's command, which must read `... ssh-command <operation>`.
fn operation(argument: Option<&str>, original: Option<&str>) -> Result<Operation, String> {
    let word = match (argument, original) {
        (Some(argument), _) => argument.to_string(),
        (None, Some(original)) => {
            let words: Vec<&str> = original.split_whitespace().collect();
            match words.as_slice() {
                [.., "ssh-command", operation] => operation.to_string(),
                _ => {
                    return Err(format!(
                        "refusing {original:?}: only `ssh-command gluster|remove-brick`"
                    ));
                }
            }
        }
        (None, None) => return Err("no operation: gluster or remove-brick".into()),
    };
    match word.as_str() {
        "gluster" => Ok(Operation::Gluster),
        "remove-brick" => Ok(Operation::RemoveBrick),
        other => Err(format!(
            "unknown operation {other:?}: gluster or remove-brick"
        )),
    }
}

pub async fn run(args: SshCommandArgs) -> AppResult<()> {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    match operation(args.operation.as_deref(), original.as_deref())? {
        Operation::Gluster => {
            if std::os::unix::net::UnixStream::connect(&args.glusterd_socket).is_err() {
                // The CLI's own words, which the controller reads as "down".
                println!("Connection failed. Please check if gluster daemon is operational.");
                std::process::exit(1);
            }
            let mut sock = std::ffi::OsString::from("--glusterd-sock=");
            sock.push(&args.glusterd_socket);
            let error = std::process::Command::new(&args.gluster_cli)
                .arg("--mode=script")
                .arg("--xml")
                .arg(sock)
                .exec();
            Err(format!("running {}: {error}", args.gluster_cli.display()).into())
        }
        Operation::RemoveBrick => {
            let mut input = Vec::new();
            std::io::stdin().take(64 * 1024).read_to_end(&mut input)?;
            let answer = match serde_json::from_slice::<RemoveBrickRequest>(&input) {
                Err(e) => RemoveBrickAnswer::Refused {
                    code: tonic::Code::InvalidArgument as i32,
                    message: format!("malformed request: {e}"),
                },
                Ok(request) => {
                    let transport = OneShotCli::new(
                        args.gluster_cli.clone(),
                        GlusterdAddress::Socket(args.glusterd_socket.clone()),
                        Duration::from_secs(60),
                    );
                    let glusterd = GlusterCli::new(
                        std::sync::Arc::new(transport),
                        args.gluster_cli.clone(),
                        None,
                        LockRetry::default(),
                    );
                    match remove_brick(&glusterd, &request.volume, &request.path).await {
                        Ok(removed) => RemoveBrickAnswer::Removed(removed),
                        Err(status) => RemoveBrickAnswer::Refused {
                            code: status.code() as i32,
                            message: status.message().to_string(),
                        },
                    }
                }
            };
            println!("{}", serde_json::to_string(&answer)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_from_the_argument_or_the_ssh_command() {
        assert_eq!(operation(Some("gluster"), None), Ok(Operation::Gluster));
        assert_eq!(
            operation(None, Some("glusterfs-csi ssh-command remove-brick")),
            Ok(Operation::RemoveBrick)
        );
        assert_eq!(
            operation(
                None,
                Some("/usr/local/bin/glusterfs-csi ssh-command gluster")
            ),
            Ok(Operation::Gluster)
        );
        for refused in [
            "rm -rf /",
            "gluster volume delete x",
            "glusterfs-csi ssh-command gluster; id",
            "ssh-command remove-brick extra",
            "",
        ] {
            assert!(operation(None, Some(refused)).is_err(), "{refused:?}");
        }
        assert!(operation(None, None).is_err());
        assert!(operation(Some("sh"), None).is_err());
    }
}
