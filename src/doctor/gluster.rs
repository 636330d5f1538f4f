//! What glusterd says: is it there, are its peers, which versions meet, are
//! bricks multiplexed. Read-only commands over glusterd's unix socket.

use std::path::Path;
use std::time::Duration;

use super::{Check, Settings};
use crate::gluster::BRICK_MULTIPLEX as MULTIPLEX_OPTION;
use crate::gluster::version::{OpVersions, Release};
use crate::gluster::{GlusterCli, GlusterError, Glusterd, GlusterdAddress, Peer};

pub const GLUSTERD: &str = "glusterd";
pub const PEERS: &str = "peers";
pub const CLIENT: &str = "gluster client";
pub const OP_VERSION: &str = "op-version";
pub const MULTIPLEX: &str = "brick multiplexing";

/// What glusterd and the gluster client say, in two parts of the checklist.
pub struct GlusterChecks {
    /// glusterd, peers.
    pub pool: Vec<Check>,
    /// Client release, op-versions, brick multiplexing.
    pub versions: Vec<Check>,
}

/// On a Gluster server: glusterd, peers, client release, op-versions,
/// multiplexing.
pub async fn examine(settings: &Settings) -> GlusterChecks {
    let limit = settings.timeout;
    let socket = &settings.glusterd_socket;
    let (client, pool) = tokio::join!(
        release_within(&settings.glusterfs, limit),
        pool_list(socket, &settings.gluster_cli, limit),
    );
    let client_check = judge_client(&settings.glusterfs, &client);
    let (glusterd, cli, peers) = match pool {
        Ok((cli, peers)) => (
            Check::ok(GLUSTERD, format!("answers on {}", socket.display())),
            cli,
            peers,
        ),
        Err(check) => {
            let because = "glusterd does not answer";
            return GlusterChecks {
                pool: vec![check, Check::not_checked(PEERS, because)],
                versions: vec![
                    client_check,
                    Check::not_checked(OP_VERSION, because),
                    Check::not_checked(MULTIPLEX, because),
                ],
            };
        }
    };
    let (op_versions, multiplex) = tokio::join!(
        within(limit, cli.op_versions()),
        within(limit, cli.global_option(MULTIPLEX_OPTION)),
    );
    let op_versions =
        op_versions.and_then(|v| v.ok_or_else(|| "this glusterd client cannot tell".to_string()));
    GlusterChecks {
        pool: vec![glusterd, judge_peers(&peers)],
        versions: vec![
            client_check,
            judge_op_versions(&op_versions, client.as_ref().ok().copied()),
            judge_multiplex(&multiplex),
        ],
    }
}

/// `glusterfs --version`, bounded.
pub async fn client_version(glusterfs: &Path, limit: Duration) -> Check {
    judge_client(glusterfs, &release_within(glusterfs, limit).await)
}

/// Connects to the socket, then asks `pool list`; a failure is the
/// `glusterd` check's finding.
async fn pool_list(
    socket: &Path,
    gluster_cli: &Path,
    limit: Duration,
) -> Result<(GlusterCli, Vec<Peer>), Check> {
    let address = GlusterdAddress::Socket(socket.to_path_buf());
    match tokio::time::timeout(limit, address.check_listening()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(judge_socket(socket, socket_state(socket, e))),
        Err(_) => {
            return Err(Check::timed_out(
                GLUSTERD,
                &format!("connecting to {}", socket.display()),
                limit,
            ));
        }
    }
    let cli = GlusterCli::one_shot(gluster_cli.to_path_buf(), address, limit);
    match within(limit, cli.pool_list()).await {
        Ok(peers) => Ok((cli, peers)),
        Err(e) => Err(no_answer(socket, &e)),
    }
}

/// A gluster command's answer within `limit` (the CLI's own timeout and
/// this one say the same), its error as text.
async fn within<T>(
    limit: Duration,
    command: impl std::future::Future<Output = Result<T, GlusterError>>,
) -> Result<T, String> {
    let late = || format!("no answer within {} s", limit.as_secs());
    match tokio::time::timeout(limit, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(GlusterError::Timeout { .. })) | Err(_) => Err(late()),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// What is at glusterd's socket path when nothing answers there.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketState {
    Missing,
    NotASocket,
    /// A socket file, but connecting fails (glusterd died and left it).
    Refused(String),
}

/// Why connecting to `path` failed with `error`.
fn socket_state(path: &Path, error: impl std::fmt::Display) -> SocketState {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SocketState::Missing,
        Ok(meta) if !meta.file_type().is_socket() => SocketState::NotASocket,
        _ => SocketState::Refused(error.to_string()),
    }
}

pub fn judge_socket(path: &Path, state: SocketState) -> Check {
    let shown = path.display();
    match state {
        SocketState::Missing => Check::fail(
            GLUSTERD,
            format!("{shown} does not exist"),
            "start glusterd (systemctl enable --now glusterd), or give its socket with \
             --glusterd-socket; in a pod, mount the host's /run (deploy/examples/doctor-job.yaml); \
             on a node that is not a Gluster server, run with --client-only",
        ),
        SocketState::NotASocket => Check::fail(
            GLUSTERD,
            format!("{shown} is not a socket"),
            "give glusterd's socket with --glusterd-socket (glusterd.socket in /run or /var/run)",
        ),
        SocketState::Refused(e) => Check::fail(
            GLUSTERD,
            format!("{shown}: {e} (glusterd is not running there)"),
            "systemctl restart glusterd; if it does not stay up, read /var/log/glusterfs/glusterd.log",
        ),
    }
}

fn no_answer(socket: &Path, detail: &str) -> Check {
    Check::fail(
        GLUSTERD,
        format!(
            "{} accepts connections, but `gluster pool list` failed: {detail}",
            socket.display()
        ),
        "read /var/log/glusterfs/glusterd.log, then systemctl restart glusterd",
    )
}

/// Every peer must be connected and a full member of the pool.
pub fn judge_peers(peers: &[Peer]) -> Check {
    let name = |p: &Peer| {
        if p.is_local {
            "this server".to_string()
        } else {
            p.hostname.clone()
        }
    };
    let disconnected: Vec<String> = peers.iter().filter(|p| !p.connected).map(name).collect();
    let outside: Vec<String> = peers
        .iter()
        .filter(|p| p.connected && !p.in_cluster)
        .map(|p| format!("{} ({})", name(p), p.state))
        .collect();
    if disconnected.is_empty() && outside.is_empty() {
        let names: Vec<String> = peers.iter().map(name).collect();
        return Check::ok(
            PEERS,
            format!(
                "{} in the pool, all connected: {}",
                count(peers.len(), "server"),
                names.join(", ")
            ),
        );
    }
    let mut finding = Vec::new();
    let mut fix = Vec::new();
    if !disconnected.is_empty() {
        finding.push(format!("disconnected: {}", disconnected.join(", ")));
        fix.push(format!(
            "start glusterd on {} (systemctl start glusterd) and make sure the servers reach \
             each other on TCP port 24007 (gluster peer status there)",
            disconnected.join(", ")
        ));
    }
    if !outside.is_empty() {
        finding.push(format!("not full members: {}", outside.join(", ")));
        fix.push(
            "see docs/troubleshooting.md, \"Stale peers: Disconnected or Peer Rejected\"".into(),
        );
    }
    Check::fail(PEERS, finding.join("; "), fix.join("; "))
}

pub fn judge_client(glusterfs: &Path, release: &Result<Release, String>) -> Check {
    match release {
        Ok(release) => Check::ok(
            CLIENT,
            format!("glusterfs {release} ({} --version)", glusterfs.display()),
        ),
        Err(e) => Check::fail(
            CLIENT,
            e.clone(),
            "install the gluster client (apt install glusterfs-client; the image has it), or \
             give it with --glusterfs",
        ),
    }
}

/// The pool's op-versions against the client here, by
/// [`OpVersions::warnings`], the rules the driver logs at start-up.
pub fn judge_op_versions(pool: &Result<OpVersions, String>, client: Option<Release>) -> Check {
    let pool = match pool {
        Ok(pool) => pool,
        Err(e) => return Check::warn(OP_VERSION, format!("cannot ask glusterd: {e}"), None),
    };
    let found = format!(
        "the pool runs at op-version {}; its servers support up to {}",
        pool.current, pool.max
    );
    let Some(client) = client else {
        return Check::warn(
            OP_VERSION,
            format!("{found}; the client's release is unknown (see {CLIENT})"),
            None,
        );
    };
    let warnings = pool.warnings(client);
    if warnings.is_empty() {
        Check::ok(OP_VERSION, format!("{found}; client {client} fits"))
    } else {
        Check::warn(OP_VERSION, found, Some(warnings.join("; ")))
    }
}

/// `cluster.brick-multiplex` (`disable (DEFAULT)` until set, then as
/// set): a fact worth knowing, right either way.
pub fn judge_multiplex(value: &Result<String, String>) -> Check {
    let value = match value {
        Ok(value) => value.trim(),
        Err(e) => return Check::warn(MULTIPLEX, format!("cannot ask glusterd: {e}"), None),
    };
    match crate::gluster::boolean_option(value) {
        Some(true) => Check::ok(
            MULTIPLEX,
            format!(
                "on ({MULTIPLEX_OPTION} {value}): the bricks of a server share glusterfsd \
                 processes; the driver then records sizes without enforcing them (glusterd \
                 fails to stop multiplexed volumes with quota) and refuses classes with \
                 enforceCapacity \"true\""
            ),
        ),
        Some(false) => Check::ok(
            MULTIPLEX,
            format!(
                "off ({MULTIPLEX_OPTION} {value}): every brick runs its own glusterfsd process \
                 and port, one per volume on each server; with many volumes consider \
                 `gluster volume set all {MULTIPLEX_OPTION} on`"
            ),
        ),
        None => Check::warn(
            MULTIPLEX,
            format!("{MULTIPLEX_OPTION} is {value:?}, which is neither on nor off"),
            None,
        ),
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `glusterfs --version` ([`Release::of_binary`]), within `limit` as well.
async fn release_within(program: &Path, limit: Duration) -> Result<Release, String> {
    tokio::time::timeout(limit, Release::of_binary(program))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{} --version gave no answer within {} s",
                program.display(),
                limit.as_secs()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::CAPTURES;
    use crate::gluster::xml::Envelope;

    /// Glusterfs 10.3's answers (the brick multiplexing ones exist only
    /// for it).
    fn fixture(name: &str) -> String {
        CAPTURES[0].fixture(name)
    }

    fn peers(name: &str) -> Vec<Peer> {
        Envelope::parse("pool list", &fixture(name))
            .unwrap()
            .peers()
            .unwrap()
    }

    #[test]
    fn peers_from_captured_pool_lists() {
        let all = judge_peers(&peers("pool_list.xml"));
        assert_eq!(all.status, super::super::Status::Ok, "{all:?}");
        assert!(all.finding.starts_with("3 servers in the pool"), "{all:?}");
        assert!(all.finding.contains("this server"));
        let down = judge_peers(&peers("pool_list_peer_down.xml"));
        assert_eq!(down.status, super::super::Status::Fail);
        assert_eq!(down.finding, "disconnected: 127.77.1.3");
        let fix = down.fix.unwrap();
        assert!(
            fix.starts_with("start glusterd on 127.77.1.3") && fix.contains("24007"),
            "{fix}"
        );
        let single = judge_peers(&peers("pool_list_single.xml"));
        assert_eq!(
            single.finding,
            "1 server in the pool, all connected: this server"
        );
    }

    #[test]
    fn a_rejected_peer_is_a_failure_too() {
        let mut list = peers("pool_list.xml");
        let peer = list.iter_mut().find(|p| !p.is_local).unwrap();
        peer.in_cluster = false;
        peer.state = "Peer Rejected".into();
        let check = judge_peers(&list);
        assert_eq!(check.status, super::super::Status::Fail);
        assert!(check.finding.contains("(Peer Rejected)"), "{check:?}");
        assert!(check.fix.unwrap().contains("Stale peers"));
    }

    #[test]
    fn socket_findings_name_the_fix() {
        let path = Path::new("/run/glusterd.socket");
        let missing = judge_socket(path, SocketState::Missing);
        assert!(
            missing
                .fix
                .unwrap()
                .contains("systemctl enable --now glusterd")
        );
        let stale = judge_socket(path, SocketState::Refused("Connection refused".into()));
        assert!(stale.finding.contains("Connection refused"));
        assert!(stale.fix.unwrap().contains("systemctl restart glusterd"));
        assert!(judge_socket(path, SocketState::NotASocket).fix.is_some());
        let dir = tempfile::tempdir().unwrap();
        let state = |path: &Path| socket_state(path, "refused");
        assert_eq!(state(&dir.path().join("none")), SocketState::Missing);
        assert_eq!(state(dir.path()), SocketState::NotASocket);
        let socket = dir.path().join("s");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert_eq!(state(&socket), SocketState::Refused("refused".into()));
    }

    fn versions(current: u32, max: u32) -> Result<OpVersions, String> {
        Ok(OpVersions { current, max })
    }

    #[test]
    fn op_versions_against_the_client() {
        let ten = Release {
            major: 10,
            minor: 3,
        };
        let fits = judge_op_versions(&versions(100000, 100000), Some(ten));
        assert_eq!(fits.status, super::super::Status::Ok);
        assert!(fits.finding.contains("op-version 100000"), "{fits:?}");
        let older = judge_op_versions(&versions(110000, 110000), Some(ten));
        assert_eq!(older.status, super::super::Status::Warn);
        assert!(
            older
                .fix
                .unwrap()
                .contains("older than the pool's op-version")
        );
        let unknown = judge_op_versions(&versions(100000, 100000), None);
        assert_eq!(unknown.status, super::super::Status::Warn);
        let unasked = judge_op_versions(&Err("no answer".into()), Some(ten));
        assert!(unasked.finding.contains("no answer"));
    }

    #[test]
    fn client_release() {
        let ok = judge_client(
            Path::new("glusterfs"),
            &Ok(Release {
                major: 10,
                minor: 3,
            }),
        );
        assert_eq!(ok.finding, "glusterfs 10.3 (glusterfs --version)");
        let missing = judge_client(Path::new("glusterfs"), &Err("not found".into()));
        assert_eq!(missing.status, super::super::Status::Fail);
        assert!(missing.fix.unwrap().contains("glusterfs-client"));
    }

    #[test]
    fn multiplexing_from_captured_output() {
        let value = |name: &str| {
            Envelope::parse("volume get", &fixture(name))
                .unwrap()
                .global_option(MULTIPLEX_OPTION)
                .map_err(|e| e.to_string())
        };
        // Never set: glusterd 10.3 says `disable (DEFAULT)`.
        let default = value("volume_get_brick_multiplex.xml");
        assert_eq!(default.as_deref(), Ok("disable (DEFAULT)"));
        let check = judge_multiplex(&default);
        assert_eq!(check.status, super::super::Status::Ok);
        assert!(
            check
                .finding
                .starts_with("off (cluster.brick-multiplex disable (DEFAULT))"),
            "{check:?}"
        );
        // After `volume set all cluster.brick-multiplex on`.
        let on = judge_multiplex(&value("volume_get_brick_multiplex_on.xml"));
        assert!(on.finding.starts_with("on ("), "{on:?}");
        assert!(
            judge_multiplex(&Ok("enable".into()))
                .finding
                .starts_with("on (")
        );
        let odd = judge_multiplex(&Ok("maybe".into()));
        assert_eq!(odd.status, super::super::Status::Warn);
        let unasked = judge_multiplex(&Err("volume get: no value".into()));
        assert_eq!(unasked.status, super::super::Status::Warn);
    }
}
