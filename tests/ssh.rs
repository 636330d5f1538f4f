//! The controller reaching glusterd over ssh (external clusters): a real
//! sshd per loopback server (Debian's openssh-server), each forcing
//! `glusterfs-csi ssh-command` against its server's glusterd, in front of a
//! dev cluster. The controller under test is a separate
//! `glusterfs-csi controller --glusterd-access ssh --brick-cleanup ssh`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use glusterfs_csi::proto::csi::controller_client::ControllerClient;
use glusterfs_csi::proto::csi::*;
use tonic::Code;
use tonic::transport::Channel;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");

/// One sshd per dev server, all on the same port of their own address.
struct SshServers {
    dir: tempfile::TempDir,
    port: u16,
    daemons: Vec<(String, Child)>,
}

impl SshServers {
    fn start(driver: &DevDriver) -> SshServers {
        // OpenSSH needs its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::Builder::new().prefix("sshd-").tempdir().unwrap();
        let keygen = |path: &Path| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        };
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("identity"));
        std::fs::copy(
            dir.path().join("identity.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let port = free_port(&driver.cluster.servers[0].address);
        let host_key = std::fs::read_to_string(dir.path().join("host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        let known_hosts: String = driver
            .cluster
            .addresses()
            .iter()
            .map(|a| format!("[{a}]:{port} {} {}\n", host_key[0], host_key[1]))
            .collect();
        std::fs::write(dir.path().join("known_hosts"), known_hosts).unwrap();
        let mut servers = SshServers {
            dir,
            port,
            daemons: Vec::new(),
        };
        for server in driver.cluster.servers.clone() {
            servers.start_one(&server.address, &server.glusterd_socket);
        }
        servers
    }

    fn start_one(&mut self, address: &str, socket: &Path) {
        let dir = self.dir.path();
        let config = dir.join(format!("sshd-{address}.conf"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}:{port}\n\
                 HostKey {dir}/host_key\n\
                 PidFile {dir}/sshd-{address}.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 LogLevel INFO\n\
                 ForceCommand {BINARY} ssh-command --glusterd-socket {socket}\n",
                port = self.port,
                dir = dir.display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("sshd-{address}.log"))).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(dir.join(format!("sshd-{address}.log")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let port = self.port;
        wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect((address, port)).is_ok()
        });
        self.daemons.push((address.to_string(), child));
    }

    fn stop_one(&mut self, address: &str) {
        let at = self.daemons.iter().position(|(a, _)| a == address).unwrap();
        let (_, mut child) = self.daemons.remove(at);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Successful logins so far, over every sshd.
    fn logins(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                (path.extension()? == "log").then_some(path)
            })
            .map(|log| {
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .matches("Accepted publickey")
                    .count()
            })
            .sum()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for SshServers {
    fn drop(&mut self) {
        for (_, child) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port(address: &str) -> u16 {
    std::net::TcpListener::bind((address, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `glusterfs-csi controller` using ssh for everything.
struct ControllerProcess {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl ControllerProcess {
    async fn start(driver: &DevDriver, ssh: &SshServers) -> ControllerProcess {
        let dir = tempfile::Builder::new()
            .prefix("controller-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("csi.sock");
        let servers = driver.cluster.addresses().join(",");
        let child = Command::new(BINARY)
            .arg("controller")
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .args(["--glusterd-access", "ssh", "--brick-cleanup", "ssh"])
            .arg(format!("--ssh-servers={servers}"))
            .arg(format!("--ssh-port={}", ssh.port))
            .arg(format!("--ssh-identity={}", ssh.file("identity").display()))
            .arg(format!(
                "--ssh-known-hosts={}",
                ssh.file("known_hosts").display()
            ))
            .arg(format!(
                "--default-brick-root={}",
                driver.cluster.brick_root.display()
            ))
            .env("GLUSTERFS_CSI_LOG", "info,glusterfs_csi=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(20), || socket.exists());
        ControllerProcess {
            child,
            socket,
            _dir: dir,
        }
    }

    async fn client(&self) -> ControllerClient<Channel> {
        ControllerClient::new(connect(&self.socket).await)
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_delete_and_failover_over_ssh() {
    let mut driver = DevDriver::start().await;
    let mut ssh = SshServers::start(&driver);
    let controller = ControllerProcess::start(&driver, &ssh).await;
    let mut client = controller.client().await;
    let servers = driver.cluster.addresses();

    // The loopback servers share one file system and this controller puts
    // bricks at <root>/<volume>, so each volume gets one server (replica 1).
    let create =
        |name: &str, server: &str| create_request(name, &[("replica", "1"), ("servers", server)]);
    let first = client
        .create_volume(create(&pvc_name(), &servers[0]))
        .await
        .expect("create over ssh")
        .into_inner()
        .volume
        .unwrap();
    let info = driver.gluster(&["volume", "info", &first.volume_id]);
    assert!(info.contains("<statusStr>Started</statusStr>"), "{info}");
    let brick = driver.cluster.brick_root.join(&first.volume_id);
    assert!(brick.exists());

    // Delete: stop, remove the brick over ssh (`ssh-command remove-brick`),
    // delete.
    client
        .delete_volume(DeleteVolumeRequest {
            volume_id: first.volume_id.clone(),
            ..Default::default()
        })
        .await
        .expect("delete over ssh");
    assert!(!driver.volume_names().contains(&first.volume_id));
    assert!(!brick.exists(), "brick removed over ssh");

    // The first server's sshd is gone: commands fail over to the next one.
    ssh.stop_one(&servers[0]);
    let second = client
        .create_volume(create(&pvc_name(), &servers[1]))
        .await
        .expect("create after failover")
        .into_inner()
        .volume
        .unwrap();

    // Now the server in use has sshd but no glusterd: failover again.
    driver.stop_glusterd(&servers[1]);
    let third = client
        .create_volume(create(&pvc_name(), &servers[2]))
        .await
        .expect("create with the current server's glusterd down")
        .into_inner()
        .volume
        .unwrap();
    driver.start_glusterd(&servers[1]);
    let socket = driver.server(&servers[0]).glusterd_socket.clone();
    ssh.start_one(&servers[0], &socket);

    for volume in [second, third] {
        client
            .delete_volume(DeleteVolumeRequest {
                volume_id: volume.volume_id.clone(),
                ..Default::default()
            })
            .await
            .expect("delete");
        assert!(!driver.cluster.brick_root.join(&volume.volume_id).exists());
    }
    assert!(driver.volume_names().is_empty());
}

/// Names and parameters that try to smuggle shell into the ssh command get
/// INVALID_ARGUMENT before any ssh connection is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_injection_is_refused_before_ssh() {
    let driver = DevDriver::start().await;
    let ssh = SshServers::start(&driver);
    let controller = ControllerProcess::start(&driver, &ssh).await;
    let mut client = controller.client().await;
    let history = driver.command_history();
    let logins = ssh.logins();
    let attempts: Vec<CreateVolumeRequest> = vec![
        create_request("pvc-1; rm -rf /", &[]),
        create_request("pvc-$(reboot)", &[]),
        create_request("pvc-`id`", &[]),
        create_request("pvc-1 && id", &[]),
        create_request("pvc-1\nvolume delete x", &[]),
        create_request(&pvc_name(), &[("brickRoot", "/data/$(id)")]),
        create_request(&pvc_name(), &[("brickRoot", "/data;id")]),
        create_request(&pvc_name(), &[("servers", "a;id")]),
        create_request(&pvc_name(), &[("servers", "-oProxyCommand=id")]),
        create_request(&pvc_name(), &[("volumeOptions", "a.b=$(id)")]),
        create_request(&pvc_name(), &[("volumeOptions", "a.b=x'y")]),
        create_request(&pvc_name(), &[("replica", "3|id")]),
    ];
    for request in attempts {
        let name = request.name.clone();
        let err = client.create_volume(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
    }
    for id in ["csi-x;id", "$(id)", "csi-`id`"] {
        client
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(ssh.logins(), logins, "no ssh connection was made");
    assert_eq!(driver.command_history(), history, "glusterd ran nothing");
}
