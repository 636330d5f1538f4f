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
    /// The dev cluster's brick root, the one `--brick-root` of the forced command.
    brick_root: PathBuf,
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
            brick_root: driver.cluster.brick_root.clone(),
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
                 ForceCommand {BINARY} ssh-command --glusterd-socket {socket} \
                 --brick-root {brick_root}\n",
                port = self.port,
                dir = dir.display(),
                socket = socket.display(),
                brick_root = self.brick_root.display(),
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

    /// One session with the controller's key, as anyone who holds it could
    /// open: `remote` as the command, `input` on stdin.
    fn session(&self, address: &str, remote: &str, input: &[u8]) -> std::process::Output {
        let mut ssh = Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ])
            .args(["-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.file("known_hosts").display()
            ))
            .arg("-i")
            .arg(self.file("identity"))
            .args(["-p", &self.port.to_string(), "-l", "root", address, remote])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = ssh.stdin.take().unwrap();
        let input = input.to_vec();
        // The far side may stop reading early (and refuse): not an error here.
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
        let output = ssh.wait_with_output().unwrap();
        writer.join().unwrap();
        output
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
            // The dev cluster's brick root is on the machine's root file system.
            .arg("--allow-root-filesystem-bricks")
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
    // Health over ssh: `volume status V` passes the server's allowlist.
    let health = client
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: first.volume_id.clone(),
        })
        .await
        .expect("ControllerGetVolume over ssh")
        .into_inner();
    let condition = health.status.unwrap().volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);

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

    // As the external-provisioner does: a retryable answer (the restarted
    // glusterd cannot yet say which clients use a volume) is asked again.
    for volume in [second, third] {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            match client.delete_volume(delete_volume_request(&volume)).await {
                Ok(_) => break,
                Err(status)
                    if matches!(status.code(), Code::Aborted | Code::Unavailable)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(status) => panic!("delete: {status:?}"),
            }
        }
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

/// What a session could have changed: glusterd's volumes (with their
/// options and bricks) and every path under the brick roots.
fn snapshot(driver: &DevDriver, dirs: &[&Path]) -> (String, Vec<PathBuf>) {
    let mut paths = Vec::new();
    let mut pending: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
            paths.push(entry.path());
        }
    }
    paths.sort();
    (driver.gluster(&["volume", "info"]), paths)
}

/// Everything a holder of the controller's key might try beyond what the
/// controller sends is refused by the forced command, on the server, and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sessions_are_refused_and_change_nothing() {
    let driver = DevDriver::start().await;
    let ssh = SshServers::start(&driver);
    let servers = driver.cluster.addresses();
    let (first, third) = (&servers[0], &servers[2]);
    let root = driver.cluster.brick_root.clone();

    // Volumes someone else made with the gluster CLI: one outside the
    // driver's names, one driver-named with an admin's option under the
    // brick root, and one that looks like an interrupted create of the
    // driver but whose brick lies outside the brick roots.
    let elsewhere = tempfile::Builder::new()
        .prefix("foreign-")
        .tempdir()
        .unwrap();
    let made_by_hand = [
        ("gv-foreign", elsewhere.path().join("gv-foreign")),
        ("csi-admin-made", root.join("csi-admin-made")),
        ("csi-lookalike", elsewhere.path().join("csi-lookalike")),
    ];
    for (volume, brick) in &made_by_hand {
        let brick = format!("{first}:{}", brick.display());
        driver.gluster(&["volume", "create", volume, &brick, "force"]);
    }
    driver.gluster(&["volume", "set", "csi-admin-made", "user.owner", "admin"]);

    let gluster = "glusterfs-csi ssh-command gluster";
    let remove = "glusterfs-csi ssh-command remove-brick";
    let create = |path: &str| format!("volume create csi-evil {first}:{path} force\n");
    let root_str = root.display().to_string();
    let not_sent = "not a command the controller sends";
    let not_ours = "does not carry this driver's marks";
    let outside = "is not <brick root>/";
    let not_plain = "is not a plain word";
    // (remote command, request, why it must be refused)
    let g = |request: &str, why: &'static str| (gluster, request.to_string(), why);
    let sessions = vec![
        // More than one command, or more than one line.
        g(
            "pool list\nvolume delete gv-foreign\n",
            "one command per connection",
        ),
        g("volume info\nvolume info\n", "one command per connection"),
        g("pool list\n\n", "one command per connection"),
        g(
            &format!("volume info {}\n", "x".repeat(70 * 1024)),
            "64 KiB",
        ),
        g("", "no command"),
        // Volumes the driver did not make.
        g(
            "volume delete gv-foreign\n",
            "not a volume name this driver makes",
        ),
        g(
            "volume stop gv-foreign force\n",
            "not a volume name this driver makes",
        ),
        g("volume stop csi-admin-made force\n", not_ours),
        g("volume delete csi-admin-made\n", not_ours),
        g("volume start csi-admin-made\n", not_ours),
        g("volume set csi-admin-made user.csi.deleting 1\n", not_ours),
        g(
            "volume set csi-admin-made features.read-only on\n",
            not_ours,
        ),
        g("volume delete csi-lookalike\n", not_ours),
        g(
            "volume set csi-lookalike user.csi.deleting 1 user.csi.name interrupted-create\n",
            outside,
        ),
        g(
            "volume set csi-lookalike user.csi.name pvc-x user.csi.size 1\n",
            outside,
        ),
        // Commands the controller never sends.
        g("system:: execute gsec_create\n", not_sent),
        g(&format!("peer detach {third}\n"), not_sent),
        g("peer probe 192.0.2.1\n", not_sent),
        g("volume frobnicate csi-admin-made\n", not_sent),
        g("volume reset csi-admin-made\n", not_sent),
        g(
            "volume set csi-admin-made group virt\n",
            "not a gluster option name",
        ),
        // Bricks outside the roots this server allows.
        g(&create("/root/x"), outside),
        g(&create("/root/csi-evil"), outside),
        g(&create(&format!("{root_str}/../etc")), outside),
        g(&create(&format!("{root_str}/../csi-evil")), outside),
        g(&create(&format!("{root_str}/other-name")), outside),
        g(&create(&format!("{root_str}/{first}/csi-evil")), outside),
        // Option-like words.
        g("--mode=script volume delete csi-admin-made\n", not_plain),
        g("volume info -x\n", not_plain),
        g(
            "volume info csi-admin-made --glusterd-sock=/tmp/x\n",
            not_plain,
        ),
        // Anything but the two operations.
        (
            "sh -c id",
            String::new(),
            "only `ssh-command gluster|remove-brick|check-brick-root`",
        ),
        (
            "glusterfs-csi ssh-command sh",
            String::new(),
            "unknown operation",
        ),
    ];
    // (volume, brick path, gRPC code of the refusal): removals outside the roots
    let removals = [
        (
            "csi-lookalike",
            elsewhere.path().join("csi-lookalike"),
            Code::PermissionDenied,
        ),
        (
            "gv-foreign",
            elsewhere.path().join("gv-foreign"),
            Code::InvalidArgument,
        ),
        (
            "csi-admin-made",
            root.join("x/../csi-admin-made"),
            Code::PermissionDenied,
        ),
    ];

    let root_x = Path::new("/root/x").exists();
    let before = snapshot(&driver, &[&root, elsewhere.path()]);
    let history = driver.command_history();
    let started = std::time::Instant::now();
    // A few at a time: each session costs an ssh handshake (~0.3 s here).
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some((remote, input, why)) = sessions.get(at) {
                        let output = ssh.session(first, remote, input.as_bytes());
                        let stderr = String::from_utf8_lossy(&output.stderr);
                        // The login shell may print its own noise first (root's
                        // .bashrc here runs `pyenv init`, whose rehash races
                        // between concurrent sessions): the refusal is read
                        // from its own first line on.
                        let stderr = stderr
                            .find("glusterfs-csi ssh-command: ")
                            .map_or(&*stderr, |at| &stderr[at..]);
                        let what = format!("{remote} <<< {:.200?}", input);
                        assert_eq!(output.status.code(), Some(77), "{what}: {output:?}");
                        assert!(
                            stderr.starts_with("glusterfs-csi ssh-command: refused `")
                                && stderr.contains(why),
                            "{what}: {stderr} (expected {why:?})"
                        );
                        assert!(output.stdout.is_empty(), "{what}: {output:?}");
                    } else if let Some((volume, path, code)) = removals.get(at - sessions.len()) {
                        let request =
                            format!(r#"{{"volume":"{volume}","path":"{}"}}"#, path.display());
                        let output = ssh.session(first, remove, request.as_bytes());
                        let stdout = String::from_utf8_lossy(&output.stdout);
                        assert!(output.status.success(), "{request}: {output:?}");
                        let refused = format!(r#"{{"refused":{{"code":{},"#, *code as i32);
                        assert!(stdout.starts_with(&refused), "{request}: {stdout}");
                    } else {
                        break;
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let count = sessions.len() + removals.len();
    eprintln!("{count} hostile sessions refused in {elapsed:?}");
    assert_eq!(snapshot(&driver, &[&root, elsewhere.path()]), before);
    assert_eq!(Path::new("/root/x").exists(), root_x);
    // glusterd ran nothing that changes state (it logs every such command).
    assert_eq!(driver.command_history(), history);

    // Brick roots: only those configured on the server are described.
    let check = "glusterfs-csi ssh-command check-brick-root";
    for (path, answer) in [
        (
            "/root",
            format!(r#"{{"refused":{{"code":{},"#, Code::PermissionDenied as i32),
        ),
        (
            root_str.as_str(),
            r#"{"checked":{"exists":true,"is_directory":true,"own_file_system":false"#.to_string(),
        ),
    ] {
        let request = format!(r#"{{"path":"{path}"}}"#);
        let output = ssh.session(first, check, request.as_bytes());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with(&answer),
            "{request}: {stdout} {output:?}"
        );
    }

    // The same key still does what the controller needs.
    let output = ssh.session(first, gluster, b"pool list\n");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("<peerStatus>"));

    for (volume, _) in &made_by_hand {
        driver.gluster(&["volume", "delete", volume]);
    }
}

/// A refusal is logged to syslog (authpriv, warning) naming the ssh client.
/// The forced command runs with a private /dev whose `log` is this test's
/// socket, so the machine's own syslog is never involved.
#[test]
fn refusals_are_logged_to_syslog_with_the_client() {
    let dir = tempfile::Builder::new()
        .prefix("syslog-")
        .tempdir()
        .unwrap();
    let socket_path = dir.path().join("log");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut command = Command::new("unshare")
        .args(["--mount", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs /dev && touch /dev/log && mount --bind \"$1\" /dev/log && \
             shift && exec \"$@\"",
        )
        .arg("sh")
        .arg(&socket_path)
        .args([BINARY, "ssh-command", "gluster"])
        .env("SSH_CONNECTION", "192.0.2.7 40000 127.0.0.1 22")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(command.stdin.as_mut().unwrap(), b"peer detach 127.0.0.2\n").unwrap();
    drop(command.stdin.take());
    let output = command.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(77), "{output:?}");
    let mut message = [0u8; 4096];
    let length = socket.recv(&mut message).expect("a syslog message");
    let message = String::from_utf8_lossy(&message[..length]);
    // <84>: facility authpriv (10 * 8) + severity warning (4).
    assert!(message.starts_with("<84>"), "{message}");
    assert!(
        message.contains(
            "glusterfs-csi[",
        ) && message.contains(
            "ssh-command: ssh client 192.0.2.7 port 40000 as uid 0: refused `peer detach 127.0.0.2`: not a command the controller sends"
        ),
        "{message}"
    );
}
