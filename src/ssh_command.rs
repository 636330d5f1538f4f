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
//!   the local glusterd exactly as the brick agent checks it; the brick is
//!   moved to its root's trash and a detached child purges it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AppResult;
use crate::bricks::agent::remove_brick;
use crate::bricks::ssh::{RemoveBrickAnswer, RemoveBrickRequest};
use crate::bricks::trash;
use crate::cli::SshCommandArgs;
use crate::gluster::{GlusterCli, GlusterdAddress};

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
            if let Err(e) = std::os::unix::net::UnixStream::connect(&args.glusterd.glusterd_socket)
            {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    eprintln!(
                        "glusterfs-csi ssh-command: no permission to use {}; connect as root or \
                         give this user access to glusterd's socket",
                        args.glusterd.glusterd_socket.display()
                    );
                    std::process::exit(1);
                }
                // The CLI's own words, which the controller reads as "down".
                println!("Connection failed. Please check if gluster daemon is operational.");
                std::process::exit(1);
            }
            let Some(cli) = find_program(&args.glusterd.gluster_cli) else {
                eprintln!(
                    "glusterfs-csi ssh-command: {} not found in PATH, /usr/sbin or /sbin; install \
                     glusterfs-cli or pass --gluster-cli",
                    args.glusterd.gluster_cli.display()
                );
                // The shell's "command not found": the controller tries the next server.
                std::process::exit(127);
            };
            let mut sock = std::ffi::OsString::from("--glusterd-sock=");
            sock.push(&args.glusterd.glusterd_socket);
            let error = std::process::Command::new(&cli)
                .arg("--mode=script")
                .arg("--xml")
                .arg(sock)
                .exec();
            Err(format!("running {}: {error}", cli.display()).into())
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
                    let glusterd = GlusterCli::one_shot(
                        args.glusterd.gluster_cli.clone(),
                        GlusterdAddress::Socket(args.glusterd.glusterd_socket.clone()),
                        Duration::from_secs(args.glusterd.gluster_timeout_seconds),
                    );
                    match remove_brick(&glusterd, &request.volume, &request.path).await {
                        Ok(removed) => {
                            start_purge(Path::new(&request.path), removed);
                            RemoveBrickAnswer::Removed(removed)
                        }
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

/// Purges the trash the brick went to, detached: this process and the ssh
/// session end now. A failure to start only delays the purge to the next
/// removal in this brick root.
fn start_purge(brick: &Path, moved: bool) {
    let Some(trash) = trash::to_purge(brick, moved) else {
        return;
    };
    if let Err(e) = trash::purge_detached(&trash) {
        eprintln!(
            "glusterfs-csi ssh-command: cannot start purging {}: {e}",
            trash.display()
        );
    }
}

/// `program` as given if it is a path, else found in PATH or the sbin
/// directories an ssh session of a non-root user often lacks.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
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

    #[test]
    fn the_gluster_cli_is_found_outside_path() {
        // Installed by glusterfs-cli in /usr/sbin, which ssh sessions of
        // non-root users often lack in PATH.
        let found = find_program(Path::new("gluster")).unwrap();
        assert!(found.ends_with("sbin/gluster"), "{}", found.display());
        assert_eq!(find_program(Path::new("/nonexistent/gluster")), None);
        assert_eq!(find_program(Path::new("no-such-program-here")), None);
    }
}
