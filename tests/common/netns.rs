//! A Gluster pool whose servers sit in network namespaces of their own, so a
//! server can be cut off by DROPPING its packets (what a dead switch or a
//! hung host does), which loopback aliases cannot show: there, a peer that
//! is gone resets connections at once.
//!
//! Layout of one run (names and addresses unique per run; a random
//! `10.A.B.0/24` held by a lock file in `/run/glusterfs-csi-dev`, beside the
//! dev cluster's `127.x` blocks):
//! - a bridge in the host namespace carrying `10.A.B.254/24` (the test, the
//!   controller and the mounting node live there);
//! - per server `n`: a namespace `gcsi-<id>-sN` joined to the bridge by a
//!   veth pair, address `10.A.B.n/24`, running its glusterd (mount
//!   namespace of its own, see `glusterd_command`) and a brick agent
//!   (`glusterfs-csi node --brick-agent-listen`); its brick root
//!   `<state>/bricks/<address>` is bind-mounted on itself, since the agent
//!   trusts "brick missing" only on a mount point (as in Kubernetes);
//! - the driver processes started through [`NetnsCluster::spawn_driver`].
//!
//! Teardown (Drop, also when the test panics) ends the processes it started
//! by pid, then the pool's gluster processes through the dev cluster's own
//! `end_cluster` (mounts from the pool's addresses, daemons whose pid file or
//! log lies in the state directory, compared by path components), then
//! deletes the namespaces (their nft rules and veth ends with them), the
//! bridge and the lock file.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use glusterfs_csi::dev::ClusterDescription;
use glusterfs_csi::dev::cluster::{ServerDescription, end_cluster, glusterd_command};

use super::{gluster, wait_until};

const LOCK_DIR: &str = "/run/glusterfs-csi-dev";
/// The brick agents' port: each listens in its own namespace, so one port
/// fits all and collides with nothing outside.
pub const BRICK_AGENT_PORT: u16 = 24017;
/// nft table that cuts a server off (inside its namespace).
const PARTITION_TABLE: &str = "glusterfs_csi_partition";

/// One Gluster server in a namespace of its own.
pub struct NetnsServer {
    pub address: String,
    pub netns: String,
    pub description: ServerDescription,
    /// `<brick root>/<address>`: where the controller puts this server's bricks.
    pub brick_dir_root: PathBuf,
    host_veth: String,
}

impl NetnsServer {
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// This server's brick directory of `volume`.
    pub fn brick_dir(&self, volume: &str) -> PathBuf {
        self.brick_dir_root.join(volume)
    }
}

/// A driver process (controller or node plugin) the test started.
pub struct DriverProcess {
    child: Child,
    pub endpoint: PathBuf,
    pub log: PathBuf,
}

impl DriverProcess {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub struct NetnsCluster {
    pub id: String,
    /// `10.A.B`
    pub prefix: String,
    pub host_address: String,
    pub bridge: String,
    pub servers: Vec<NetnsServer>,
    pub brick_root: PathBuf,
    pub state: tempfile::TempDir,
    pub token: String,
    glusterds: Vec<Child>,
    drivers: Vec<DriverProcess>,
    netns_made: Vec<String>,
    brick_roots_mounted: Vec<PathBuf>,
    bridge_made: bool,
    lock: Option<(File, PathBuf)>,
}

impl NetnsCluster {
    /// Makes the network, starts `nodes` glusterd servers in it and joins
    /// them in one pool. Call it (and the `start_*` methods) from a thread
    /// that outlives the cluster, such as the test's own: what it starts
    /// gets SIGTERM when the starting thread ends (PR_SET_PDEATHSIG).
    pub fn start(nodes: usize) -> NetnsCluster {
        let state = tempfile::Builder::new()
            .prefix("gcsi-part-")
            .tempdir()
            .unwrap();
        let id = random_hex(3);
        let (prefix, lock) = claim_block();
        let brick_root = state.path().join("bricks");
        let mut cluster = NetnsCluster {
            host_address: format!("{prefix}.254"),
            bridge: format!("gcsi{id}br"),
            servers: Vec::new(),
            brick_root,
            token: random_hex(16),
            glusterds: Vec::new(),
            drivers: Vec::new(),
            netns_made: Vec::new(),
            brick_roots_mounted: Vec::new(),
            bridge_made: false,
            lock: Some(lock),
            id,
            prefix,
            state,
        };
        cluster.make_network(nodes);
        cluster.start_glusterds();
        cluster
    }

    fn make_network(&mut self, nodes: usize) {
        let bridge = self.bridge.clone();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        self.bridge_made = true;
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", self.host_address),
                "dev",
                &bridge,
            ],
        );
        run("ip", &["link", "set", &bridge, "up"]);
        for n in 1..=nodes {
            let netns = format!("gcsi-{}-s{n}", self.id);
            run("ip", &["netns", "add", &netns]);
            self.netns_made.push(netns.clone());
            let host_veth = format!("gcsi{}v{n}", self.id);
            run(
                "ip",
                &[
                    "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &netns,
                ],
            );
            run("ip", &["link", "set", &host_veth, "master", &bridge]);
            run("ip", &["link", "set", &host_veth, "up"]);
            let address = format!("{}.{n}", self.prefix);
            let inside = |args: &[&str]| {
                let mut full = vec![format!("--net=/run/netns/{netns}"), "ip".into()];
                full.extend(args.iter().map(|a| a.to_string()));
                let full: Vec<&str> = full.iter().map(String::as_str).collect();
                run("nsenter", &full);
            };
            inside(&["link", "set", "lo", "up"]);
            inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
            inside(&["link", "set", "eth0", "up"]);
            let description = server_description(self.state.path(), &address, n);
            let brick_dir_root = self.brick_root.join(&address);
            std::fs::create_dir_all(&brick_dir_root).unwrap();
            // A mount point, as the node plugin sees a brick root in
            // Kubernetes (a hostPath mount): the agent trusts "brick
            // missing" only there. Made before glusterd starts, so its
            // mount namespace has it.
            let root = brick_dir_root.to_string_lossy().into_owned();
            run("mount", &["--bind", &root, &root]);
            // Shared, so the unmount at teardown also reaches copies in
            // mount namespaces made meanwhile.
            run("mount", &["--make-shared", &root]);
            self.brick_roots_mounted.push(brick_dir_root.clone());
            self.servers.push(NetnsServer {
                address,
                netns,
                description,
                brick_dir_root,
                host_veth,
            });
        }
    }

    fn start_glusterds(&mut self) {
        for server in &self.servers {
            let node_dir = server.description.log_dir.parent().unwrap().to_path_buf();
            for dir in ["work", "run", "log"] {
                std::fs::create_dir_all(node_dir.join(dir)).unwrap();
            }
            let netns = open_netns(&server.netns_path());
            let mut command = glusterd_command(Path::new("glusterd"), &server.description)
                .expect("the glusterd command");
            enter_netns_before_exec(&mut command, netns);
            self.glusterds
                .push(command.spawn().expect("start glusterd in its namespace"));
        }
        for server in &self.servers {
            let socket = server.description.glusterd_socket.clone();
            wait_until(Duration::from_secs(30), || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            });
        }
        let first = self.socket(0).to_path_buf();
        for other in &self.servers[1..] {
            gluster(&first, &["peer", "probe", &other.address])
                .unwrap_or_else(|e| panic!("peer probe {}: {e}", other.address));
        }
        let nodes = self.servers.len();
        for server in &self.servers {
            let socket = server.description.glusterd_socket.clone();
            wait_until(Duration::from_secs(60), || {
                gluster(&socket, &["pool", "list"])
                    .is_ok_and(|xml| xml.matches("<connected>1</connected>").count() == nodes)
            });
        }
    }

    /// glusterd's socket of server `index` (0-based).
    pub fn socket(&self, index: usize) -> &Path {
        &self.servers[index].description.glusterd_socket
    }

    /// Starts `glusterfs-csi <args>` with its log in the state directory,
    /// inside server `netns_of`'s network namespace if given. Returns its
    /// index for [`NetnsCluster::driver`].
    pub fn spawn_driver(&mut self, name: &str, args: &[String], netns_of: Option<usize>) -> usize {
        let log = self.state.path().join(format!("logs/{name}.log"));
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        let endpoint = self.state.path().join(format!("{name}.sock"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"));
        command
            .args(args)
            .arg(format!("--endpoint=unix://{}", endpoint.display()))
            .env("GLUSTERFS_CSI_LOG", "info,glusterfs_csi=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap());
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        if let Some(index) = netns_of {
            let netns = open_netns(&self.servers[index].netns_path());
            enter_netns_before_exec(&mut command, netns);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.drivers.push(DriverProcess {
            child,
            endpoint,
            log,
        });
        self.drivers.len() - 1
    }

    pub fn driver(&self, index: usize) -> &DriverProcess {
        &self.drivers[index]
    }

    /// A brick agent on every server: `glusterfs-csi node` in the server's
    /// namespace, serving the agent on its address.
    pub fn start_brick_agents(&mut self) -> Vec<usize> {
        (0..self.servers.len())
            .map(|i| {
                let server = &self.servers[i];
                let args = vec![
                    "node".to_string(),
                    format!("--node-id={}", server.address),
                    "--mounter=inline".to_string(),
                    format!(
                        "--state-dir={}",
                        self.state
                            .path()
                            .join(format!("agent-s{}", i + 1))
                            .display()
                    ),
                    format!("--brick-agent-listen={}:{BRICK_AGENT_PORT}", server.address),
                    format!("--brick-agent-token={}", self.token),
                    format!(
                        "--glusterd-socket={}",
                        server.description.glusterd_socket.display()
                    ),
                ];
                self.spawn_driver(&format!("agent-s{}", i + 1), &args, Some(i))
            })
            .collect()
    }

    /// The controller, in the host namespace, against server 1's glusterd.
    pub fn start_controller(&mut self) -> usize {
        let args = vec![
            "controller".to_string(),
            format!("--glusterd-socket={}", self.socket(0).display()),
            format!("--server-name={}", self.servers[0].address),
            format!("--default-brick-root={}", self.brick_root.display()),
            "--allow-root-filesystem-bricks".to_string(),
            "--test-cluster-brick-layout".to_string(),
            format!("--brick-agent-port={BRICK_AGENT_PORT}"),
            format!("--brick-agent-token={}", self.token),
        ];
        self.spawn_driver("controller", &args, None)
    }

    /// A node plugin that only mounts, in the host namespace.
    pub fn start_mounting_node(&mut self) -> usize {
        let args = vec![
            "node".to_string(),
            "--node-id=mounting-node".to_string(),
            "--mounter=inline".to_string(),
            format!(
                "--state-dir={}",
                self.state.path().join("mounting-node").display()
            ),
            format!(
                "--mount-log-dir={}",
                self.state.path().join("logs/mounts").display()
            ),
        ];
        self.spawn_driver("mounting-node", &args, None)
    }

    /// Drops every packet into and out of server `index` (except its own
    /// loopback), in both directions, inside its namespace: no RST, no
    /// ICMP, the link stays up.
    pub fn partition(&self, index: usize) {
        let netns = self.servers[index].netns_path();
        let nft = |words: &[&str]| {
            let mut args = vec![format!("--net={}", netns.display()), "nft".to_string()];
            args.extend(words.iter().map(|w| w.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run("nsenter", &args);
        };
        nft(&["add", "table", "inet", PARTITION_TABLE]);
        for (chain, hook, iface) in [("in", "input", "iifname"), ("out", "output", "oifname")] {
            nft(&[
                "add",
                "chain",
                "inet",
                PARTITION_TABLE,
                chain,
                "{",
                "type",
                "filter",
                "hook",
                hook,
                "priority",
                "-300",
                ";",
                "policy",
                "accept",
                ";",
                "}",
            ]);
            nft(&[
                "add",
                "rule",
                "inet",
                PARTITION_TABLE,
                chain,
                iface,
                "!=",
                "lo",
                "drop",
            ]);
        }
    }

    /// Lifts [`NetnsCluster::partition`].
    pub fn heal_partition(&self, index: usize) {
        let netns = self.servers[index].netns_path();
        run(
            "nsenter",
            &[
                &format!("--net={}", netns.display()),
                "nft",
                "delete",
                "table",
                "inet",
                PARTITION_TABLE,
            ],
        );
    }

    /// What a TCP connect from the host to `address:port` does within
    /// `limit`: "connected", "refused: ..." or "no answer".
    pub fn probe_tcp(address: &str, port: u16, limit: Duration) -> String {
        let addr: std::net::SocketAddr = format!("{address}:{port}").parse().unwrap();
        match std::net::TcpStream::connect_timeout(&addr, limit) {
            Ok(_) => "connected".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "no answer".to_string(),
            Err(e) => format!("refused: {e}"),
        }
    }

    /// The description the dev cluster's teardown works from: this pool's
    /// state directory and addresses.
    fn as_dev_description(&self) -> ClusterDescription {
        ClusterDescription {
            state_dir: self.state.path().to_path_buf(),
            csi_socket: self.state.path().join("none.sock"),
            brick_root: self.brick_root.clone(),
            mount_log_dir: self.state.path().join("logs/mounts"),
            brick_agent_port: BRICK_AGENT_PORT,
            brick_agent_token: String::new(),
            servers: self.servers.iter().map(|s| s.description.clone()).collect(),
            brick_multiplex: false,
        }
    }

    /// Everything the drivers' logs say, for a failing test.
    pub fn driver_logs(&self) -> String {
        self.drivers
            .iter()
            .map(|d| format!("--- {} ---\n{}", d.log.display(), d.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.driver_logs());
        }
        // Drivers first (the mounting node holds the mounts), by pid.
        end_children(self.drivers.iter_mut().map(|d| &mut d.child).collect());
        // The pool: its mounts and every gluster daemon of its servers, by
        // the pid files and logs they were told to write in the state
        // directory (and the glusterd children themselves).
        let description = self.as_dev_description();
        let mut glusterds = std::mem::take(&mut self.glusterds);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(end_cluster(&description, &mut []));
        })
        .join()
        .ok();
        end_children(glusterds.iter_mut().collect());
        for root in &self.brick_roots_mounted {
            if Command::new("umount")
                .arg(root)
                .output()
                .map_or(true, |o| !o.status.success())
            {
                let _ = Command::new("umount").arg("--lazy").arg(root).output();
            }
        }
        for netns in &self.netns_made {
            let _ = Command::new("ip").args(["netns", "del", netns]).output();
        }
        for server in &self.servers {
            // Gone with its peer in the namespace; this only reports.
            let _ = Command::new("ip")
                .args(["link", "del", &server.host_veth])
                .stderr(Stdio::null())
                .output();
        }
        if self.bridge_made {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .output();
        }
        if let Some((lock, path)) = self.lock.take() {
            let _ = std::fs::remove_file(path);
            drop(lock);
        }
    }
}

/// SIGTERM to each (by its pid), SIGKILL for what is left after 15 s; reaps.
fn end_children(mut children: Vec<&mut Child>) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for child in &children {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for child in children.iter_mut() {
        loop {
            match child.try_wait() {
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => break,
            }
        }
    }
}

/// A server as the dev cluster describes one (`src/dev/cluster.rs`), bound
/// to its namespace's address.
fn server_description(state: &Path, address: &str, n: usize) -> ServerDescription {
    let node_dir = state.join(format!("nodes/n{n}"));
    let (work, run, log) = (
        node_dir.join("work"),
        node_dir.join("run"),
        node_dir.join("log"),
    );
    let socket = run.join("glusterd.socket");
    let option = |o: String| format!("--xlator-option=management.{o}");
    let glusterd_command = vec![
        "glusterd".to_string(),
        "--no-daemon".to_string(),
        option(format!("working-directory={}", work.display())),
        option(format!("transport.socket.bind-address={address}")),
        option(format!("run-directory={}", run.display())),
        option(format!("glusterd-sockfile={}", socket.display())),
        option(format!("cluster-test-mode={}", log.display())),
        format!("--log-file={}", log.join("glusterd.log").display()),
        format!("--pid-file={}", run.join("glusterd.pid").display()),
    ];
    ServerDescription {
        address: address.to_string(),
        glusterd_socket: socket,
        log_dir: log,
        glusterd_command,
        glusterd_pid: None,
    }
}

fn open_netns(path: &Path) -> OwnedFd {
    File::open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .into()
}

/// setns(2) into `netns` between fork and exec (after the command's own
/// pre_exec steps). The descriptor is close-on-exec.
fn enter_netns_before_exec(command: &mut Command, netns: OwnedFd) {
    // SAFETY: only setns(2), async-signal-safe, on a descriptor opened
    // before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a command (no shell), which must succeed.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

fn random_hex(bytes: usize) -> String {
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A free `10.A.B.0/24`: its lock file is ours and no interface of the
/// host has an address in it.
fn claim_block() -> (String, (File, PathBuf)) {
    std::fs::create_dir_all(LOCK_DIR).unwrap();
    let existing = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    let existing = String::from_utf8_lossy(&existing.stdout).into_owned();
    for _ in 0..200 {
        let seed = uuid::Uuid::new_v4();
        let bytes = seed.as_bytes();
        let prefix = format!("10.{}.{}", 200 + bytes[0] % 50, bytes[1]);
        if existing.contains(&format!(" {prefix}.")) {
            continue;
        }
        let path = Path::new(LOCK_DIR).join(format!("{prefix}.lock"));
        let Ok(file) = File::create(&path) else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return (prefix, (file, path));
        }
    }
    panic!("no free 10.x.y.0/24 block for a partition test");
}
