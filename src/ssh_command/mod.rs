//! `glusterfs-csi ssh-command`: what the controller's ssh key may run on a
//! Gluster server. Meant as the key's forced command in `authorized_keys`
//!
//! ```text
//! command="/usr/local/bin/glusterfs-csi ssh-command --brick-root /data/glusterfs",restrict ssh-ed25519 AAAA...
//! ```
//!
//! so the key can do exactly two things, named by the last word the client
//! sends (`... ssh-command gluster` or `... ssh-command remove-brick`):
//! - `gluster`: one gluster command, read from stdin and run only if the
//!   [`allowlist`] allows it (the commands the controller sends, on the
//!   driver's volumes, with bricks under `--brick-root`), as
//!   `gluster --mode=script --xml <words>` against the local glusterd
//!   (answering at once if glusterd is down, so the controller fails over
//!   instead of waiting);
//! - `remove-brick`: a brick removal request (JSON on stdin) for a brick
//!   under `--brick-root`, checked against the local glusterd exactly as the
//!   brick agent checks it; the brick is moved to its root's trash and a
//!   detached child purges it.
//!
//! Anything refused is said on stderr, logged to syslog (authpriv) and ends
//! with exit status [`REFUSED`], which the controller reports as final
//! (PERMISSION_DENIED), never as a server to fail over from.

pub mod allowlist;
mod syslog;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::AppResult;
use crate::bricks::agent::remove_brick;
use crate::bricks::ssh::{
    CheckRootAnswer, CheckRootRequest, RemoveBrickAnswer, RemoveBrickRequest,
};
use crate::bricks::trash;
use crate::cli::SshCommandArgs;
use crate::gluster::ssh::{REFUSED, SSH_COMMAND_PREFIX};
use crate::gluster::{GlusterCli, GlusterError, Glusterd, GlusterdAddress};
use allowlist::{Allowed, BrickRoots, MAX_REQUEST, Refusal};

/// How long a client may take to send its request and close its end.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The CLI's own words when glusterd does not answer, which the controller
/// reads as "down, try the next server".
const GLUSTERD_DOWN: &str = "Connection failed. Please check if gluster daemon is operational.";

#[derive(Debug, PartialEq, Eq)]
enum Operation {
    Gluster,
    RemoveBrick,
    CheckBrickRoot,
}

/// The operation asked for: the argument, else the last word of the ssh
/// client's command, which must read `... ssh-command <operation>`.
fn operation(argument: Option<&str>, original: Option<&str>) -> Result<Operation, Refusal> {
    let refuse = |asked: &str, reason: &str| Refusal::new(asked.as_bytes(), reason);
    let word = match (argument, original) {
        (Some(argument), _) => argument,
        (None, Some(original)) => {
            let words: Vec<&str> = original.split_whitespace().collect();
            match words.as_slice() {
                [.., "ssh-command", operation] => *operation,
                _ => {
                    return Err(refuse(
                        original,
                        "only `ssh-command gluster|remove-brick|check-brick-root`",
                    ));
                }
            }
        }
        (None, None) => {
            return Err(refuse(
                "",
                "no operation: gluster, remove-brick or check-brick-root",
            ));
        }
    };
    match word {
        "gluster" => Ok(Operation::Gluster),
        "remove-brick" => Ok(Operation::RemoveBrick),
        "check-brick-root" => Ok(Operation::CheckBrickRoot),
        other => Err(refuse(
            other,
            "unknown operation: gluster, remove-brick or check-brick-root",
        )),
    }
}

pub async fn run(args: SshCommandArgs) -> AppResult<()> {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let operation = operation(args.operation.as_deref(), original.as_deref())
        .unwrap_or_else(|refusal| refuse(&refusal));
    let roots = BrickRoots::new(&args.brick_roots)?;
    match operation {
        Operation::Gluster => run_gluster(&args, &roots).await,
        Operation::RemoveBrick => run_remove_brick(&args, &roots).await,
        Operation::CheckBrickRoot => run_check_brick_root(&roots),
    }
}

/// Says why on stderr and in syslog, and ends with [`REFUSED`].
fn refuse(refusal: &Refusal) -> ! {
    syslog::log_refusal(&refusal.to_string());
    eprintln!("{SSH_COMMAND_PREFIX}{refusal}");
    std::process::exit(REFUSED)
}

/// The client's whole request (it closes its end after one), at most one
/// byte more than [`MAX_REQUEST`] so that a longer one can be refused.
fn read_request() -> Result<Vec<u8>, Refusal> {
    let (sender, receiver) = std::sync::mpsc::channel();
    // A thread, so that a client holding stdin open cannot hold us.
    std::thread::spawn(move || {
        let mut input = Vec::new();
        let read = std::io::stdin()
            .lock()
            .take(MAX_REQUEST as u64 + 1)
            .read_to_end(&mut input)
            .map(|_| input);
        let _ = sender.send(read);
    });
    match receiver.recv_timeout(REQUEST_DEADLINE) {
        Ok(Ok(input)) => Ok(input),
        Ok(Err(e)) => Err(Refusal::new(b"", format!("cannot read the request: {e}"))),
        Err(_) => Err(Refusal::new(
            b"",
            format!(
                "no complete request within {} s (send one command and close stdin)",
                REQUEST_DEADLINE.as_secs()
            ),
        )),
    }
}

async fn run_gluster(args: &SshCommandArgs, roots: &BrickRoots) -> AppResult<()> {
    let request = read_request().unwrap_or_else(|refusal| refuse(&refusal));
    let allowed = allowlist::parse(&request, roots).unwrap_or_else(|refusal| refuse(&refusal));
    let socket = &args.glusterd.glusterd_socket;
    if let Err(e) = std::os::unix::net::UnixStream::connect(socket) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            eprintln!(
                "{SSH_COMMAND_PREFIX}no permission to use {}; connect as root or give this user \
                 access to glusterd's socket",
                socket.display()
            );
            std::process::exit(1);
        }
        println!("{GLUSTERD_DOWN}");
        std::process::exit(1);
    }
    let Some(cli) = find_program(&args.glusterd.gluster_cli) else {
        eprintln!(
            "{SSH_COMMAND_PREFIX}{} not found in PATH, /usr/sbin or /sbin; install glusterfs-cli \
             or pass --gluster-cli",
            args.glusterd.gluster_cli.display()
        );
        // The shell's "command not found": the controller tries the next server.
        std::process::exit(127);
    };
    check_volume(args, &cli, &allowed, roots).await?;
    if let Some(volume) = allowed.heal_summary_volume() {
        // The CLI's `volume heal` would ignore --glusterd-sock.
        let error = std::process::Command::new(crate::gluster::transport::glfsheal_program())
            .args([volume, "info-summary", "--xml", "glusterd-sock"])
            .arg(socket)
            .stdin(Stdio::null())
            .exec();
        return Err(format!("running glfsheal: {error}").into());
    }
    let mut sock = std::ffi::OsString::from("--glusterd-sock=");
    sock.push(socket);
    let mut gluster = std::process::Command::new(&cli);
    gluster.arg("--mode=script");
    if allowed.wants_xml() {
        gluster.arg("--xml");
    }
    let error = gluster
        .arg(sock)
        .args(allowed.words.iter().map(|w| w.as_str()))
        .stdin(Stdio::null())
        .exec();
    Err(format!("running {}: {error}", cli.display()).into())
}

/// For a command that changes a volume: asks the local glusterd about it
/// and refuses unless the allowlist's rule admits what it says.
async fn check_volume(
    args: &SshCommandArgs,
    cli: &Path,
    allowed: &Allowed,
    roots: &BrickRoots,
) -> AppResult<()> {
    let Some(guard) = &allowed.guard else {
        return Ok(());
    };
    let glusterd = GlusterCli::one_shot(
        cli,
        GlusterdAddress::Socket(args.glusterd.glusterd_socket.clone()),
        Duration::from_secs(args.glusterd.gluster_timeout_seconds),
    );
    let volume = match glusterd.volume(guard.volume.as_str()).await {
        Ok(volume) => volume,
        Err(GlusterError::Unreachable { .. }) => {
            println!("{GLUSTERD_DOWN}");
            std::process::exit(1);
        }
        Err(e) => {
            return Err(format!("asking the local glusterd about {}: {e}", guard.volume).into());
        }
    };
    if let Err(reason) = allowlist::admit(guard, volume.as_ref(), roots) {
        refuse(&Refusal {
            request: allowed.request(),
            reason,
        });
    }
    Ok(())
}

async fn run_remove_brick(args: &SshCommandArgs, roots: &BrickRoots) -> AppResult<()> {
    let answer = match read_request() {
        Err(refusal) => RemoveBrickAnswer::Refused {
            code: tonic::Code::InvalidArgument as i32,
            message: refusal.to_string(),
        },
        Ok(input) => match serde_json::from_slice::<RemoveBrickRequest>(&input) {
            Err(e) => RemoveBrickAnswer::Refused {
                code: tonic::Code::InvalidArgument as i32,
                message: format!("malformed request: {e}"),
            },
            Ok(request) => remove_brick_under(args, roots, &request).await,
        },
    };
    if let RemoveBrickAnswer::Refused { message, .. } = &answer {
        syslog::log_refusal(&format!("refused remove-brick: {message}"));
    }
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// What a brick root is on this server (the controller asks before it
/// creates a volume), for the roots configured here only.
fn run_check_brick_root(roots: &BrickRoots) -> AppResult<()> {
    let refused = |code: tonic::Code, message: String| CheckRootAnswer::Refused {
        code: code as i32,
        message,
    };
    let answer = match read_request() {
        Err(refusal) => refused(tonic::Code::InvalidArgument, refusal.to_string()),
        Ok(input) => match serde_json::from_slice::<CheckRootRequest>(&input) {
            Err(e) => refused(
                tonic::Code::InvalidArgument,
                format!("malformed request: {e}"),
            ),
            Ok(request) => match roots.check_root(&request.path) {
                Err(reason) => refused(tonic::Code::PermissionDenied, reason),
                Ok(()) => match crate::bricks::root::inspect(Path::new(&request.path)) {
                    Ok(report) => CheckRootAnswer::Checked(report),
                    Err(e) => refused(
                        tonic::Code::Internal,
                        format!("inspecting {}: {e}", request.path),
                    ),
                },
            },
        },
    };
    if let CheckRootAnswer::Refused { message, .. } = &answer {
        syslog::log_refusal(&format!("refused check-brick-root: {message}"));
    }
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// The brick agent's removal, for a brick under this server's roots only.
async fn remove_brick_under(
    args: &SshCommandArgs,
    roots: &BrickRoots,
    request: &RemoveBrickRequest,
) -> RemoveBrickAnswer {
    let refused = |status: tonic::Status| RemoveBrickAnswer::Refused {
        code: status.code() as i32,
        message: format!(
            "{} {}: {}",
            allowlist::shown(request.volume.as_bytes()),
            allowlist::shown(request.path.as_bytes()),
            status.message()
        ),
    };
    if let Err(status) = allowlist::check_removal(&request.volume, &request.path, roots) {
        return refused(status);
    }
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
        Err(status) => refused(status),
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
        let refusal = operation(Some("sh"), None).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "refused `sh`: unknown operation: gluster, remove-brick or check-brick-root"
        );
        assert_eq!(
            operation(None, Some("glusterfs-csi ssh-command check-brick-root")),
            Ok(Operation::CheckBrickRoot)
        );
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
