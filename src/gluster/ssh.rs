//! The gluster CLI on a Gluster server, reached over ssh (for clusters
//! outside Kubernetes).
//!
//! The ssh command line holds only configuration: user, host, port, key,
//! known hosts and a fixed remote command. Each gluster command is written
//! to the remote CLI's stdin, so request data never meets a shell. One ssh
//! process per command: a remote CLI session would hang when that server's
//! glusterd dies, while a fresh one fails fast and lets the next server be
//! tried.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::{GlusterError, classify_cli_failure};
use super::transport::{CliArg, CliCommand, CliTransport, heal_summary_command};
use crate::names::is_host_name;

/// ssh exits with 255 when ssh itself failed (connect, auth, host key).
const SSH_FAILED: i32 = 255;
/// The shell's "command not found".
const NOT_FOUND: i32 = 127;
/// `glusterfs-csi ssh-command`'s exit status when its allowlist refuses a
/// command (sysexits' EX_NOPERM); the reason is on stderr.
pub const REFUSED: i32 = 77;
/// How ssh-command starts every line it writes to stderr.
pub const SSH_COMMAND_PREFIX: &str = "glusterfs-csi ssh-command: ";

/// How to reach the Gluster servers over ssh.
#[derive(Clone, Debug)]
pub struct SshConfig {
    pub servers: Vec<String>,
    pub port: u16,
    pub user: String,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub connect_timeout: Duration,
}

/// The output of one remote command.
pub struct RemoteOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl SshConfig {
    /// Checks everything that ends up on the ssh command line.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(bad) = self.servers.iter().find(|s| !is_host_name(s)) {
            return Err(format!("{bad:?} is not a host name or IPv4 address"));
        }
        let user_ok = !self.user.is_empty()
            && self.user.len() <= 32
            && self.user.as_bytes()[0].is_ascii_lowercase()
            && self
                .user
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !user_ok {
            return Err(format!("{:?} is not a plain user name", self.user));
        }
        for (what, path) in [
            ("identity", &self.identity),
            ("known hosts", &self.known_hosts),
        ] {
            if !path.is_absolute() {
                return Err(format!("the ssh {what} file must be an absolute path"));
            }
        }
        Ok(())
    }

    /// Runs the fixed `remote` command on `host`, feeding `input` to its
    /// stdin, within `limit`.
    pub async fn run(
        &self,
        host: &str,
        remote: &[String],
        input: &[u8],
        limit: Duration,
    ) -> std::io::Result<Option<RemoteOutput>> {
        let mut ssh = Command::new("ssh");
        ssh.args(["-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "IdentitiesOnly=yes"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                self.connect_timeout.as_secs().max(1)
            ))
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(&self.identity)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-l")
            .arg(&self.user)
            .arg(host)
            .args(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = ssh.spawn()?;
        let exchange = async {
            if let Some(mut stdin) = child.stdin.take() {
                // A remote side that exits early closes the pipe: not an error here.
                let _ = stdin.write_all(input).await;
            }
            child.wait_with_output().await
        };
        match tokio::time::timeout(limit, exchange).await {
            Ok(output) => {
                let output = output?;
                Ok(Some(RemoteOutput {
                    status: output.status.code(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                }))
            }
            Err(_) => Ok(None),
        }
    }
}

/// ssh-command's reason, without its prefix, bounded for messages.
fn refusal_message(stderr: &str) -> String {
    let stderr = stderr.trim();
    let reason = stderr.strip_prefix(SSH_COMMAND_PREFIX).unwrap_or(stderr);
    let reason: String = reason.chars().take(500).collect();
    if reason.is_empty() {
        "refused the command (no reason given)".to_string()
    } else {
        reason
    }
}

/// Checks a configured remote command: plain words, nothing a shell would
/// interpret.
pub fn parse_remote_command(command: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return Err("empty remote command".into());
    }
    for word in &words {
        let plain = word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/=-".contains(&b));
        if !plain {
            return Err(format!(
                "{word:?}: remote command words may only hold letters, digits and . _ / = -"
            ));
        }
    }
    Ok(words)
}

/// [`CliTransport`] over ssh with failover across the configured servers.
pub struct SshCli {
    ssh: SshConfig,
    remote_command: Vec<String>,
    timeout: Duration,
    /// The server that answered last; tried first.
    current: AtomicUsize,
}

impl SshCli {
    pub fn new(ssh: SshConfig, remote_command: Vec<String>, timeout: Duration) -> Self {
        SshCli {
            ssh,
            remote_command,
            timeout,
            current: AtomicUsize::new(0),
        }
    }

    async fn run_on(&self, host: &str, command: &CliCommand) -> Result<String, GlusterError> {
        let output = self
            .ssh
            .run(
                host,
                &self.remote_command,
                command.line().as_bytes(),
                self.timeout,
            )
            .await
            .map_err(GlusterError::Spawn)?
            .ok_or_else(|| GlusterError::Timeout {
                command: command.name.clone(),
                seconds: self.timeout.as_secs(),
            })?;
        self.judge(host, command, output)
    }

    /// Reads one server's answer: gluster's XML, or why there is none. Only
    /// "ssh or the server's glusterd cannot be reached" lets the caller try
    /// the next server; everything else, a refusal above all, is final.
    fn judge(
        &self,
        host: &str,
        command: &CliCommand,
        output: RemoteOutput,
    ) -> Result<String, GlusterError> {
        if output.stdout.contains(command.end_tag()) {
            return Ok(output.stdout);
        }
        let target = format!("{}@{host}", self.ssh.user);
        match output.status {
            Some(SSH_FAILED) => Err(GlusterError::Unreachable {
                target,
                detail: format!("ssh failed: {}", output.stderr.trim()),
            }),
            Some(NOT_FOUND) => Err(GlusterError::Unreachable {
                target,
                detail: format!(
                    "remote command {:?}: a program was not found ({}); is glusterfs-csi \
                     installed there, and the gluster CLI? see docs/k3s-external.md",
                    self.remote_command.join(" "),
                    output.stderr.trim()
                ),
            }),
            Some(REFUSED) => Err(GlusterError::Refused {
                target,
                message: refusal_message(&output.stderr),
            }),
            _ => Err(classify_cli_failure(
                &command.name,
                &target,
                &format!("{}{}", output.stdout, output.stderr),
            )),
        }
    }
}

#[async_trait]
impl CliTransport for SshCli {
    async fn run(&self, command: &CliCommand) -> Result<String, GlusterError> {
        let servers = &self.ssh.servers;
        let first = self.current.load(Ordering::Relaxed) % servers.len();
        let mut failures = Vec::new();
        for step in 0..servers.len() {
            let index = (first + step) % servers.len();
            let host = &servers[index];
            match self.run_on(host, command).await {
                Ok(xml) => {
                    if step > 0 {
                        tracing::warn!(server = %host, "gluster commands fail over to this server");
                        self.current.store(index, Ordering::Relaxed);
                    }
                    return Ok(xml);
                }
                Err(GlusterError::Unreachable { detail, .. }) => {
                    tracing::warn!(server = %host, %detail, "gluster server unreachable over ssh");
                    failures.push(format!("{host}: {detail}"));
                }
                Err(other) => return Err(other),
            }
        }
        Err(GlusterError::Unreachable {
            target: format!("every ssh server ({})", servers.join(", ")),
            detail: failures.join("; "),
        })
    }

    /// On a server, the CLI's `volume heal V info summary` finds glusterd's
    /// own socket (ssh-command allows exactly that shape).
    async fn heal_summary(&self, volume: &CliArg) -> Result<String, GlusterError> {
        self.run(&heal_summary_command(volume)?).await
    }

    fn describe(&self) -> String {
        let host = &self.ssh.servers[self.current.load(Ordering::Relaxed) % self.ssh.servers.len()];
        format!("ssh {}@{host}:{}", self.ssh.user, self.ssh.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SshConfig {
        SshConfig {
            servers: vec!["gluster-1".into(), "10.0.0.2".into()],
            port: 22,
            user: "root".into(),
            identity: "/etc/glusterfs-csi/ssh/id".into(),
            known_hosts: "/etc/glusterfs-csi/ssh/known_hosts".into(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn configuration_is_checked() {
        assert!(config().validate().is_ok());
        for bad in [
            SshConfig {
                servers: vec!["-oProxyCommand=evil".into()],
                ..config()
            },
            SshConfig {
                user: "root;id".into(),
                ..config()
            },
            SshConfig {
                identity: "relative".into(),
                ..config()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remote_commands_are_plain_words() {
        assert_eq!(
            parse_remote_command("glusterfs-csi ssh-command gluster").unwrap(),
            ["glusterfs-csi", "ssh-command", "gluster"]
        );
        assert!(parse_remote_command("gluster --mode=script --xml").is_ok());
        for bad in [
            "",
            "gluster; id",
            "gluster $(id)",
            "a|b",
            "a > b",
            "a`b`",
            "a'b",
        ] {
            assert!(parse_remote_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_unreachable_servers_are_worth_the_next_one() {
        let cli = SshCli::new(config(), vec!["x".into()], Duration::from_secs(1));
        let command = CliCommand::from_line("volume delete csi-x").unwrap();
        let answer = |status: i32, stdout: &str, stderr: &str| {
            cli.judge(
                "gluster-1",
                &command,
                RemoteOutput {
                    status: Some(status),
                    stdout: stdout.into(),
                    stderr: stderr.into(),
                },
            )
        };
        let refused = answer(
            REFUSED,
            "",
            "glusterfs-csi ssh-command: refused `volume delete csi-x`: not marked\n",
        )
        .unwrap_err();
        assert!(
            matches!(refused, GlusterError::Refused { ref message, .. }
                if message == "refused `volume delete csi-x`: not marked"),
            "{refused:?}"
        );
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            refused.to_string(),
            "glusterfs-csi ssh-command on root@gluster-1 refused `volume delete csi-x`: not marked"
        );
        let down = "Connection failed. Please check if gluster daemon is operational.\n";
        for (status, stdout, stderr) in [
            (SSH_FAILED, "", "timeout"),
            (NOT_FOUND, "", ""),
            (1, down, ""),
        ] {
            let err = answer(status, stdout, stderr).unwrap_err();
            assert!(matches!(err, GlusterError::Unreachable { .. }), "{err:?}");
        }
        let err = answer(1, "", "something else").unwrap_err();
        assert!(matches!(err, GlusterError::BadOutput { .. }), "{err:?}");
        assert!(answer(0, "<cliOutput></cliOutput>", "").is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_as_such() {
        // Nothing listens on 127.255.255.1:1; ssh exits 255 at once.
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshConfig {
            servers: vec!["127.255.255.1".into()],
            port: 1,
            identity: dir.path().join("id"),
            known_hosts: dir.path().join("known_hosts"),
            ..config()
        };
        let cli = SshCli::new(ssh, vec!["gluster".into()], Duration::from_secs(10));
        let command = CliCommand::new(vec![
            super::super::transport::CliArg::new("volume").unwrap(),
            super::super::transport::CliArg::new("list").unwrap(),
        ]);
        let err = cli.run(&command).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
        assert!(err.to_string().contains("127.255.255.1"), "{err}");
    }
}
