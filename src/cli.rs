//! The command line: every mode's arguments. Plain types only; `app` and the
//! modes (dev, ssh-command, purge-brick-trash, purge-pool-directory, migrate) read them, nothing
//! here depends on them. Every flag is also an environment variable
//! (`GLUSTERFS_CSI_*`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_DRIVER_NAME: &str = "glusterfs.csi.io";
pub const DEFAULT_BRICK_AGENT_PORT: u16 = 24017;
/// The chart's `node.healthPort` (the livenessprobe sidecar, host network).
pub const DEFAULT_HEALTH_PORT: u16 = 29683;
/// The chart's `node.registrarHealthPort` (node-driver-registrar, host network).
pub const DEFAULT_REGISTRAR_HEALTH_PORT: u16 = 29684;
/// The chart's `node.metricsPort` (host network).
pub const DEFAULT_NODE_METRICS_PORT: u16 = 29685;
/// The chart's `controller.metricsPort`.
pub const DEFAULT_CONTROLLER_METRICS_PORT: u16 = 29686;

#[derive(Parser, Debug)]
#[command(
    name = "glusterfs-csi",
    version,
    about = "CSI driver for replicated GlusterFS volumes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `glusterfs_csi=debug`.
    #[arg(long, env = "GLUSTERFS_CSI_LOG", default_value = "info", global = true)]
    pub log: String,
}

// One value, parsed once at start-up: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Mode {
    /// CSI controller: creates and deletes gluster volumes through glusterd.
    Controller(ControllerArgs),
    /// CSI node plugin: mounts volumes; on Gluster servers also the brick agent.
    Node(NodeArgs),
    /// Everything in one process against a throwaway local Gluster cluster.
    Dev(DevArgs),
    /// On a Gluster server: what the controller's ssh key may run (set it as
    /// the key's forced command).
    SshCommand(SshCommandArgs),
    /// Removes what brick removal moved into a brick root's trash directory.
    /// Started by the brick agent and `ssh-command remove-brick` as a child
    /// process, so a hostile tree can never hurt the process that holds the
    /// node's mounts.
    #[command(hide = true)]
    PurgeBrickTrash(PurgeBrickTrashArgs),
    /// Removes a subdirectory-mode volume's directory from the controller's
    /// mount of its pool. Started by the controller as a child process, for
    /// the same reason.
    #[command(hide = true)]
    PurgePoolDirectory(PurgePoolDirectoryArgs),
    /// Writes CSI PersistentVolumes, claims and a runbook for PersistentVolumes
    /// of the removed in-tree `kubernetes.io/glusterfs` plugin. Reads
    /// `kubectl get pv,endpoints -A -o yaml` (or `-o json`); changes nothing
    /// in the cluster.
    Migrate(MigrateArgs),
    /// Exits 0 if the driver at --endpoint answers (GetPluginInfo), without
    /// asking glusterd: the pods' liveness probe. Readiness, which does ask
    /// glusterd, is the CSI Probe through the livenessprobe sidecar.
    Ping(PingArgs),
    /// Checks this node before (or after) installing the driver: glusterd
    /// and its peers, brick roots, FUSE, the kubelet directory's mount
    /// propagation, free ports, gluster versions, brick multiplexing and the
    /// clock. Prints a checklist with a fix for each failure; exits 0 when
    /// nothing failed (warnings allowed), 1 when something did, 2 on bad
    /// usage.
    Doctor(DoctorArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// glusterd's unix socket.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTERD_SOCKET",
        default_value = "/run/glusterd.socket"
    )]
    pub glusterd_socket: PathBuf,
    /// The gluster CLI binary.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_CLI", default_value = "gluster")]
    pub gluster_cli: PathBuf,
    /// The gluster client binary whose version is checked (what
    /// mount.glusterfs runs).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_DOCTOR_GLUSTERFS",
        default_value = "glusterfs"
    )]
    pub glusterfs: PathBuf,
    /// A brick root this server must offer (every StorageClass `brickRoot`
    /// and the controller's default). Repeat the flag for several (commas in
    /// the variable).
    #[arg(
        long = "brick-root",
        env = "GLUSTERFS_CSI_BRICK_ROOT",
        value_delimiter = ',',
        default_value = "/data/glusterfs"
    )]
    pub brick_roots: Vec<String>,
    /// Brick roots may be plain directories of a larger file system (the
    /// root file system, say), as the controller flag and the StorageClass
    /// parameter `allowRootFilesystemBricks` allow.
    #[arg(long, env = "GLUSTERFS_CSI_ALLOW_ROOT_FILESYSTEM_BRICKS")]
    pub allow_root_filesystem_bricks: bool,
    /// Least free space on each brick root's file system, in GiB.
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_MIN_FREE_GIB", default_value_t = 1)]
    pub min_free_gib: u64,
    /// The kubelet's root directory (the chart's `kubeletDir`).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_KUBELET_DIR",
        default_value = "/var/lib/kubelet"
    )]
    pub kubelet_dir: PathBuf,
    /// The livenessprobe sidecar's port on the host (chart: node.healthPort).
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_HEALTH_PORT", default_value_t = DEFAULT_HEALTH_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub health_port: u16,
    /// node-driver-registrar's health port on the host (chart:
    /// node.registrarHealthPort).
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_REGISTRAR_HEALTH_PORT",
          default_value_t = DEFAULT_REGISTRAR_HEALTH_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub registrar_health_port: u16,
    /// The brick agent's port (chart: brickAgent.port).
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_PORT", default_value_t = DEFAULT_BRICK_AGENT_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub brick_agent_port: u16,
    /// This node only mounts volumes (not a Gluster server): skip glusterd,
    /// peers, brick roots, the brick agent's port, op-versions and brick
    /// multiplexing.
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_CLIENT_ONLY")]
    pub client_only: bool,
    /// How long each check may take before it counts as failed.
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout_seconds: u64,
    /// Print the results as JSON instead of a checklist.
    #[arg(long, env = "GLUSTERFS_CSI_DOCTOR_JSON")]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PingArgs {
    /// CSI endpoint of the running driver.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_ENDPOINT",
        default_value = "unix:///csi/csi.sock"
    )]
    pub endpoint: String,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: u64,
}

/// How the controller reaches glusterd.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlusterdAccess {
    /// glusterd's unix socket, mounted from the host (hyperconverged).
    Socket,
    /// ssh to the Gluster servers, failing over between them (external).
    Ssh,
}

/// How brick directories of deleted volumes are removed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickCleanup {
    /// The brick agent of the node plugin on each server (hyperconverged).
    Agent,
    /// `glusterfs-csi ssh-command remove-brick` over ssh (external).
    Ssh,
}

/// Where the FUSE client of a staged volume runs, which decides whether it
/// outlives the node plugin.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MounterChoice {
    /// systemd if it answers, else a cgroup of its own, else inline (with a
    /// warning).
    Auto,
    /// A transient systemd scope on the host (`systemd-run --scope`), as the
    /// kubelet mounts: needs hostPID and systemd's socket directory.
    Systemd,
    /// A dedicated cgroup outside the plugin's own (hosts without systemd):
    /// needs hostPID and the host's cgroup file system.
    Cgroup,
    /// Inside the plugin's own cgroup: mounts die with the plugin.
    Inline,
}

#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// Gluster servers to run gluster commands on, in order of preference.
    #[arg(long, env = "GLUSTERFS_CSI_SSH_SERVERS", value_delimiter = ',')]
    pub ssh_servers: Vec<String>,
    #[arg(long, env = "GLUSTERFS_CSI_SSH_PORT", default_value_t = 22)]
    pub ssh_port: u16,
    #[arg(long, env = "GLUSTERFS_CSI_SSH_USER", default_value = "root")]
    pub ssh_user: String,
    /// Private key (from a Secret).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_IDENTITY",
        default_value = "/etc/glusterfs-csi/ssh/identity"
    )]
    pub ssh_identity: PathBuf,
    /// The servers' host keys, in known_hosts format (from a Secret).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_KNOWN_HOSTS",
        default_value = "/etc/glusterfs-csi/ssh/known_hosts"
    )]
    pub ssh_known_hosts: PathBuf,
    /// Remote command giving a gluster CLI that reads commands on stdin.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_GLUSTER_COMMAND",
        default_value = "glusterfs-csi ssh-command gluster"
    )]
    pub ssh_gluster_command: String,
    /// Remote command that removes a brick directory (JSON on stdin).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_BRICK_COMMAND",
        default_value = "glusterfs-csi ssh-command remove-brick"
    )]
    pub ssh_brick_command: String,
    /// Remote command that reports what a brick root is (JSON on stdin).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_BRICK_ROOT_COMMAND",
        default_value = "glusterfs-csi ssh-command check-brick-root"
    )]
    pub ssh_brick_root_command: String,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// CSI endpoint to serve.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_ENDPOINT",
        default_value = "unix:///csi/csi.sock"
    )]
    pub endpoint: String,
    /// Driver name reported to the CO (the CSIDriver object's name).
    #[arg(long, env = "GLUSTERFS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME,
          value_parser = driver_name)]
    pub driver_name: String,
}

/// A CSI driver name: at most 63 letters, digits, '-' and '.', starting
/// and ending with a letter or digit (it also names a directory).
fn driver_name(text: &str) -> Result<String, String> {
    let edge = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let bytes = text.as_bytes();
    if bytes.len() <= 63
        && edge(bytes.first())
        && edge(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
    {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a CSI driver name (at most 63 letters, digits, '-' and '.', \
             starting and ending with a letter or digit)"
        ))
    }
}

/// Prometheus metrics (docs/metrics.md).
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (OpenMetrics text) at
    /// http://ADDRESS:PORT/metrics, e.g. `0.0.0.0:29685` or `[::]:29685`;
    /// not served when unset.
    #[arg(long, env = "GLUSTERFS_CSI_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Args, Debug, Clone)]
pub struct GlusterdArgs {
    /// glusterd's unix socket (write access to the pool).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTERD_SOCKET",
        default_value = "/run/glusterd.socket"
    )]
    pub glusterd_socket: PathBuf,
    /// The gluster CLI binary.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_CLI", default_value = "gluster")]
    pub gluster_cli: PathBuf,
    /// How long one gluster command may take.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTER_TIMEOUT_SECONDS",
        default_value_t = 120
    )]
    pub gluster_timeout_seconds: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub glusterd: GlusterdArgs,
    /// Name the other peers use for the local glusterd; asked of them if unset.
    #[arg(long, env = "GLUSTERFS_CSI_SERVER_NAME")]
    pub server_name: Option<String>,
    /// This node's address (the chart passes the pod's status.hostIP): the
    /// server's name in a single-server pool, where no other peer can tell.
    #[arg(long, env = "GLUSTERFS_CSI_NODE_ADDRESS")]
    pub node_address: Option<String>,
    /// Brick root for StorageClasses that set no `brickRoot`.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_DEFAULT_BRICK_ROOT",
        default_value = "/data/glusterfs"
    )]
    pub default_brick_root: String,
    /// Long-lived gluster CLI sessions kept for concurrent commands.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_SESSIONS", default_value_t = 8)]
    pub gluster_sessions: usize,
    /// How to reach glusterd.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTERD_ACCESS", value_enum, default_value_t = GlusterdAccess::Socket)]
    pub glusterd_access: GlusterdAccess,
    /// How brick directories of deleted volumes are removed.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_CLEANUP", value_enum, default_value_t = BrickCleanup::Agent)]
    pub brick_cleanup: BrickCleanup,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Port of the brick agents run by the node plugin on every server.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_PORT", default_value_t = DEFAULT_BRICK_AGENT_PORT)]
    pub brick_agent_port: u16,
    /// Shared secret for the brick agents.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_TOKEN", hide_env_values = true)]
    pub brick_agent_token: Option<String>,
    /// FUSE mount options every node adds for volumes of this controller.
    #[arg(long, env = "GLUSTERFS_CSI_MOUNT_OPTIONS", value_delimiter = ',')]
    pub mount_options: Vec<String>,
    /// Let brick roots be plain directories (of the root file system, say)
    /// instead of file systems of their own, for StorageClasses that do not
    /// set `allowRootFilesystemBricks`; `volume create` then gets `force`.
    #[arg(long, env = "GLUSTERFS_CSI_ALLOW_ROOT_FILESYSTEM_BRICKS")]
    pub allow_root_filesystem_bricks: bool,
    /// TEST CLUSTERS ONLY: put bricks in `<root>/<server>/<volume>` instead
    /// of `<root>/<volume>`, for a test pool whose "servers" are processes
    /// on one machine sharing one file system (as `dev` lays them out).
    /// Volumes made with it are not found by a controller without it.
    #[arg(long, env = "GLUSTERFS_CSI_TEST_CLUSTER_BRICK_LAYOUT")]
    pub test_cluster_brick_layout: bool,
    /// The zone of a Gluster server, as `<server>=<zone>` (the server as
    /// gluster names the peer); repeat for each server (the env var takes a
    /// comma-separated list). New volumes spread their bricks over zones; a
    /// StorageClass with `zones: distinct` needs a zone per brick. Checked
    /// at start-up.
    #[arg(
        long = "server-zone",
        env = "GLUSTERFS_CSI_SERVER_ZONES",
        value_name = "SERVER=ZONE",
        value_delimiter = ','
    )]
    pub server_zones: Vec<String>,
    /// Offer subdirectory mode (StorageClass parameter `pool`): the
    /// controller mounts each pool it uses below this directory (FUSE: the
    /// controller needs /dev/fuse and CAP_SYS_ADMIN) to make, mark and
    /// remove the volumes' directories. Off when unset.
    #[arg(long, env = "GLUSTERFS_CSI_POOL_MOUNT_DIR")]
    pub pool_mount_dir: Option<PathBuf>,
    #[command(flatten)]
    pub isolation: IsolationArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// How often the volumes-by-state (and volume health) metrics are read
    /// from glusterd; only with --metrics-listen.
    #[arg(long, env = "GLUSTERFS_CSI_VOLUME_METRICS_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub volume_metrics_interval_seconds: u64,
}

/// Tenant isolation of the volumes the controller creates (set before
/// their first start; see docs/storageclass.md).
#[derive(Args, Debug, Clone)]
pub struct IsolationArgs {
    /// Addresses of every node that mounts volumes: IPv4 addresses or
    /// a.b.c.* wildcards (no CIDR). New volumes get `auth.allow` = their
    /// servers plus these.
    #[arg(long, env = "GLUSTERFS_CSI_CLIENT_ADDRESSES", value_delimiter = ',')]
    pub client_addresses: Vec<String>,
    /// TLS between FUSE clients and bricks on new volumes (`client.ssl`,
    /// `server.ssl`, `auth.ssl-allow`); needs --tls-server-names and
    /// --tls-client-names.
    #[arg(long, env = "GLUSTERFS_CSI_TLS")]
    pub tls: bool,
    /// Directory with glusterfs.pem, glusterfs.key and glusterfs.ca: the
    /// server certificate on every Gluster server, the client certificate
    /// in every node plugin (same path).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_TLS_DIR",
        default_value = "/etc/glusterfs-csi/tls"
    )]
    pub tls_dir: String,
    /// Common names of the Gluster servers' certificates (the self-heal
    /// daemon connects to bricks with them).
    #[arg(long, env = "GLUSTERFS_CSI_TLS_SERVER_NAMES", value_delimiter = ',')]
    pub tls_server_names: Vec<String>,
    /// Common names of the node plugins' certificates; `*` wildcards allowed
    /// (`csi-node-*`).
    #[arg(long, env = "GLUSTERFS_CSI_TLS_CLIENT_NAMES", value_delimiter = ',')]
    pub tls_client_names: Vec<String>,
}

impl IsolationArgs {
    /// The same settings as command-line flags (`dev` hands them to its
    /// controller).
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut list = |flag: &str, values: &[String]| {
            if !values.is_empty() {
                flags.push(format!("--{flag}={}", values.join(",")));
            }
        };
        list("client-addresses", &self.client_addresses);
        list("tls-server-names", &self.tls_server_names);
        list("tls-client-names", &self.tls_client_names);
        flags.push(format!("--tls-dir={}", self.tls_dir));
        if self.tls {
            flags.push("--tls".into());
        }
        flags
    }
}

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// This node's id (the Kubernetes node name).
    #[arg(long, env = "GLUSTERFS_CSI_NODE_ID")]
    pub node_id: String,
    /// Where FUSE clients run; `auto` picks systemd, then cgroup, then inline.
    #[arg(long, env = "GLUSTERFS_CSI_MOUNTER", value_enum, default_value_t = MounterChoice::Auto)]
    pub mounter: MounterChoice,
    /// systemd-run, for `--mounter systemd`.
    #[arg(long, env = "GLUSTERFS_CSI_SYSTEMD_RUN", default_value = "systemd-run")]
    pub systemd_run: PathBuf,
    /// The host's cgroup file system (mounted into the container), for
    /// `--mounter cgroup`.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_CGROUP_ROOT",
        default_value = "/sys/fs/cgroup"
    )]
    pub cgroup_root: PathBuf,
    /// Name of the cgroup FUSE clients are moved into, directly under the
    /// root of every hierarchy, for `--mounter cgroup`.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_FUSE_CGROUP",
        default_value = "glusterfs-csi-fuse"
    )]
    pub fuse_cgroup: String,
    /// The kubelet's root directory: staging and target paths must lie
    /// beneath it (never checked when unset, as in `dev`).
    #[arg(long, env = "GLUSTERFS_CSI_KUBELET_DIR")]
    pub kubelet_dir: Option<PathBuf>,
    /// Directory for what the node must know across its own restarts (how
    /// each volume was staged, so a dead mount can be mounted again). On the
    /// host; never holds secrets.
    #[arg(long, env = "GLUSTERFS_CSI_STATE_DIR", default_value = "/csi/state")]
    pub state_dir: PathBuf,
    /// Directory for FUSE client logs (default: gluster's /var/log/glusterfs).
    #[arg(long, env = "GLUSTERFS_CSI_MOUNT_LOG_DIR")]
    pub mount_log_dir: Option<PathBuf>,
    /// Size a FUSE client log may reach before it is cut (its newest part
    /// kept in `<log>.1`).
    #[arg(long, env = "GLUSTERFS_CSI_MOUNT_LOG_MAX_MIB", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub mount_log_max_mib: u64,
    /// How often staged volumes are checked for a dead FUSE client.
    #[arg(long, env = "GLUSTERFS_CSI_WATCH_INTERVAL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub watch_interval_ms: u64,
    /// Serve the brick agent here (only on Gluster servers): an address and
    /// port (`0.0.0.0:24017`, `[::]:24017`), or an address alone for
    /// `--brick-agent-port` (the node's own, from the Downward API's
    /// status.hostIP). Needs the token.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_LISTEN", value_parser = parse_listen_address)]
    pub brick_agent_listen: Option<ListenAddress>,
    /// Port for a `--brick-agent-listen` without one.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_PORT", default_value_t = DEFAULT_BRICK_AGENT_PORT)]
    pub brick_agent_port: u16,
    /// Shared secret the controller must present to the brick agent.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_TOKEN", hide_env_values = true)]
    pub brick_agent_token: Option<String>,
    #[command(flatten)]
    pub glusterd: GlusterdArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Where the brick agent listens: an address, with or without a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddress {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl ListenAddress {
    pub fn with_default_port(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(port))
    }
}

/// `ADDRESS:PORT`, `[IPv6]:PORT`, or an address alone (IPv6 without brackets too).
fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    let text = text.trim();
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Ok(ListenAddress {
            ip: socket.ip(),
            port: Some(socket.port()),
        });
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| ListenAddress { ip, port: None })
        .map_err(|_| {
            format!(
                "{text:?} is not an IP address with or without a port (0.0.0.0:24017, \
                 [::]:24017, 192.168.1.12)"
            )
        })
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Directory for the cluster's state, bricks, logs and the CSI socket.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_DEV_STATE_DIR",
        default_value = "/tmp/glusterfs-csi-dev"
    )]
    pub state_dir: PathBuf,
    /// Number of Gluster servers.
    #[arg(long, env = "GLUSTERFS_CSI_DEV_NODES", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=9))]
    pub nodes: u8,
    /// Brick multiplexing (`cluster.brick-multiplex`): the bricks of each
    /// server share a glusterfsd process; `--brick-multiplex=false` gives
    /// every brick its own, as gluster does by default.
    #[arg(long, env = "GLUSTERFS_CSI_DEV_BRICK_MULTIPLEX", default_value_t = true,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub brick_multiplex: bool,
    /// Driver name reported to the CO.
    #[arg(long, env = "GLUSTERFS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,
    /// Node id reported by NodeGetInfo.
    #[arg(long, env = "GLUSTERFS_CSI_NODE_ID", default_value = "dev-node")]
    pub node_id: String,
    /// The glusterd binary.
    #[arg(long, env = "GLUSTERFS_CSI_DEV_GLUSTERD", default_value = "glusterd")]
    pub glusterd: PathBuf,
    /// The gluster CLI binary.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_CLI", default_value = "gluster")]
    pub gluster_cli: PathBuf,
    /// Zones of the dev servers for the dev controller, `<address>=<zone>`
    /// (as the controller's --server-zone).
    #[arg(
        long = "server-zone",
        env = "GLUSTERFS_CSI_SERVER_ZONES",
        value_name = "SERVER=ZONE",
        value_delimiter = ','
    )]
    pub server_zones: Vec<String>,
    /// Isolation for the dev controller's volumes (off unless given).
    #[command(flatten)]
    pub isolation: IsolationArgs,
    /// Metrics of the whole dev driver (controller and node in one process).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// How often the dev controller reads its volumes for the metrics.
    #[arg(long, env = "GLUSTERFS_CSI_VOLUME_METRICS_INTERVAL_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub volume_metrics_interval_seconds: u64,
}

#[derive(Args, Debug, Clone)]
pub struct SshCommandArgs {
    /// `gluster` or `remove-brick`; when run as a forced command, taken from
    /// the command the client sent (SSH_ORIGINAL_COMMAND).
    pub operation: Option<String>,
    /// A directory the controller may put bricks in, as `<root>/<volume>`:
    /// every StorageClass `brickRoot` (and the controller's default) in use.
    /// Repeat the flag for several (commas in the variable). Bricks anywhere
    /// else are refused; with none, every create and brick removal is.
    #[arg(
        long = "brick-root",
        env = "GLUSTERFS_CSI_BRICK_ROOT",
        value_delimiter = ','
    )]
    pub brick_roots: Vec<String>,
    #[command(flatten)]
    pub glusterd: GlusterdArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PurgeBrickTrashArgs {
    /// A brick root's trash directory (`<brick root>/.glusterfs-csi-trash`).
    pub trash: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct PurgePoolDirectoryArgs {
    /// The controller's mount of the pool (`<pool mount dir>/<pool>`).
    pub pool_mount: PathBuf,
    /// The volume's directory at the pool's top (`csi-...`).
    pub directory: String,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    /// PersistentVolumes and Endpoints as `kubectl get pv,endpoints -A -o yaml`
    /// (or `-o json`) prints them; standard input when absent or `-`.
    pub input: Option<PathBuf>,
    /// Directory for the manifests and the runbook; made if missing. Files
    /// already there are never overwritten (the run is refused).
    #[arg(long, env = "GLUSTERFS_CSI_MIGRATE_OUTPUT_DIR")]
    pub output_dir: PathBuf,
    /// The CSIDriver name the new PersistentVolumes name.
    #[arg(long, env = "GLUSTERFS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,
    /// Appended to an old PersistentVolume's name to name the new one.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_MIGRATE_NAME_SUFFIX",
        default_value = "-csi"
    )]
    pub name_suffix: String,
    /// Write what can be migrated and list the rest in the runbook, instead
    /// of failing (exit 1, nothing written) when any in-tree volume cannot be
    /// migrated (its Endpoints missing, a field the driver cannot take).
    #[arg(long, env = "GLUSTERFS_CSI_MIGRATE_SKIP_UNMIGRATABLE")]
    pub skip_unmigratable: bool,
    /// Largest input read, in MiB; more is refused.
    #[arg(long, env = "GLUSTERFS_CSI_MIGRATE_MAX_INPUT_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_input_mib: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_are_checked() {
        for good in ["glusterfs.csi.io", "a", "x-1.y"] {
            assert_eq!(driver_name(good).as_deref(), Ok(good));
        }
        for bad in ["", "../x", "a/b", ".a", "a-", "x".repeat(64).as_str()] {
            assert!(driver_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn brick_agent_listen_addresses() {
        let parse = |t: &str| parse_listen_address(t).map(|l| l.with_default_port(24017));
        assert_eq!(parse("0.0.0.0:24100"), Ok("0.0.0.0:24100".parse().unwrap()));
        assert_eq!(parse("[::]:24100"), Ok("[::]:24100".parse().unwrap()));
        assert_eq!(
            parse("192.168.1.12"),
            Ok("192.168.1.12:24017".parse().unwrap())
        );
        assert_eq!(parse("fd00::12"), Ok("[fd00::12]:24017".parse().unwrap()));
        assert_eq!(parse("[fd00::12]"), Ok("[fd00::12]:24017".parse().unwrap()));
        for bad in [
            "",
            "node1:24017",
            "0.0.0.0:",
            "1.2.3.4:99999",
            "fd00::12:24017x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let controller = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().mode {
            Mode::Controller(args) => (
                args.metrics.metrics_listen,
                args.volume_metrics_interval_seconds,
            ),
            _ => unreachable!(),
        };
        assert_eq!(controller(&["glusterfs-csi", "controller"]), (None, 60));
        assert_eq!(
            controller(&[
                "glusterfs-csi",
                "controller",
                "--metrics-listen=[::]:29686",
                "--volume-metrics-interval-seconds=5",
            ]),
            (Some("[::]:29686".parse().unwrap()), 5)
        );
        let Mode::Node(node) = Cli::try_parse_from([
            "glusterfs-csi",
            "node",
            "--node-id=n1",
            "--metrics-listen",
            "0.0.0.0:29685",
        ])
        .unwrap()
        .mode
        else {
            unreachable!()
        };
        assert_eq!(
            node.metrics.metrics_listen,
            Some(SocketAddr::from(([0, 0, 0, 0], DEFAULT_NODE_METRICS_PORT)))
        );
        for bad in [
            ["--metrics-listen", "localhost:29685"],
            ["--metrics-listen", "0.0.0.0"],
            ["--volume-metrics-interval-seconds", "0"],
        ] {
            let argv = ["glusterfs-csi", "controller", bad[0], bad[1]];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn root_filesystem_bricks_flag_and_env() {
        let parsed = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().mode {
            Mode::Controller(args) => args.allow_root_filesystem_bricks,
            _ => unreachable!(),
        };
        assert!(!parsed(&["glusterfs-csi", "controller"]));
        assert!(parsed(&[
            "glusterfs-csi",
            "controller",
            "--allow-root-filesystem-bricks"
        ]));
    }

    #[test]
    fn server_zones_repeat_or_take_a_list() {
        let parsed = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().mode {
            Mode::Controller(args) => args.server_zones,
            _ => unreachable!(),
        };
        assert!(parsed(&["glusterfs-csi", "controller"]).is_empty());
        assert_eq!(
            parsed(&[
                "glusterfs-csi",
                "controller",
                "--server-zone=s1=fsn1",
                "--server-zone",
                "s2=nbg1,s3=hel1",
            ]),
            ["s1=fsn1", "s2=nbg1", "s3=hel1"]
        );
    }

    #[test]
    fn server_zones_survive_the_trip_through_dev() {
        let argv = [
            "glusterfs-csi",
            "dev",
            "--server-zone=127.0.0.2=a",
            "--server-zone",
            "127.0.0.3=b,127.0.0.4=b",
        ];
        let Mode::Dev(dev) = Cli::try_parse_from(argv).unwrap().mode else {
            unreachable!()
        };
        let controller = ["glusterfs-csi".to_string(), "controller".to_string()]
            .into_iter()
            .chain(crate::dev::server_zone_flags(&dev));
        let Mode::Controller(args) = Cli::try_parse_from(controller).unwrap().mode else {
            unreachable!()
        };
        assert_eq!(
            args.server_zones,
            ["127.0.0.2=a", "127.0.0.3=b", "127.0.0.4=b"]
        );
    }

    #[test]
    fn migrate_defaults_and_bounds() {
        let Mode::Migrate(args) =
            Cli::try_parse_from(["glusterfs-csi", "migrate", "--output-dir", "out"])
                .unwrap()
                .mode
        else {
            unreachable!()
        };
        assert_eq!(args.input, None, "standard input");
        assert_eq!(args.driver_name, DEFAULT_DRIVER_NAME);
        assert_eq!(args.name_suffix, "-csi");
        assert_eq!(args.max_input_mib, 64);
        assert!(!args.skip_unmigratable);
        assert!(Cli::try_parse_from(["glusterfs-csi", "migrate", "pv.yaml"]).is_err());
        for bad in ["0", "1025"] {
            let argv = [
                "glusterfs-csi",
                "migrate",
                "--output-dir",
                "o",
                "--max-input-mib",
                bad,
            ];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad}");
        }
    }

    #[test]
    fn doctor_defaults_match_the_chart_and_bounds_hold() {
        let Mode::Doctor(args) = Cli::try_parse_from(["glusterfs-csi", "doctor"])
            .unwrap()
            .mode
        else {
            unreachable!()
        };
        assert_eq!(args.glusterd_socket, PathBuf::from("/run/glusterd.socket"));
        assert_eq!(args.brick_roots, ["/data/glusterfs"]);
        assert_eq!(args.kubelet_dir, PathBuf::from("/var/lib/kubelet"));
        assert_eq!(
            (
                args.health_port,
                args.registrar_health_port,
                args.brick_agent_port
            ),
            (29683, 29684, 24017)
        );
        assert_eq!(args.min_free_gib, 1);
        assert!(!args.allow_root_filesystem_bricks && !args.client_only && !args.json);
        let Mode::Doctor(args) = Cli::try_parse_from([
            "glusterfs-csi",
            "doctor",
            "--brick-root=/a",
            "--brick-root",
            "/b",
        ])
        .unwrap()
        .mode
        else {
            unreachable!()
        };
        assert_eq!(args.brick_roots, ["/a", "/b"]);
        for bad in [
            ["--health-port", "0"],
            ["--brick-agent-port", "65536"],
            ["--timeout-seconds", "0"],
            ["--min-free-gib", "-1"],
        ] {
            let argv = ["glusterfs-csi", "doctor", bad[0], bad[1]];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn isolation_flags_survive_the_trip_through_dev() {
        let argv = [
            "glusterfs-csi",
            "dev",
            "--client-addresses",
            "10.0.0.1,10.0.1.*",
            "--tls",
            "--tls-dir=/tmp/certs",
            "--tls-server-names=gluster-server",
            "--tls-client-names",
            "csi-node-*,other",
        ];
        let Mode::Dev(dev) = Cli::try_parse_from(argv).unwrap().mode else {
            unreachable!()
        };
        let controller = ["glusterfs-csi".to_string(), "controller".to_string()]
            .into_iter()
            .chain(dev.isolation.to_flags());
        let Mode::Controller(args) = Cli::try_parse_from(controller).unwrap().mode else {
            unreachable!()
        };
        let isolation = args.isolation;
        assert_eq!(isolation.client_addresses, ["10.0.0.1", "10.0.1.*"]);
        assert!(isolation.tls);
        assert_eq!(isolation.tls_dir, "/tmp/certs");
        assert_eq!(isolation.tls_server_names, ["gluster-server"]);
        assert_eq!(isolation.tls_client_names, ["csi-node-*", "other"]);
        let Mode::Dev(plain) = Cli::try_parse_from(["glusterfs-csi", "dev"]).unwrap().mode else {
            unreachable!()
        };
        assert_eq!(
            plain.isolation.to_flags(),
            ["--tls-dir=/etc/glusterfs-csi/tls"]
        );
    }
}
