//! Brick roots and the brick agent's guards, against a real dev cluster:
//! a brick root that is not a file system of its own is refused before
//! anything is made, unless the StorageClass allows it; a tmpfs mounted as
//! the brick root is accepted without `force`; a node plugin's agent refuses
//! to start without a token, and does not answer "nothing to remove" under
//! a brick root that is not mounted into it.
//! Needs root and glusterfs-server (see README).

mod common;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use glusterfs_csi::bricks::agent::TOKEN_HEADER;
use glusterfs_csi::proto::brick_agent::brick_agent_client::BrickAgentClient;
use glusterfs_csi::proto::brick_agent::{CheckBrickRootRequest, RemoveBrickRequest};
use tonic::Code;
use tonic::transport::Channel;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");
const TOKEN: &str = "brick-roots-test-token";

/// A tmpfs mounted for the test, lazily unmounted when dropped (also when
/// the test fails, and while brick processes still hold files in it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(target: &Path) -> Tmpfs {
        std::fs::create_dir_all(target).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "brick-roots-test"])
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", target.display());
        Tmpfs(target.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `glusterfs-csi node` with a brick agent, as the chart runs it (but
/// against a dev server's glusterd), killed when dropped.
struct NodeAgent {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl NodeAgent {
    fn start(listen: &str, glusterd_socket: &Path) -> NodeAgent {
        let dir = tempfile::Builder::new()
            .prefix("node-agent-")
            .tempdir()
            .unwrap();
        let mut child = Command::new(BINARY)
            .arg("node")
            .arg(format!(
                "--endpoint=unix://{}",
                dir.path().join("csi.sock").display()
            ))
            .args(["--node-id=brick-roots-test", "--mounter=inline"])
            .arg(format!(
                "--state-dir={}",
                dir.path().join("state").display()
            ))
            .arg(format!("--brick-agent-listen={listen}"))
            .arg(format!("--glusterd-socket={}", glusterd_socket.display()))
            .env("GLUSTERFS_CSI_BRICK_AGENT_TOKEN", TOKEN)
            .env("GLUSTERFS_CSI_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("the node plugin ended before its brick agent listened");
            };
            if line.contains("brick agent serving")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                break addr.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        NodeAgent {
            child,
            address,
            _dir: dir,
        }
    }

    async fn client(&self) -> BrickAgentClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .unwrap();
        BrickAgentClient::new(channel)
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        wait_until(Duration::from_secs(20), || {
            self.child.try_wait().is_ok_and(|s| s.is_some())
        });
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(TOKEN_HEADER, token.parse().unwrap());
    request
}

/// `volume create` lines of this volume in the first server's command
/// history (the controller talks to it).
fn creates_of(driver: &DevDriver, volume: &str) -> Vec<String> {
    driver.command_history()[0]
        .iter()
        .filter(|l| l.contains(&format!("volume create {volume} ")))
        .cloned()
        .collect()
}

/// The per-server directories the dev layout puts bricks in.
fn server_dirs(driver: &DevDriver, root: &Path) {
    for server in driver.cluster.addresses() {
        std::fs::create_dir_all(root.join(server)).unwrap();
    }
}

fn no_brick_of(driver: &DevDriver, root: &Path, volume: &str) {
    for server in driver.cluster.addresses() {
        let brick = root.join(&server).join(volume);
        assert!(!brick.exists(), "{} was made", brick.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brick_roots_must_be_file_systems_of_their_own_unless_allowed() {
    // Mounted before the cluster starts, as a server's disk is before its
    // glusterd: each dev server's mount namespace is a copy of this one's
    // made then (src/dev/cluster.rs). Dropped after the driver.
    let disk_dir = tempfile::Builder::new()
        .prefix("brick-roots-disk-")
        .tempdir()
        .unwrap();
    let disk = disk_dir.path().to_path_buf();
    let _disk = Tmpfs::mount(&disk);
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let servers = driver.cluster.addresses();
    // On /tmp's file system: the dev "servers" are this machine.
    let plain = driver.kubelet.path().join("plain");
    server_dirs(&driver, &plain);
    server_dirs(&driver, &disk);
    let plain_root = plain.to_str().unwrap();
    let disk_root = disk.to_str().unwrap();

    // Not a mount point, root file systems not allowed: refused, nothing made.
    let name = pvc_name();
    let refused = create_request(
        &name,
        &[
            ("brickRoot", plain_root),
            ("allowRootFilesystemBricks", "false"),
        ],
    );
    let err = controller.create_volume(refused).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    for server in &servers {
        assert!(
            err.message().contains(&format!(
                "brick root {plain_root} on {server} is not a mount point of its own (it is on \
                 the root file system"
            )),
            "{}",
            err.message()
        );
    }
    assert!(err.message().contains("allowRootFilesystemBricks"));
    let id = format!("csi-{name}");
    assert!(driver.volume_names().is_empty());
    assert!(
        creates_of(&driver, &id).is_empty(),
        "glusterd was not asked"
    );
    no_brick_of(&driver, &plain, &id);

    // A missing root is refused, allowed or not.
    let missing = driver.kubelet.path().join("missing");
    for allowed in ["false", "true"] {
        let request = create_request(
            &pvc_name(),
            &[
                ("brickRoot", missing.to_str().unwrap()),
                ("allowRootFilesystemBricks", allowed),
            ],
        );
        let err = controller.create_volume(request).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains(&format!(
                "brick root {} does not exist on {}",
                missing.display(),
                servers[0]
            )),
            "{}",
            err.message()
        );
    }
    assert!(driver.volume_names().is_empty());

    // Allowed by the class: made, with force.
    let allowed = controller
        .create_volume(create_request(
            &name,
            &[
                ("brickRoot", plain_root),
                ("allowRootFilesystemBricks", "true"),
            ],
        ))
        .await
        .expect("root file system bricks allowed")
        .into_inner()
        .volume
        .unwrap();
    let creates = creates_of(&driver, &allowed.volume_id);
    assert!(
        creates.len() == 1 && creates[0].contains(" force : SUCCESS"),
        "{creates:?}"
    );

    // A file system of its own needs no permission, and no force.
    let own = controller
        .create_volume(create_request(
            &pvc_name(),
            &[
                ("brickRoot", disk_root),
                ("allowRootFilesystemBricks", "false"),
            ],
        ))
        .await
        .expect("a tmpfs brick root")
        .into_inner()
        .volume
        .unwrap();
    let creates = creates_of(&driver, &own.volume_id);
    assert!(
        creates.len() == 1 && !creates[0].contains(" force ") && creates[0].contains("SUCCESS"),
        "{creates:?}"
    );
    assert!(disk.join(&servers[1]).join(&own.volume_id).is_dir());

    for volume in [&allowed, &own] {
        controller
            .delete_volume(delete_volume_request(volume))
            .await
            .unwrap();
    }
    assert!(driver.volume_names().is_empty());
    no_brick_of(&driver, &plain, &allowed.volume_id);
    no_brick_of(&driver, &disk, &own.volume_id);

    // A node plugin's agent (run as the chart runs it) against the first server.
    let first = &driver.cluster.servers[0];
    let agent = NodeAgent::start(&format!("{}:0", first.address), &first.glusterd_socket);
    let mut client = agent.client().await;
    let check = |path: &Path, token: &str| {
        with_token(
            CheckBrickRootRequest {
                path: path.to_string_lossy().into_owned(),
            },
            token,
        )
    };
    let err = client
        .check_brick_root(check(&disk, "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let seen = client
        .check_brick_root(check(&disk, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(
        seen.exists && seen.is_directory && seen.own_file_system,
        "{seen:?}"
    );
    assert_eq!(seen.file_system_type, "tmpfs");
    assert_eq!(seen.total_bytes, 64 << 20);
    let seen = client
        .check_brick_root(check(&plain, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(seen.exists && !seen.own_file_system, "{seen:?}");
    assert_eq!(seen.file_system_mount_point, "/");

    // "Nothing to remove" only under a root mounted into it.
    let gone = |root: &Path| {
        let volume = format!("csi-{}", pvc_name());
        with_token(
            RemoveBrickRequest {
                path: root.join(&volume).to_string_lossy().into_owned(),
                volume,
            },
            TOKEN,
        )
    };
    let err = client.remove_brick(gone(&plain)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains(&format!(
            "brick root {plain_root} is not mounted into the node plugin"
        )),
        "{}",
        err.message()
    );
    let answer = client.remove_brick(gone(&disk)).await.unwrap().into_inner();
    assert!(!answer.removed);
}

#[test]
fn agents_and_controllers_do_not_start_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let endpoint = format!("--endpoint=unix://{}", socket.display());
    let state = format!("--state-dir={}", dir.path().join("state").display());
    for (argv, needed_by) in [
        (
            vec![
                "node",
                &endpoint,
                &state,
                "--node-id=n",
                "--mounter=inline",
                "--brick-agent-listen=127.0.0.1:0",
            ],
            "--brick-agent-listen",
        ),
        (vec!["controller", &endpoint], "--brick-cleanup agent"),
    ] {
        for token in [None, Some(" ")] {
            let mut command = Command::new(BINARY);
            command
                .args(&argv)
                .env_remove("GLUSTERFS_CSI_BRICK_AGENT_TOKEN")
                .stdin(Stdio::null());
            if let Some(token) = token {
                command.env("GLUSTERFS_CSI_BRICK_AGENT_TOKEN", token);
            }
            let output = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            let at = format!("{argv:?} token {token:?}");
            assert_eq!(output.status.code(), Some(1), "{at}: {stderr}");
            assert!(
                stderr.contains(&format!("{needed_by} needs the brick agent token"))
                    && stderr.contains("GLUSTERFS_CSI_BRICK_AGENT_TOKEN")
                    && stderr.contains("--brick-agent-token"),
                "{at}: {stderr}"
            );
            assert!(!socket.exists(), "{at}: served before refusing");
        }
    }
}
